# cython: boundscheck=False, wraparound=False
"""Formats the verdict log (JSON Lines) for a batch without Python per packet.

Each line: index, ts (the packet's capture time, seconds since the epoch with
nanosecond digits), frame (its frame number in the output capture, 1-based; null
when it was not transmitted or nothing is written), verdict, reason, in_port,
out_port, proto, src, dst, sport,
dport (the packet as transmitted, or as it stood when dropped), ct, service,
policy (for packets a policy judged: what decided their egress and their ingress,
each a label or null; null otherwise), orig (the tuple as received), and dns
(query name, type, rcode and the DNS stage's outcome for packets to a cluster DNS
address, else null). Names of ports, services, reasons and policy decisions come
from string tables built once per configuration (`NameTable`).

Keys present only when they apply: `tunnel` ({type, src, dst[, vni]}: kdp put the
packet in a tunnel; proto/src/dst/ports are then the packet inside it, read from
the frame), `decap` ("ipip" / "vxlan": the packet came through a tunnel kdp
decapsulated), `node` and `hop` (a multi-node replay: the node of this line and how
many nodes the packet crossed before it).
"""
import numpy as np
cimport cython
cimport numpy as cnp
from libc.stdio cimport snprintf
from libc.string cimport memcpy, memcmp, memset, strlen
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t

from kdp._fast.packet cimport (Batch, pkt_meta_t, NO_PORT, NO_ID, N_REASONS,
                               V_PENDING, V_FORWARD, V_DROP, V_REJECT, V_LOCAL, V_REPLY,
                               TUN_IPIP, TUN_VXLAN)
from kdp._fast.dns cimport dns_note_t, dns_note_json

cnp.import_array()

cdef extern from "arpa/inet.h" nogil:
    const char* inet_ntop(int af, const void* src, char* dst, unsigned int size)

cdef extern from "sys/socket.h" nogil:
    int AF_INET6

ORIG_TUPLE_DTYPE = np.dtype([("b", "u1", sizeof(orig_tuple_t))])

cdef void snapshot_tuples(Batch b, orig_tuple_t* out) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(b.count):
        snapshot_tuple(&b.m[i], &out[i])


cdef inline void snapshot_tuple(const pkt_meta_t* p, orig_tuple_t* out) noexcept nogil:
    out.src4 = p.src4
    out.dst4 = p.dst4
    memcpy(out.src6, p.src6, 16)
    memcpy(out.dst6, p.dst6, 16)
    out.sport = p.sport
    out.dport = p.dport
    out.ip_ver = p.ip_ver
    out.proto = p.proto


@cython.final
cdef class NameTable:
    """Strings indexed by small ids, as JSON values ("name" or null), in one blob, with
    their lengths; the blob ends in 32 zero bytes (_putn copies 32 bytes at a time)."""

    def __init__(self, names):
        parts = []
        offsets = [0]
        total = 0
        for name in names:
            text = b"null" if name is None else _json_string(name)
            parts.append(text + b"\0")
            total += len(text) + 1
            offsets.append(total)
        self.blob = b"".join(parts) + b"null\0" + b"\0" * 32
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.base = self.blob
        self.off = <const int64_t*>cnp.PyArray_DATA(self.offsets)
        self.n = len(offsets) - 1

    cdef inline const char* get(self, Py_ssize_t i) noexcept nogil:
        if i < 0 or i >= self.n:
            return self.base + self.off[self.n]
        return self.base + self.off[i]

    cdef inline Py_ssize_t put(self, char* out, Py_ssize_t i) noexcept nogil:
        """Append the value of id i (null when out of range)."""
        if i < 0 or i >= self.n:
            memcpy(out, b"null", 4)
            return 4
        return _putn(out, self.base + self.off[i], self.off[i + 1] - self.off[i] - 1)


def _labels(names):
    """Policy decision labels, each cut to fit its share of a line (a deny lists the
    policies isolating the pod, which may be many: `kdp show policy` lists them all)."""
    out = []
    for name in names:
        if name is not None:
            cut = len(name)
            while len(_json_string(name if cut == len(name) else name[:cut] + " ...")) > 318:
                cut -= 16
            name = name if cut == len(name) else name[:cut] + " ..."
        out.append(name)
    return out


def _json_string(text):
    import json
    return json.dumps(str(text)).encode()


cdef inline Py_ssize_t _put(char* out, const char* s) noexcept nogil:
    """Append a NUL-terminated string (snprintf's parsing costs more than the line). Called
    with literals: inlined, the C compiler turns strlen and memcpy into constant moves."""
    cdef Py_ssize_t k = strlen(s)
    memcpy(out, s, k)
    return k


cdef inline Py_ssize_t _putn(char* out, const char* s, Py_ssize_t k) noexcept nogil:
    """Append k bytes of s. Short strings are copied as 32 bytes at once (no call): s must
    have 32 readable bytes (NameTable pads its blob) and out SLACK writable ones past k."""
    if k <= 32:
        memcpy(out, s, 32)
    else:
        memcpy(out, s, k)
    return k


# "00".."99": two digits a division (itoa by pairs)
cdef char DIGITS2[200]
# IPv4 octets 0..255 as their digits and a '.', in 4 bytes (padded), and the lengths
cdef uint32_t OCTET[256]
cdef uint8_t OCTET_LEN[256]


cdef void _init_tables() noexcept:
    cdef int i, k
    cdef char text[8]
    for i in range(100):
        DIGITS2[2 * i] = <char>(48 + i // 10)
        DIGITS2[2 * i + 1] = <char>(48 + i % 10)
    for i in range(256):
        k = 0
        if i >= 100:
            text[k] = <char>(48 + i // 100)
            k += 1
        if i >= 10:
            text[k] = <char>(48 + (i // 10) % 10)
            k += 1
        text[k] = <char>(48 + i % 10)
        text[k + 1] = 46
        text[k + 2] = 0
        text[k + 3] = 0
        memcpy(&OCTET[i], text, 4)
        OCTET_LEN[i] = <uint8_t>(k + 2)


_init_tables()


cdef inline Py_ssize_t _u64(char* out, uint64_t v) noexcept nogil:
    """Append v in decimal (digits counted first, then written by pairs from the end)."""
    cdef Py_ssize_t k = 1, j
    cdef uint64_t p = 10, q
    while k < 20 and v >= p:
        k += 1
        p *= 10
    j = k
    while v >= 100:
        q = v // 100
        j -= 2
        memcpy(out + j, DIGITS2 + 2 * (v - q * 100), 2)
        v = q
    if v >= 10:
        memcpy(out, DIGITS2 + 2 * v, 2)
    else:
        out[0] = <char>(48 + v)
    return k


cdef inline Py_ssize_t _frac9(char* out, uint64_t v) noexcept nogil:
    """Append v (< 10**9) as exactly nine digits."""
    cdef int j
    cdef uint64_t q
    for j in range(7, -1, -2):
        q = v // 100
        memcpy(out + j, DIGITS2 + 2 * (v - q * 100), 2)
        v = q
    out[0] = <char>(48 + v)
    return 9


cdef inline Py_ssize_t _ip4(char* out, uint32_t a) noexcept nogil:
    """Append "a.b.c.d" with its quotes (octets from OCTET: 4 bytes written each)."""
    cdef Py_ssize_t n = 1
    out[0] = 34
    memcpy(out + n, &OCTET[a >> 24], 4)
    n += OCTET_LEN[a >> 24]
    memcpy(out + n, &OCTET[(a >> 16) & 255], 4)
    n += OCTET_LEN[(a >> 16) & 255]
    memcpy(out + n, &OCTET[(a >> 8) & 255], 4)
    n += OCTET_LEN[(a >> 8) & 255]
    memcpy(out + n, &OCTET[a & 255], 4)
    n += OCTET_LEN[a & 255]
    out[n - 1] = 34                     # the last octet's '.' becomes the closing quote
    return n


cdef inline Py_ssize_t _verdict_field(char* out, uint8_t v) noexcept nogil:
    """Append "verdict":"<name>","reason": (literals: constant moves)."""
    if v == V_FORWARD:
        return _put(out, "\"verdict\":\"forward\",\"reason\":")
    if v == V_DROP:
        return _put(out, "\"verdict\":\"drop\",\"reason\":")
    if v == V_REJECT:
        return _put(out, "\"verdict\":\"reject\",\"reason\":")
    if v == V_LOCAL:
        return _put(out, "\"verdict\":\"local\",\"reason\":")
    if v == V_REPLY:
        return _put(out, "\"verdict\":\"reply\",\"reason\":")
    return _put(out, "\"verdict\":\"pending\",\"reason\":")


cdef inline Py_ssize_t _ct_field(char* out, uint8_t c) noexcept nogil:
    """Append ,"ct":<state>,"service": (literals: constant moves)."""
    if c == 1:
        return _put(out, ",\"ct\":\"new\",\"service\":")
    if c == 2:
        return _put(out, ",\"ct\":\"established\",\"service\":")
    if c == 3:
        return _put(out, ",\"ct\":\"reply\",\"service\":")
    if c == 4:
        return _put(out, ",\"ct\":\"related\",\"service\":")
    if c == 5:
        return _put(out, ",\"ct\":\"invalid\",\"service\":")
    return _put(out, ",\"ct\":null,\"service\":")


cdef const char* _proto_name(uint8_t ip_ver, uint8_t proto) noexcept nogil:
    if proto == 6:
        return "\"tcp\""
    if proto == 17:
        return "\"udp\""
    if proto == 132:
        return "\"sctp\""
    if proto == 1:
        return "\"icmp\""
    if proto == 58:
        return "\"icmpv6\""
    if proto == 4:
        return "\"ipip\""
    if proto == 41:
        return "\"ipv6-in-ip\""
    return NULL


cdef inline int _addr(char* out, int cap, uint8_t ip_ver, uint32_t a4, const uint8_t* a6) noexcept nogil:
    if ip_ver == 4:
        return <int>_ip4(out, a4)
    return _addr6(out, cap, ip_ver, a6)


cdef int _addr6(char* out, int cap, uint8_t ip_ver, const uint8_t* a6) noexcept nogil:
    cdef char tmp[64]
    if ip_ver == 6:
        if inet_ntop(AF_INET6, a6, tmp, sizeof(tmp)) == NULL:
            return snprintf(out, cap, "null")
        return snprintf(out, cap, "\"%s\"", tmp)
    return snprintf(out, cap, "null")


cdef inline int _ports(char* out, int cap, uint8_t ip_ver, uint8_t proto, uint16_t sport, uint16_t dport) noexcept nogil:
    cdef Py_ssize_t n
    if ip_ver != 0 and (proto == 6 or proto == 17 or proto == 132):
        n = _put(out, "\"sport\":")
        n += _u64(out + n, sport)
        n += _put(out + n, ",\"dport\":")
        n += _u64(out + n, dport)
        return <int>n
    return <int>_put(out, "\"sport\":null,\"dport\":null")


cdef inline int _addrs_ports(char* out, uint8_t ip_ver, uint32_t src4, const uint8_t* src6,
                             uint32_t dst4, const uint8_t* dst6, uint8_t proto, uint16_t sport,
                             uint16_t dport) noexcept nogil:
    """The address and port fields of a tuple: the src value, then ,"dst":..., then the
    ports (the caller wrote "src": before)."""
    cdef int n = _addr(out, 64, ip_ver, src4, src6)
    n += <int>_put(out + n, ",\"dst\":")
    n += _addr(out + n, 64, ip_ver, dst4, dst6)
    out[n] = 44
    n += 1
    n += _ports(out + n, 64, ip_ver, proto, sport, dport)
    return n


cdef bint _inner_tuple(Batch b, const pkt_meta_t* p, orig_tuple_t* t) noexcept nogil:
    """The tuple of the packet inside the tunnel kdp put p in (read from the frame)."""
    cdef uint32_t at = p.inner_off + (14 if p.encap == TUN_VXLAN else 0)
    cdef const uint8_t* h = b.buf + p.off + at
    cdef uint32_t ihl, l4
    cdef bint ports = False
    memset(t, 0, sizeof(orig_tuple_t))
    if at + 40 > p.len and not (at + 20 <= p.len and (h[0] >> 4) == 4):
        return False
    if (h[0] >> 4) == 4:
        ihl = (h[0] & 15) * 4
        t.ip_ver = 4
        t.proto = h[9]
        t.src4 = (<uint32_t>h[12] << 24) | (<uint32_t>h[13] << 16) | (<uint32_t>h[14] << 8) | h[15]
        t.dst4 = (<uint32_t>h[16] << 24) | (<uint32_t>h[17] << 16) | (<uint32_t>h[18] << 8) | h[19]
        l4 = at + ihl
        ports = ((h[6] & 0x1F) | h[7]) == 0
    elif (h[0] >> 4) == 6:
        t.ip_ver = 6
        t.proto = h[6]
        memcpy(t.src6, h + 8, 16)
        memcpy(t.dst6, h + 24, 16)
        l4 = at + 40
        ports = True
    else:
        return False
    if ports and (t.proto == 6 or t.proto == 17 or t.proto == 132) and l4 + 4 <= p.len:
        t.sport = (<uint16_t>b.buf[p.off + l4] << 8) | b.buf[p.off + l4 + 1]
        t.dport = (<uint16_t>b.buf[p.off + l4 + 2] << 8) | b.buf[p.off + l4 + 3]
    return True


cdef inline Py_ssize_t _line(Batch b, pkt_meta_t* p, const orig_tuple_t* o, const dns_note_t* note,
                             uint64_t index, int64_t frame, NameTable ports, NameTable services,
                             NameTable reasons, NameTable policies, const char* node, uint8_t hop,
                             char* out, line_state_t* st) noexcept nogil:
    """One packet's line (see the module's docstring) at out; returns its length. frame:
    its frame number in the output capture (-1: null); note: its DNS note (NULL: null)."""
    cdef Py_ssize_t n = 0
    cdef const char* proto
    cdef orig_tuple_t inner
    cdef bint tunnelled
    cdef uint8_t ip_ver, pr
    cdef uint32_t vni
    cdef const uint8_t* vx
    cdef uint64_t sec
    tunnelled = p.encap != 0 and p.verdict != V_DROP and _inner_tuple(b, p, &inner)
    ip_ver = inner.ip_ver if tunnelled else p.ip_ver
    pr = inner.proto if tunnelled else p.proto
    n += _put(out + n, "{\"index\":")
    n += _u64(out + n, index)
    n += _put(out + n, ",\"ts\":")
    sec = p.ts_ns // 1000000000ULL
    if sec != st.last_sec or st.sec_len == 0:   # packets of one second share its digits
        st.sec_len = _u64(st.sec_text, sec)
        st.sec_text[st.sec_len] = 46
        st.sec_len += 1
        st.last_sec = sec
    n += _putn(out + n, st.sec_text, st.sec_len)
    n += _frac9(out + n, p.ts_ns - sec * 1000000000ULL)
    out[n] = 44
    n += 1
    if frame >= 0:
        n += _put(out + n, "\"frame\":")
        n += _u64(out + n, <uint64_t>frame)
        out[n] = 44
        n += 1
    else:
        n += _put(out + n, "\"frame\":null,")
    n += _verdict_field(out + n, p.verdict)
    n += reasons.put(out + n, p.reason)
    n += _put(out + n, ",\"in_port\":")
    n += ports.put(out + n, -1 if p.in_port == NO_PORT else p.in_port)
    n += _put(out + n, ",\"out_port\":")
    n += ports.put(out + n, -1 if p.out_port == NO_PORT else p.out_port)
    n += _put(out + n, ",\"proto\":")
    if ip_ver == 0:
        n += _put(out + n, "null")
    elif pr == 6:
        n += _put(out + n, "\"tcp\"")
    else:
        proto = _proto_name(ip_ver, pr)
        if proto == NULL:
            n += snprintf(out + n, 16, "\"%u\"", pr)
        else:
            n += _put(out + n, proto)
    n += _put(out + n, ",\"src\":")
    if tunnelled:
        n += _addrs_ports(out + n, ip_ver, inner.src4, inner.src6, inner.dst4, inner.dst6, pr,
                          inner.sport, inner.dport)
    else:
        n += _addrs_ports(out + n, p.ip_ver, p.src4, p.src6, p.dst4, p.dst6, p.proto, p.sport,
                          p.dport)
    n += _ct_field(out + n, p.ct_state)
    n += services.put(out + n, -1 if p.svc_port == NO_ID else <Py_ssize_t>p.svc_port)
    n += _put(out + n, ",\"policy\":")
    if p.pol_egress == 0 and p.pol_ingress == 0:
        n += _put(out + n, "null")
    else:
        n += snprintf(out + n, MAX_LABEL, "{\"egress\":%s,\"ingress\":%s}",
                      policies.get(p.pol_egress if p.pol_egress else -1),
                      policies.get(p.pol_ingress if p.pol_ingress else -1))
    n += _put(out + n, ",\"orig\":")
    if o.ip_ver == 0:
        n += _put(out + n, "null")
    else:
        n += _put(out + n, "{\"src\":")
        n += _addrs_ports(out + n, o.ip_ver, o.src4, o.src6, o.dst4, o.dst6, o.proto, o.sport,
                          o.dport)
        out[n] = 125
        n += 1
    n += _put(out + n, ",\"dns\":")
    if note == NULL:
        n += _put(out + n, "null")
    else:
        n += dns_note_json(note, out + n)
    if tunnelled:
        n += snprintf(out + n, 40, ",\"tunnel\":{\"type\":\"%s\",\"src\":",
                      "ipip" if p.encap == TUN_IPIP else "vxlan")
        n += _addr(out + n, 64, p.ip_ver, p.src4, p.src6)
        n += snprintf(out + n, 8, ",\"dst\":")
        n += _addr(out + n, 64, p.ip_ver, p.dst4, p.dst6)
        if p.encap == TUN_VXLAN:
            vx = b.buf + p.off + p.inner_off - 8
            vni = (<uint32_t>vx[4] << 16) | (<uint32_t>vx[5] << 8) | vx[6]
            n += snprintf(out + n, 24, ",\"vni\":%u", vni)
        n += snprintf(out + n, 4, "}")
    if p.decap == TUN_IPIP or p.decap == TUN_VXLAN:
        n += snprintf(out + n, 24, ",\"decap\":\"%s\"", "ipip" if p.decap == TUN_IPIP else "vxlan")
    if node != NULL:
        n += snprintf(out + n, 300, ",\"node\":%s,\"hop\":%u", node, hop)
    out[n] = 125
    out[n + 1] = 10
    return n + 2


cdef Py_ssize_t log_line(VerdictLog log, Batch b, Py_ssize_t j, const orig_tuple_t* orig,
                         const dns_note_t* note, uint64_t index, int64_t frame, uint8_t hop,
                         char* out, line_state_t* st) noexcept nogil:
    return _line(b, &b.m[j], orig, note, index, frame, log.ports, log.services, log.reasons,
                 log.policies, log.node_c, hop, out, st)


cdef Py_ssize_t _format(Batch b, const orig_tuple_t* orig, const dns_note_t* notes,
                        uint64_t first_index, NameTable ports, NameTable services, NameTable reasons,
                        NameTable policies, char* out, const char* node, const uint64_t* indices,
                        const uint8_t* hops, int64_t first_frame, const uint8_t* keep) noexcept nogil:
    cdef Py_ssize_t i, n = 0
    cdef int64_t frame = first_frame
    cdef pkt_meta_t* p
    cdef bint tx
    cdef line_state_t st
    memset(&st, 0, sizeof(st))
    for i in range(b.count):
        p = &b.m[i]
        # the packet's frame number (1-based) in the output capture, which writes the
        # transmitted packets in batch order; counted for the packets not logged too
        # (--filter, --log-only)
        tx = first_frame >= 0 and (p.verdict == V_FORWARD or p.verdict == V_REJECT or p.verdict == V_REPLY)
        if tx:
            frame += 1
        if keep != NULL and keep[i] == 0:
            continue
        n += _line(b, p, &orig[i], &notes[i] if notes != NULL else NULL,
                   indices[i] if indices != NULL else first_index + i, frame if tx else -1,
                   ports, services, reasons, policies, node, hops[i] if hops != NULL else 0, out + n, &st)
    return n


cdef class VerdictLog:
    """Writes one JSON line per packet to a binary file object, batch at a time.

    `port_names`: a list of names indexed by port id, or a live table (kdp.ports.PortTable:
    iterates (id, name), has a length) whose names are read again whenever it has grown,
    so ports created while a capture is read (new pcapng interfaces) are named too.
    """
    def __init__(self, fileobj, port_names, service_names, reason_names, Py_ssize_t capacity,
                 node=None, policy_names=()):
        self.fileobj = fileobj
        self.node = _json_string(node) + b"\0" if node is not None else None
        self.node_c = NULL if self.node is None else <const char*>self.node
        if isinstance(port_names, (list, tuple)):
            self.port_table = None
            self.ports = NameTable(port_names)
        else:
            self.port_table = port_names
            self._read_port_table()
        self.services = NameTable(service_names)
        self.reasons = NameTable(reason_names)
        self.policies = NameTable(_labels(policy_names))
        self.orig = np.zeros(capacity, dtype=ORIG_TUPLE_DTYPE)
        self.scratch = np.zeros(capacity * MAX_LINE + SLACK, dtype=np.uint8)
        self.lines = 0
        self.dns_notes = None

    def _read_port_table(self):
        self.port_count = len(self.port_table)
        self.ports = NameTable([name for _id, name in self.port_table])

    def refresh_names(self):
        """Read the live port table's names again if it has grown (format() does this at
        each batch; a caller that formats with log_line does it itself)."""
        if self.port_table is not None and len(self.port_table) != self.port_count:
            self._read_port_table()

    def set_names(self, port_names=None, service_names=None, policy_names=None):
        """New port, service or policy decision names (after a reload); port_names as in __init__."""
        if policy_names is not None:
            self.policies = NameTable(_labels(policy_names))
        if port_names is not None:
            if isinstance(port_names, (list, tuple)):
                self.port_table = None
                self.ports = NameTable(port_names)
            else:
                self.port_table = port_names
                self._read_port_table()
        if service_names is not None:
            self.services = NameTable(service_names)

    def capture_orig(self, Batch b):
        """Remember the batch's tuples as received (call after parse, before NAT)."""
        cdef orig_tuple_t* orig = <orig_tuple_t*>cnp.PyArray_DATA(self.orig)
        if b.count > self.orig.shape[0]:
            raise ValueError("batch larger than the log's capacity")
        with nogil:
            snapshot_tuples(b, orig)

    def capture_dns(self, notes):
        """The DNS stage's per-packet notes for the batch being run (None: no DNS stage)."""
        self.dns_notes = notes

    def detach_dns(self):
        """Keep a copy of the batch's DNS notes (the pipeline reuses its array for the next
        batch: a log written while the next batch runs needs its own)."""
        if self.dns_notes is not None:
            self.dns_notes = self.dns_notes.copy()

    def write(self, Batch b, indices=None, hops=None, first_frame=None, keep=None):
        """One line per packet of b; with `keep` (uint8 per packet), only for those
        whose keep is not 0 (their index and frame numbers stay). `indices` (uint64 per packet) numbers the lines
        instead of the running count, `hops` (uint8) gives their hop (multi-node).
        `first_frame`: how many packets the output capture held before this batch's
        transmitted ones (their `frame` numbers follow it); None: no output, frame null."""
        self.fileobj.write(self.format(b, indices, hops, first_frame, keep))

    def format(self, Batch b, indices=None, hops=None, first_frame=None, keep=None):
        """The lines write() would write (as write, counted in `lines`), formatted with the
        GIL released, as a memoryview of this log's scratch (valid until its next format):
        for a caller that writes them itself (kdp/shards.py puts a batch's lines in
        place with pwrite while other threads format theirs)."""
        cdef Py_ssize_t n
        cdef int64_t ff = -1 if first_frame is None else <int64_t>first_frame
        cdef char* out = <char*>cnp.PyArray_DATA(self.scratch)
        cdef const orig_tuple_t* orig = <const orig_tuple_t*>cnp.PyArray_DATA(self.orig)
        cdef const char* node = NULL
        cdef const uint64_t* idx = NULL
        cdef const uint8_t* hop = NULL
        cdef const dns_note_t* notes = NULL
        cdef const uint8_t* kp = NULL
        if b.count > self.orig.shape[0]:
            raise ValueError("batch larger than the log's capacity")
        if self.port_table is not None and len(self.port_table) != self.port_count:
            self._read_port_table()
        if self.dns_notes is not None:
            if self.dns_notes.shape[0] < b.count:
                raise ValueError("DNS notes smaller than the batch")
            notes = <const dns_note_t*>cnp.PyArray_DATA(self.dns_notes)
        if self.node is not None:
            node = self.node
        if indices is not None:
            indices = np.ascontiguousarray(indices, dtype=np.uint64)
            if indices.shape[0] < b.count:
                raise ValueError("fewer indices than packets")
            idx = <const uint64_t*>cnp.PyArray_DATA(indices)
        if hops is not None:
            hops = np.ascontiguousarray(hops, dtype=np.uint8)
            if hops.shape[0] < b.count:
                raise ValueError("fewer hops than packets")
            hop = <const uint8_t*>cnp.PyArray_DATA(hops)
        if keep is not None:
            keep = np.ascontiguousarray(keep, dtype=np.uint8)
            if keep.shape[0] < b.count:
                raise ValueError("keep shorter than the batch")
            kp = <const uint8_t*>cnp.PyArray_DATA(keep)
        with nogil:
            n = _format(b, orig, notes, self.lines, self.ports, self.services, self.reasons,
                        self.policies, out, node, idx, hop, ff, kp)
        self.lines += b.count
        return memoryview(self.scratch)[:n]
