# cython: boundscheck=False, wraparound=False
"""The DNS stage: cluster DNS answered in place from the compiled zone.

Stage contract (``dns_batch``; Python ``dns_stage(batch, table, counters)``)
---------------------------------------------------------------------------
Runs after ingress classification, before the conntrack lookup. Looks at every
V_PENDING IP packet addressed to one of the table's listen (address, port) pairs:

  UDP query, name in the cluster zone (or a reverse name the zone has a PTR
  for), class IN, opcode QUERY
      -> answered in place: the packet becomes the answer, addresses and ports
         swapped (Ethernet addresses too), sent back out of the ingress port:
         verdict V_REPLY, stage ST_DNS, reason R_DNS_ANSWERED; out_port = in_port
         (the route stage then routes it to the asker: the same port, or the tunnel
         a pod of another node asked through).
         NOERROR with the compiled records, NODATA or NXDOMAIN (SOA in authority),
         as CoreDNS's kubernetes plugin answers (kdp/control/dns.py has the rules).
  malformed question / additional section, QDCOUNT != 1
      -> FORMERR (V_REPLY, R_DNS_FORMERR); EDNS version != 0 -> BADVERS (same reason)
  shorter than the 12-byte header, or QR set
      -> dropped, R_DNS_MALFORMED
  anything else (other names, TCP, other classes/opcodes, AXFR/IXFR, TSIG,
  fragments, cut captures, ExternalName A/AAAA outside the zone)
      -> left V_PENDING, untouched: conntrack and the DNS Service's backends see it.
Every such packet counts once in counters[DnsOutcome]; answers with TC set also
in counters[DNS_C_TRUNCATED]. notes[i] gets the outcome, rcode, qtype and the
lowercased question name for the verdict log (outcome DNS_NONE for other packets).

Reads: verdict, ip_ver, proto, dst4/dst6, dport, frag, off, len, l3_off, l4_off,
linktype, in_port. Sets, on answered packets: off, len, wire_len, l4_off, src/dst,
sport/dport, ttl, proto, frag, quote_off, tunnel, out_port, verdict, stage,
reason (and the bytes of the packet); on dropped ones: verdict, stage, reason.
Next stages: answered and dropped packets go straight to account; the others
continue to the conntrack lookup.

The answer: header (ID, opcode, RD, CD copied; QR, AA set; RA clear) and the
client's question as sent (its case kept), then the compiled records, then an
OPT record when the query had one (the client's payload size echoed, DO copied,
version 0, no options). Size limit: 512 bytes without EDNS, else the client's
size within [512, DNS_MAX_UDP]; records that do not fit are left out from the
end (answer, authority, additional order) and TC is set, as miekg/dns's
Truncate does for CoreDNS. Fresh IPv4 (20 bytes, no options) / IPv6 (40 bytes,
no extension headers) and UDP headers, both checksums computed.

Room: an answer is written in place when it fits in the packet's slot, from its
headroom (leaving DNS_FRONT_ROOM bytes of it free in front) to its end rounded up
to SLOT_ALIGN (Batch.push aligns every packet's end so; the next packet's
headroom starts there); else
at the end of the batch buffer (Batch.used grows, HEADROOM in front); else
with fewer records and TC (the header, question and OPT always fit in place:
the query held them). No byte outside the packet's slot or the tail area is
written.

Lookup: one open-addressing hash over the lowercased wire-form name; each name
record lists its answers by qtype and flags saying which other qtypes are NODATA
rather than NXDOMAIN; after endpoint updates a small delta of changed records is
probed first (DnsTable). The batch is walked in three passes (parse and hash,
probe the slot, read the record and write) with prefetches between them, under
nogil, without Python objects.
"""
import numpy as np
cimport numpy as cnp
from libc.string cimport memcpy, memmove, memcmp, memset
from libc.stdio cimport snprintf
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from posix.mman cimport (mmap, munmap, mprotect, PROT_READ, PROT_WRITE, PROT_NONE,
                         MAP_PRIVATE, MAP_ANONYMOUS, MAP_FAILED)
import mmap as _mmap

from kdp._fast.packet cimport (Batch, pkt_meta_t, drop, set_verdict, V_PENDING, V_REPLY,
                               ST_DNS, R_DNS_ANSWERED, R_DNS_FORMERR, R_DNS_MALFORMED,
                               LT_ETHERNET, FRAG_NONE, TUN_NONE, HEADROOM, SLOT_ALIGN, NO_ID)
from kdp._fast.checksum cimport ld16, ld32, st16, st32, cs_fold, kdp_prefetch
from kdp._fast.mix cimport mix64

cnp.import_array()

cdef extern from *:
    """
    #define KDP_DNS_DELTA_BIT 0x80000000u   /* a record offset in the delta blob */
    """
    const uint32_t DELTA_BIT "KDP_DNS_DELTA_BIT"

NOTE_DTYPE = np.dtype([("outcome", "u1"), ("rcode", "u1"), ("qtype", "<u2"), ("name_len", "u1"),
                       ("tc", "u1"), ("_pad", "u1", 2), ("name", "u1", 256)])
assert NOTE_DTYPE.itemsize == sizeof(dns_note_t)
QUERY_SCRATCH_BYTES = sizeof(dns_q_t)
MAX_UDP = DNS_MAX_UDP

# Record flags and answer kinds: the blob format, written by kdp/control/dnswire.py.
cdef enum:
    F_EXISTS = 1            # other qtypes (A/AAAA/SRV/CNAME/MX/NS/...) get NODATA, not NXDOMAIN
    F_RECORDS = 2           # TXT gets NODATA (CoreDNS: the name has records)
    F_RECORDS_OK = 4        # PTR gets NODATA (CoreDNS: the name is no lookup error)
    F_REVERSE = 8           # a reverse name: only its PTR is answered, the rest passes on
    F_POD_NS = 16           # <ns>.pod.<zone> with `pods insecure`: pod names below it are answered
    F_GONE = 128            # (delta records) the name no longer exists
    K_ANSWER = 0
    K_PASS = 1              # pass the query on (ExternalName A/AAAA outside the zone)
    Z_NONE = 0
    Z_CLUSTER = 1
    Z_REVERSE = 2
    ST_PENDING = 0          # dns_q_t.state: parsed, not decided yet
    BLOB_FIRST = 8          # first record offset (0 marks an empty slot)
    T_A = 1
    T_NS = 2
    T_CNAME = 5
    T_SOA = 6
    T_PTR = 12
    T_TXT = 16
    T_AAAA = 28
    T_SRV = 33
    T_OPT = 41
    T_IXFR = 251
    T_AXFR = 252
    RC_NOERROR = 0
    RC_FORMERR = 1
    RC_NXDOMAIN = 3
    RC_BADVERS = 16

FLAGS = {"exists": F_EXISTS, "records": F_RECORDS, "records_ok": F_RECORDS_OK,
         "reverse": F_REVERSE, "pod_ns": F_POD_NS, "gone": F_GONE}
KINDS = {"answer": K_ANSWER, "pass": K_PASS}
BLOB_START = BLOB_FIRST

# reverse zones and the pod label, wire form
cdef const char* REV4 = b"\x07in-addr\x04arpa\x00"     # 14 bytes
cdef const char* REV6 = b"\x03ip6\x04arpa\x00"         # 10 bytes
cdef const char* POD = b"\x03pod"
cdef const char* V4_MAPPED = b"\0\0\0\0\0\0\0\0\0\0\xff\xff"


cdef inline uint16_t le16(const uint8_t* p) noexcept nogil:
    return <uint16_t>p[0] | (<uint16_t>p[1] << 8)


cdef inline uint32_t le32(const uint8_t* p) noexcept nogil:
    return <uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline uint64_t lower8(uint64_t w) noexcept nogil:
    """ASCII A-Z -> a-z in each byte of w (other bytes unchanged). Label length
    bytes are <= 63, below 'A', so a whole wire-form name can be folded."""
    cdef uint64_t hep = w & 0x7F7F7F7F7F7F7F7FULL
    cdef uint64_t ge_a = hep + 0x3F3F3F3F3F3F3F3FULL     # high bit: byte >= 0x41
    cdef uint64_t gt_z = hep + 0x2525252525252525ULL     # high bit: byte >= 0x5B
    cdef uint64_t m = ge_a & ~gt_z & ~w & 0x8080808080808080ULL
    return w | (m >> 2)


cdef inline uint64_t hash_step(uint64_t h, uint64_t w) noexcept nogil:
    h = (h ^ w) * 0x9E3779B97F4A7C15ULL
    return h ^ (h >> 29)


cdef inline uint64_t hash_key(const uint8_t* k, uint32_t n) noexcept nogil:
    """The table's hash of a (lowercased) wire-form name of n bytes."""
    cdef uint64_t h = 0xC6A4A7935BD1E995ULL ^ n
    cdef uint64_t w
    cdef uint32_t i = 0
    while i + 8 <= n:
        memcpy(&w, k + i, 8)
        h = hash_step(h, w)
        i += 8
    if i < n:
        w = 0
        memcpy(&w, k + i, n - i)
        h = hash_step(h, w)
    return mix64(h)


cdef inline uint64_t fold_and_hash(const uint8_t* src, uint32_t n, uint8_t* dst) noexcept nogil:
    """Lowercase the n-byte name at src into dst (room for n rounded up to 8) and
    return hash_key(dst, n). Reads exactly n bytes of src."""
    cdef uint64_t h = 0xC6A4A7935BD1E995ULL ^ n
    cdef uint64_t w
    cdef uint32_t i = 0
    while i + 8 <= n:
        memcpy(&w, src + i, 8)
        w = lower8(w)
        memcpy(dst + i, &w, 8)
        h = hash_step(h, w)
        i += 8
    if i < n:
        w = 0
        memcpy(&w, src + i, n - i)
        w = lower8(w)
        memcpy(dst + i, &w, 8)
        h = hash_step(h, w)
    return mix64(h)


cdef inline uint64_t sum32(const uint8_t* b, uint32_t n, uint64_t acc) noexcept nogil:
    """One's complement sum (unfolded) of n bytes as big-endian 16-bit words."""
    cdef uint32_t i = 0
    while i + 4 <= n:
        acc += ld32(b + i)
        i += 4
    if i + 2 <= n:
        acc += ld16(b + i)
        i += 2
    if i < n:
        acc += <uint64_t>b[i] << 8
    return acc


cdef inline uint32_t align_up(uint32_t x) noexcept nogil:
    return (x + SLOT_ALIGN - 1) & ~(<uint32_t>SLOT_ALIGN - 1)


# ------------------------------------------------------------------ the table

cdef object _slots_for(const uint8_t* b, Py_ssize_t size, offsets):
    """The open-addressing index (uint64: tag << 32 | offset / 8) over a blob's records."""
    cdef Py_ssize_t k, n_rec = len(offsets)
    cdef uint32_t off, n, i
    cdef uint64_t h, tag, mask
    cdef uint64_t* slots
    cdef uint64_t cap = 16
    while cap < 2 * n_rec + 16:
        cap <<= 1
    arr = np.zeros(cap, dtype=np.uint64)
    slots = <uint64_t*>cnp.PyArray_DATA(arr)
    mask = cap - 1
    offs = np.asarray(offsets, dtype=np.uint64)
    for k in range(n_rec):
        off = <uint32_t>offs[k]
        if off < BLOB_FIRST or off % 8 or off + 8 > size:
            raise ValueError(f"record offset {off} is not a record")
        n = b[off]
        if n == 0 or off + 8 + n > size:
            raise ValueError(f"record at {off}: name runs past the blob")
        h = hash_key(b + off + 8, n)
        if probe(b, slots, mask, b + off + 8, n, h) != 0:
            raise ValueError(f"record at {off}: the name is already in the table")
        tag = (h >> 32) | 1
        i = <uint32_t>(h & mask)
        while slots[i] != 0:
            i = (i + 1) & mask
        slots[i] = (tag << 32) | (off >> 3)
    return arr


cdef inline uint32_t probe(const uint8_t* b, const uint64_t* slots, uint64_t mask,
                           const uint8_t* key, uint32_t n, uint64_t h) noexcept nogil:
    """Offset of the record named key in one segment, 0 when absent."""
    cdef uint64_t tag = (h >> 32) | 1
    cdef uint32_t i = <uint32_t>(h & mask)
    cdef uint64_t s
    cdef uint32_t off
    while True:
        s = slots[i]
        if s == 0:
            return 0
        if (s >> 32) == tag:
            off = <uint32_t>(s & 0xFFFFFFFFULL) << 3
            if b[off] == n and memcmp(b + off + 8, key, n) == 0:
                return off
        i = (i + 1) & mask


cdef class DnsTable:
    """The compiled zone: name records (kdp/control/dnswire.py) in one blob, an
    open-addressing hash over their names, the listen addresses, the zone, TTL
    and the SOA kdp puts in NXDOMAIN / NODATA answers. Immutable: a new zone is a
    new table, swapped whole between batches.

    DnsTable(delta_blob, offsets, ..., base=table) is `table` with the records of a
    small second blob in front (names changed since `table` was compiled: an
    endpoint update; a record flagged gone hides the base's). The base's blob and
    index are shared, not copied, so an update costs the changed names only."""

    def __init__(self, blob, record_offsets, zone_wire, listen=(), uint32_t ttl=5,
                 uint32_t serial=1, bint pods_insecure=True, DnsTable base=None):
        cdef const uint8_t[::1] bv
        cdef uint32_t i
        cdef bytes zone, soa, packed
        arr = np.frombuffer(bytes(blob), dtype=np.uint8)
        if arr.shape[0] < BLOB_FIRST or bytes(arr[:8]) != b"KDPDNS1\0":
            raise ValueError("not a kdp DNS blob (kdp/control/dnswire.py makes them)")
        if <uint64_t>arr.shape[0] >= DELTA_BIT:
            raise ValueError("DNS blob over 2 GiB")
        bv = arr
        if base is None:
            self.blob = arr
            self.b = &bv[0]
            self.slots_arr = _slots_for(self.b, arr.shape[0], record_offsets)
            self.n_names = len(record_offsets)
            self.delta = np.zeros(BLOB_FIRST, dtype=np.uint8)
            self.dslots_arr = np.zeros(1, dtype=np.uint64)
            self.n_delta = 0
        else:
            self.blob = base.blob
            self.b = base.b
            self.slots_arr = base.slots_arr
            self.n_names = base.n_names
            self.delta = arr
            self.dslots_arr = _slots_for(&bv[0], arr.shape[0], record_offsets)
            self.n_delta = len(record_offsets)
        self.slots = <uint64_t*>cnp.PyArray_DATA(self.slots_arr)
        self.mask = self.slots_arr.shape[0] - 1
        self.d = <const uint8_t*>cnp.PyArray_DATA(self.delta)
        self.dslots = <uint64_t*>cnp.PyArray_DATA(self.dslots_arr)
        self.dmask = self.dslots_arr.shape[0] - 1
        zone = bytes(zone_wire)
        if not 1 <= len(zone) <= DNS_MAX_NAME or zone[len(zone) - 1] != 0:
            raise ValueError("zone_wire must be a wire-form name")
        memset(self.zone, 0, sizeof(self.zone))
        memcpy(self.zone, <const char*>zone, len(zone))
        self.zone_len = len(zone)
        self.zone_labels = 0
        i = 0
        while self.zone[i] != 0:
            self.zone_labels += 1
            i += self.zone[i] + 1
        self.ttl = ttl
        self.pods_insecure = pods_insecure
        self.n4 = self.n6 = 0
        import ipaddress
        for address, port in listen:
            ip = ipaddress.ip_address(address)
            if ip.version == 4:
                if self.n4 == DNS_MAX_LISTEN:
                    raise ValueError(f"at most {DNS_MAX_LISTEN} IPv4 listen addresses")
                self.listen4[self.n4] = int(ip)
                self.lport4[self.n4] = port
                self.n4 += 1
            else:
                if self.n6 == DNS_MAX_LISTEN:
                    raise ValueError(f"at most {DNS_MAX_LISTEN} IPv6 listen addresses")
                packed = ip.packed
                memcpy(self.listen6[self.n6], <const char*>packed, 16)
                self.lport6[self.n6] = port
                self.n6 += 1
        # SOA for NXDOMAIN / NODATA (CoreDNS's plugin.SOA): owner = the zone, TTL
        # min(ttl, 300), ns.dns.<zone> hostmaster.<zone> serial 7200 1800 86400 ttl;
        # the three zone pointers (owner, and after "ns.dns" / "hostmaster") are set per answer.
        soa = (b"\xc0\x00" + bytes([0, T_SOA, 0, 1]) + min(ttl, 300).to_bytes(4, "big")
               + (42).to_bytes(2, "big") + b"\x02ns\x03dns\xc0\x00" + b"\x0ahostmaster\xc0\x00"
               + serial.to_bytes(4, "big") + (7200).to_bytes(4, "big") + (1800).to_bytes(4, "big")
               + (86400).to_bytes(4, "big") + ttl.to_bytes(4, "big"))
        assert len(soa) == DNS_SOA_LEN
        memcpy(self.soa, <const char*>soa, DNS_SOA_LEN)
        self.serial = serial

    cdef uint32_t find(self, const uint8_t* key, uint32_t n, uint64_t h) noexcept nogil:
        """The record named key (n bytes, lowercased): its offset, with DELTA_BIT when it
        is in the delta blob; 0 when absent (or gone)."""
        cdef uint32_t off
        if self.n_delta:
            off = probe(self.d, self.dslots, self.dmask, key, n, h)
            if off:
                return 0 if self.d[off + 2] & F_GONE else off | DELTA_BIT
        return probe(self.b, self.slots, self.mask, key, n, h)

    def lookup(self, name_wire):
        """(flags, {qtype: kind}) of the record for a wire-form name, or None."""
        cdef bytes key = bytes(name_wire).lower()
        cdef const uint8_t* k = <const uint8_t*><const char*>key
        cdef uint32_t off = self.find(k, len(key), hash_key(k, len(key)))
        if off == 0:
            return None
        cdef const uint8_t* r = rec_ptr(self, off)
        a = (8 + r[0] + 3) & ~3
        return r[2], {le16(r + a + 8 * j): r[a + 8 * j + 2] for j in range(r[1])}

    def __len__(self):
        return self.n_names + self.n_delta

    def __repr__(self):
        return (f"DnsTable({self.n_names} names + {self.n_delta} changed, zone "
                f"{self.zone_len}-byte wire name, ttl {self.ttl})")


cdef inline const uint8_t* rec_ptr(DnsTable t, uint32_t rec) noexcept nogil:
    return (t.d if rec & DELTA_BIT else t.b) + (rec & ~(<uint32_t>DELTA_BIT))


cdef inline const uint8_t* rec_answer(const uint8_t* r, uint16_t qtype, uint8_t* kind) noexcept nogil:
    """The answer body of qtype in the record r, NULL when it has none. Body offsets
    are signed, relative to the record (a body may be shared with an earlier record)."""
    cdef uint32_t n = r[1]
    cdef uint32_t a = (8 + r[0] + 3) & ~(<uint32_t>3)
    cdef uint32_t j
    for j in range(n):
        if le16(r + a + 8 * j) == qtype:
            kind[0] = r[a + 8 * j + 2]
            return r + <int32_t>le32(r + a + 8 * j + 4)
    return NULL


# ------------------------------------------------------------------ parsing

cdef uint8_t parse_query(const uint8_t* m, uint32_t n, dns_q_t* q, dns_note_t* note) noexcept nogil:
    """Parse the query at m (n bytes). Fills q (name length, labels, qtype, EDNS)
    and note (lowercased name, qtype) and returns ST_PENDING, or the outcome that
    decides the packet. Reads no byte at or past m + n."""
    cdef uint32_t pos, qd, an, ns, ar, k, rdlen, start
    cdef uint16_t flags, rtype
    cdef uint8_t L
    cdef bint opt_seen = False, root
    q.name_len = 0
    q.n_labels = 0
    q.has_opt = 0
    q.edns_size = 0
    q.edns_do = 0
    q.qtype = 0
    note.name_len = 0
    note.qtype = 0
    if n < DNS_HEADER:
        return DNS_SHORT
    flags = ld16(m + 2)
    if flags & 0x8000:
        return DNS_RESPONSE
    if (flags >> 11) & 15:
        return DNS_PASS_OPCODE
    qd = ld16(m + 4)
    an = ld16(m + 6)
    ns = ld16(m + 8)
    ar = ld16(m + 10)
    if qd != 1:
        return DNS_FORMERR
    pos = DNS_HEADER
    while True:
        if pos >= n:
            return DNS_FORMERR
        L = m[pos]
        if L == 0:
            pos += 1
            break
        if L > 63:                      # a compression pointer (nothing before the question
            return DNS_FORMERR          # to point at) or an extended / reserved label type
        if pos - DNS_HEADER + L + 2 > DNS_MAX_NAME:
            return DNS_FORMERR          # longer than 255 bytes with the root label
        q.labels[q.n_labels] = <uint8_t>(pos - DNS_HEADER)
        q.n_labels += 1
        pos += L + 1
    if pos + 4 > n:
        return DNS_FORMERR
    q.name_len = <uint8_t>(pos - DNS_HEADER)
    q.hash = fold_and_hash(m + DNS_HEADER, q.name_len, note.name)
    note.name_len = q.name_len
    q.qtype = ld16(m + pos)
    note.qtype = q.qtype
    if an != 0 or ns != 0:
        return DNS_PASS_SECTIONS
    if ld16(m + pos + 2) != 1:
        return DNS_PASS_CLASS
    if q.qtype == T_AXFR or q.qtype == T_IXFR:
        return DNS_PASS_XFR
    pos += 4
    for k in range(ar):
        # owner name: labels up to the root or a pointer (not followed: only skipped)
        start = pos
        root = pos < n and m[pos] == 0
        while True:
            if pos >= n or pos - start >= DNS_MAX_NAME:
                return DNS_FORMERR
            L = m[pos]
            if L == 0:
                pos += 1
                break
            if L >= 0xC0:
                pos += 2
                break
            if L > 63:
                return DNS_FORMERR
            pos += L + 1
        if pos + 10 > n:
            return DNS_FORMERR
        rtype = ld16(m + pos)
        rdlen = ld16(m + pos + 8)
        if pos + 10 + rdlen > n:
            return DNS_FORMERR
        if rtype == T_OPT:
            if opt_seen or not root:    # RFC 6891 6.1.1: one OPT, owned by the root
                return DNS_FORMERR
            opt_seen = True
            q.has_opt = 1
            q.edns_size = ld16(m + pos + 2)
            q.edns_do = (m[pos + 6] >> 7) & 1
            if m[pos + 5] != 0:         # EDNS version
                return DNS_BADVERS
        else:
            return DNS_PASS_SECTIONS    # TSIG, SIG(0), ...: answers would need them too
        pos += 10 + rdlen
    return ST_PENDING


cdef inline uint8_t classify_zone(DnsTable t, dns_q_t* q, const uint8_t* key) noexcept nogil:
    cdef int j
    cdef uint32_t n = q.name_len
    j = q.n_labels - t.zone_labels
    if j >= 0 and q.labels[j] == n - t.zone_len and memcmp(key + n - t.zone_len, t.zone, t.zone_len) == 0:
        return Z_CLUSTER
    j = q.n_labels - 2
    if j >= 0 and ((q.labels[j] == n - 14 and n >= 14 and memcmp(key + n - 14, REV4, 14) == 0)
                   or (q.labels[j] == n - 10 and n >= 10 and memcmp(key + n - 10, REV6, 10) == 0)):
        return Z_REVERSE
    return Z_NONE


cdef inline bint listens(DnsTable t, pkt_meta_t* p) noexcept nogil:
    cdef int i
    if p.ip_ver == 4:
        for i in range(t.n4):
            if t.listen4[i] == p.dst4 and t.lport4[i] == p.dport:
                return True
    elif p.ip_ver == 6:
        for i in range(t.n6):
            if t.lport6[i] == p.dport and memcmp(t.listen6[i], p.dst6, 16) == 0:
                return True
    return False


# ------------------------------------------------------------------ pod names

cdef int dec_field(const uint8_t* s, uint32_t n) noexcept nogil:
    """A decimal IPv4 field (1-3 digits, no leading zero, <= 255), -1 if not one."""
    cdef int v = 0
    cdef uint32_t i
    if n == 0 or n > 3 or (n > 1 and s[0] == 48):
        return -1
    for i in range(n):
        if s[i] < 48 or s[i] > 57:
            return -1
        v = v * 10 + (s[i] - 48)
    return v if v <= 255 else -1


cdef int hexval(uint8_t c) noexcept nogil:
    if 48 <= c <= 57:
        return c - 48
    if 97 <= c <= 102:
        return c - 87
    if 65 <= c <= 70:
        return c - 55
    return -1


cdef int pod_ip(const uint8_t* s, uint32_t n, uint8_t* out) noexcept nogil:
    """The address of a pod name label (CoreDNS: three dashes and no "--" -> a
    dotted IPv4, else dashes -> colons, parsed as Go's net.ParseIP does).
    Returns 4, 6, or 0 when the label is not an address; out gets 4 / 16 bytes."""
    cdef uint32_t i, dashes = 0, start, g
    cdef bint double = False
    cdef int v, d, ngroups = 0, ellipsis = -1
    cdef uint16_t groups[8]
    for i in range(n):
        if s[i] == 45:
            dashes += 1
            if i + 1 < n and s[i + 1] == 45:
                double = True
    if dashes == 3 and not double:
        start = 0
        g = 0
        for i in range(n + 1):
            if i == n or s[i] == 45:
                v = dec_field(s + start, i - start)
                if v < 0:
                    return 0
                out[g] = <uint8_t>v
                g += 1
                start = i + 1
        return 4
    # IPv6: groups of 1-4 hex digits separated by ':', at most one "::" that
    # stands for at least one zero group, 8 groups in all
    i = 0
    if n >= 2 and s[0] == 45 and s[1] == 45:
        ellipsis = 0
        i = 2
        if n == 2:
            memset(out, 0, 16)
            return 6
    while i < n:
        v = 0
        d = 0
        while i < n and hexval(s[i]) >= 0:
            v = (v << 4) | hexval(s[i])
            d += 1
            if d > 4:
                return 0
            i += 1
        if d == 0 or ngroups == 8:
            return 0
        groups[ngroups] = <uint16_t>v
        ngroups += 1
        if i == n:
            break
        if s[i] != 45:
            return 0
        i += 1
        if i < n and s[i] == 45:
            if ellipsis >= 0:
                return 0
            ellipsis = ngroups
            i += 1
            if i == n:
                break
        elif i == n:
            return 0                    # a trailing single dash
    if ellipsis < 0:
        if ngroups != 8:
            return 0
    elif ngroups >= 8:
        return 0                        # "::" must stand for at least one group
    memset(out, 0, 16)
    if ellipsis < 0:
        ellipsis = ngroups
    for g in range(ellipsis):
        out[2 * g] = <uint8_t>(groups[g] >> 8)
        out[2 * g + 1] = <uint8_t>groups[g]
    for g in range(ellipsis, ngroups):
        d = 8 - (ngroups - g)
        out[2 * d] = <uint8_t>(groups[g] >> 8)
        out[2 * d + 1] = <uint8_t>groups[g]
    # an IPv4-mapped address (::ffff:a.b.c.d) is IPv4 to Go's net.IP (To4), so
    # CoreDNS answers it as an A record
    for g in range(10):
        if out[g] != 0:
            return 6
    if out[10] == 0xff and out[11] == 0xff:
        memmove(out, out + 12, 4)
        return 4
    return 6


# ------------------------------------------------------------------ writing

# What goes after the question: compiled records (a prefix of them), or one
# record written by code (the SOA of a negative answer, a pod's A/AAAA).
ctypedef struct body_t:
    const uint8_t* recs         # compiled records, NULL: none
    const uint8_t* ends         # little-endian u16 end offset of each compiled record
    uint16_t n_rr, an, ns, ar, omitted
    uint8_t one[64]             # the record written by code
    uint16_t one_len
    uint8_t one_sec             # 0 none, 1 answer, 2 authority
    uint8_t rcode
    uint8_t aa


cdef inline void body_compiled(body_t* bd, const uint8_t* a) noexcept nogil:
    bd.an = le16(a)
    bd.ns = le16(a + 2)
    bd.ar = le16(a + 4)
    bd.n_rr = le16(a + 6)
    bd.omitted = le16(a + 8)
    bd.ends = a + 12
    bd.recs = a + 12 + 2 * bd.n_rr
    bd.one_len = 0
    bd.one_sec = 0


cdef inline void body_soa(body_t* bd, DnsTable t, uint32_t zone_ptr) noexcept nogil:
    cdef uint16_t ptr = <uint16_t>(0xC000 | zone_ptr)
    bd.recs = NULL
    bd.n_rr = bd.an = bd.ns = bd.ar = bd.omitted = 0
    memcpy(bd.one, t.soa, DNS_SOA_LEN)
    st16(bd.one, ptr)
    st16(bd.one + 19, ptr)
    st16(bd.one + 32, ptr)
    bd.one_len = DNS_SOA_LEN
    bd.one_sec = 2


cdef inline void body_none(body_t* bd) noexcept nogil:
    bd.recs = NULL
    bd.n_rr = bd.an = bd.ns = bd.ar = bd.omitted = 0
    bd.one_len = 0
    bd.one_sec = 0


cdef bint reply(DnsTable t, Batch b, pkt_meta_t* p, dns_q_t* q, body_t* bd,
                bint question, uint8_t* tc_out) noexcept nogil:
    """Turn packet p into the answer: header, the question (when `question`),
    the body's records that fit, OPT. Returns False when nothing could be placed
    (cannot happen for a parsed query: the header and question always fit in place)."""
    cdef uint8_t* buf = b.buf
    cdef uint32_t l3 = p.l3_off
    cdef uint32_t iph = 20 if p.ip_ver == 4 else 40
    cdef uint32_t hdr = l3 + iph + 8
    cdef uint32_t qsec = (q.name_len + 4) if question else 0
    cdef uint32_t opt = 11 if q.has_opt else 0
    cdef uint32_t limit = DNS_MIN_UDP
    cdef uint32_t fixed = DNS_HEADER + qsec + opt
    cdef uint32_t k = 0, rec_len = 0, one = 0, msg_len = 0, F
    cdef int64_t lo, hi, D = 0, start, avail
    cdef uint16_t an, ns, ar, i
    cdef int attempt
    cdef uint8_t tc = 0
    cdef uint8_t id0, id1, opcode, rd, cd
    cdef uint8_t l2[64]
    cdef uint8_t tmp6[16]
    cdef uint32_t tmp4
    cdef uint16_t tmp_port
    cdef uint8_t* m
    cdef uint8_t* ip
    cdef uint8_t* udp
    cdef uint8_t mac[6]
    cdef uint64_t s
    cdef bint placed = False
    if q.has_opt and q.edns_size > DNS_MIN_UDP:
        limit = q.edns_size if q.edns_size < DNS_MAX_UDP else DNS_MAX_UDP
    id0 = buf[q.msg]
    id1 = buf[q.msg + 1]
    opcode = (buf[q.msg + 2] >> 3) & 15
    rd = buf[q.msg + 2] & 1
    cd = (buf[q.msg + 3] >> 4) & 1
    memcpy(l2, buf + p.off, l3)
    # the slot: DNS_FRONT_ROOM bytes into the headroom .. the aligned end (the
    # next packet's headroom starts there: Batch.push)
    lo = <int64_t>p.off - (HEADROOM - DNS_FRONT_ROOM)
    if lo < 0:
        lo = 0
    hi = align_up(p.off + p.len)
    for attempt in range(2):
        # the records that fit: within the client's limit, then (attempt 1, no room
        # anywhere else) within the room in place
        avail = <int64_t>limit - fixed
        if attempt == 1:
            avail = hi - lo - hdr - fixed
        k = bd.n_rr
        while k > 0 and le16(bd.ends + 2 * (k - 1)) > avail:
            k -= 1
        rec_len = le16(bd.ends + 2 * (k - 1)) if k > 0 else 0
        one = bd.one_len if <int64_t>(rec_len + bd.one_len) <= avail else 0
        msg_len = fixed + rec_len + one
        # in place, moving the message back into the headroom as far as needed
        D = q.msg
        if D + msg_len > hi:
            D = hi - msg_len
        if D - hdr >= lo:
            if D != q.msg:
                memmove(buf + D, buf + q.msg, DNS_HEADER + qsec)
            placed = True
            break
        if attempt == 0:
            # at the end of the batch buffer, HEADROOM in front
            start = <int64_t>align_up(<uint32_t>b.used) + HEADROOM
            if start + hdr + msg_len <= b.buf_size:
                D = start + hdr
                memcpy(buf + D, buf + q.msg, DNS_HEADER + qsec)
                b.used = align_up(<uint32_t>(D + msg_len))
                placed = True
                break
    if not placed:
        return False
    tc = 1 if (k < bd.n_rr or bd.omitted or (bd.one_len and not one)) else 0
    F = D - hdr
    memcpy(buf + F, l2, l3)
    if p.linktype == LT_ETHERNET and l3 >= 12:
        memcpy(mac, buf + F, 6)
        memcpy(buf + F, buf + F + 6, 6)
        memcpy(buf + F + 6, mac, 6)
    # DNS header
    m = buf + D
    # the records kept are a prefix: answer, then authority, then additional
    an = bd.an if k >= bd.an else <uint16_t>k
    ns = 0
    if k > bd.an:
        ns = bd.ns if k >= <uint32_t>(bd.an + bd.ns) else <uint16_t>(k - bd.an)
    ar = <uint16_t>(k - an - ns)
    if one:
        if bd.one_sec == 1:
            an += 1
        else:
            ns += 1
    m[0] = id0
    m[1] = id1
    m[2] = <uint8_t>(0x80 | (opcode << 3) | (bd.aa << 2) | (tc << 1) | rd)
    m[3] = <uint8_t>((cd << 4) | (bd.rcode & 15))
    st16(m + 4, 1 if question else 0)
    st16(m + 6, an)
    st16(m + 8, ns)
    st16(m + 10, <uint16_t>(ar + (1 if opt else 0)))
    i = DNS_HEADER + qsec
    if rec_len:
        memcpy(m + i, bd.recs, rec_len)
        i += rec_len
    if one:
        memcpy(m + i, bd.one, one)
        i += one
    if opt:
        m[i] = 0
        st16(m + i + 1, T_OPT)
        st16(m + i + 3, q.edns_size)
        m[i + 5] = <uint8_t>(bd.rcode >> 4)     # extended rcode (BADVERS: 1)
        m[i + 6] = 0                            # version
        m[i + 7] = <uint8_t>(q.edns_do << 7)
        m[i + 8] = 0
        st16(m + i + 9, 0)
        i += 11
    # IP and UDP headers, addresses and ports swapped
    ip = buf + F + l3
    udp = ip + iph
    if p.ip_ver == 4:
        tmp4 = p.dst4
        p.dst4 = p.src4
        p.src4 = tmp4
        ip[0] = 0x45
        ip[1] = 0
        st16(ip + 2, <uint16_t>(iph + 8 + msg_len))
        st32(ip + 4, 0)
        ip[8] = 64
        ip[9] = 17
        st16(ip + 10, 0)
        st32(ip + 12, p.src4)
        st32(ip + 16, p.dst4)
        st16(ip + 10, <uint16_t>~cs_fold(sum32(ip, 20, 0)))
        s = (p.src4 >> 16) + (p.src4 & 0xFFFF) + (p.dst4 >> 16) + (p.dst4 & 0xFFFF)
    else:
        memcpy(tmp6, p.dst6, 16)
        memcpy(p.dst6, p.src6, 16)
        memcpy(p.src6, tmp6, 16)
        ip[0] = 0x60
        ip[1] = 0
        ip[2] = 0
        ip[3] = 0
        st16(ip + 4, <uint16_t>(8 + msg_len))
        ip[6] = 17
        ip[7] = 64
        memcpy(ip + 8, p.src6, 16)
        memcpy(ip + 24, p.dst6, 16)
        s = sum32(ip + 8, 32, 0)
    tmp_port = p.sport
    p.sport = p.dport
    p.dport = tmp_port
    st16(udp, p.sport)
    st16(udp + 2, p.dport)
    st16(udp + 4, <uint16_t>(8 + msg_len))
    st16(udp + 6, 0)
    s += 17 + 8 + msg_len
    s = sum32(udp, 8 + msg_len, s)
    s = <uint16_t>~cs_fold(s)
    st16(udp + 6, <uint16_t>(s if s != 0 else 0xFFFF))
    # metadata: the packet is now the answer
    p.off = F
    p.len = hdr + msg_len
    p.wire_len = p.len
    p.l4_off = <uint16_t>(l3 + iph)
    p.ttl = 64
    p.proto = 17
    p.frag = FRAG_NONE
    p.frag_id = 0
    p.quote_off = 0
    p.q_proto = 0
    p.tunnel = TUN_NONE
    p.inner_off = 0
    p.out_port = p.in_port
    tc_out[0] = tc
    return True


# ------------------------------------------------------------------ resolving

cdef uint8_t resolve_pod(DnsTable t, dns_q_t* q, const uint8_t* key, body_t* bd) noexcept nogil:
    """`pods insecure`: <podname>.<ns>.pod.<zone>, with up to two more labels in
    front (CoreDNS ignores them), answers the address the podname spells when the
    namespace exists. Returns the outcome, 0 when the name is not a pod name."""
    cdef int extra = q.n_labels - t.zone_labels
    cdef int ipos, nspos
    cdef uint32_t off, L
    cdef uint8_t addr[16]
    cdef int fam
    cdef uint8_t* r = bd.one
    if extra < 3 or extra > 5:
        return 0
    if q.labels[extra - 1] + 4 + t.zone_len != q.name_len or memcmp(key + q.labels[extra - 1], POD, 4) != 0:
        return 0
    nspos = q.labels[extra - 2]
    off = t.find(key + nspos, q.name_len - nspos, hash_key(key + nspos, q.name_len - nspos))
    if off == 0 or not (rec_ptr(t, off)[2] & F_POD_NS):
        return 0
    ipos = q.labels[extra - 3]
    L = key[ipos]
    fam = pod_ip(key + ipos + 1, L, addr)
    if fam == 0:
        return DNS_NXDOMAIN
    if fam == 6 and memcmp(addr, V4_MAPPED, 12) == 0:
        fam = 4                         # Go's To4(): a v4-mapped address is an A record
        memmove(addr, addr + 12, 4)
    if q.qtype == T_SRV:
        return DNS_PASS_OTHER
    if (q.qtype == T_A and fam == 4) or (q.qtype == T_AAAA and fam == 6):
        body_none(bd)
        st16(r, 0xC00C)
        st16(r + 2, q.qtype)
        st16(r + 4, 1)
        st32(r + 6, t.ttl)
        st16(r + 10, 4 if fam == 4 else 16)
        memcpy(r + 12, addr, 4 if fam == 4 else 16)
        bd.one_len = 16 if fam == 4 else 28
        bd.one_sec = 1
        return DNS_ANSWER
    return DNS_NODATA


cdef uint8_t resolve(DnsTable t, dns_q_t* q, const uint8_t* key, body_t* bd) noexcept nogil:
    """Decide a parsed in-zone query: fills bd and returns the outcome."""
    cdef uint8_t kind = 0, flags = 0, out
    cdef const uint8_t* a = NULL
    cdef const uint8_t* r
    cdef uint16_t qt = q.qtype
    bd.aa = 1
    bd.rcode = RC_NOERROR
    if q.rec:
        r = rec_ptr(t, q.rec)
        a = rec_answer(r, qt, &kind)
        flags = r[2]
    if q.zone == Z_REVERSE:
        if a != NULL and kind == K_ANSWER:
            body_compiled(bd, a)
            return DNS_ANSWER
        return DNS_PASS_REVERSE
    if a != NULL:
        if kind == K_PASS:
            return DNS_PASS_EXTERNAL
        body_compiled(bd, a)
        return DNS_ANSWER
    if q.rec:
        if qt == T_SOA:
            out = DNS_NODATA
        elif qt == T_TXT:
            out = DNS_NODATA if flags & F_RECORDS else DNS_NXDOMAIN
        elif qt == T_PTR:
            out = DNS_NODATA if flags & F_RECORDS_OK else DNS_NXDOMAIN
        else:
            out = DNS_NODATA if flags & F_EXISTS else DNS_NXDOMAIN
    elif qt == T_SOA:
        out = DNS_NODATA                # CoreDNS answers SOA only at the apex, NODATA elsewhere
    else:
        out = 0
        if t.pods_insecure:
            out = resolve_pod(t, q, key, bd)
            if out == DNS_ANSWER or out == DNS_PASS_OTHER:
                return out
        if out == 0:
            out = DNS_NXDOMAIN
    if out == DNS_NXDOMAIN:
        bd.rcode = RC_NXDOMAIN
    body_soa(bd, t, DNS_HEADER + q.name_len - t.zone_len)
    return out


cdef void dns_batch(DnsTable t, Batch b, uint64_t* ctr, dns_note_t* notes,
                    dns_q_t* qs) noexcept nogil:
    cdef Py_ssize_t i
    cdef pkt_meta_t* p
    cdef dns_q_t* q
    cdef dns_note_t* note
    cdef uint32_t l4, ulen
    cdef uint8_t out, tc
    cdef body_t bd
    cdef uint64_t s
    cdef uint32_t j
    # pass 1: which packets are queries to a listen address; parse, classify, hash
    for i in range(b.count):
        p = &b.m[i]
        q = &qs[i]
        note = &notes[i]
        note.outcome = DNS_NONE
        q.state = DNS_NONE
        if p.verdict != V_PENDING or (p.proto != 17 and p.proto != 6) or not listens(t, p):
            continue
        note.name_len = 0
        note.qtype = 0
        if p.proto == 6:
            out = DNS_PASS_TCP
        elif p.frag != FRAG_NONE:
            out = DNS_PASS_FRAGMENT
        else:
            l4 = p.off + p.l4_off
            ulen = ld16(b.buf + l4 + 4)     # parse checked 8 <= ulen <= the IP payload
            if p.l4_off + ulen > p.len:
                out = DNS_PASS_CUT
            elif p.l3_off > DNS_MAX_L2:
                out = DNS_PASS_OTHER
            else:
                q.msg = l4 + 8
                q.msg_len = <uint16_t>(ulen - 8)
                q.rec = 0
                out = parse_query(b.buf + q.msg, q.msg_len, q, note)
                if out == ST_PENDING:
                    q.zone = classify_zone(t, q, note.name)
                    if q.zone == Z_NONE:
                        out = DNS_PASS_OUT_OF_ZONE
                    else:
                        kdp_prefetch(&t.slots[q.hash & t.mask])
        q.state = 0xFF if out == ST_PENDING else out
    # pass 2: probe the slots, prefetch the records
    for i in range(b.count):
        q = &qs[i]
        if q.state == 0xFF:
            q.rec = t.find(notes[i].name, q.name_len, q.hash)
            if q.rec:
                kdp_prefetch(rec_ptr(t, q.rec))
                kdp_prefetch(rec_ptr(t, q.rec) + 64)
    # pass 3: decide and write
    for i in range(b.count):
        q = &qs[i]
        if q.state == DNS_NONE:
            continue
        p = &b.m[i]
        note = &notes[i]
        out = q.state
        tc = 0
        note.rcode = 0
        if out == 0xFF:
            out = resolve(t, q, note.name, &bd)
        if out == DNS_SHORT or out == DNS_RESPONSE:
            drop(p, ST_DNS, R_DNS_MALFORMED)
        elif out == DNS_FORMERR or out == DNS_BADVERS:
            body_none(&bd)
            bd.aa = 0
            bd.rcode = RC_FORMERR if out == DNS_FORMERR else RC_BADVERS
            note.rcode = bd.rcode
            if out == DNS_FORMERR:
                q.has_opt = 0           # the OPT may be what was malformed
            # the question goes back when it was parsed whole
            if reply(t, b, p, q, &bd, q.name_len != 0, &tc):
                set_verdict(p, V_REPLY, ST_DNS, R_DNS_FORMERR)
            else:
                out = DNS_PASS_OTHER
        elif DNS_ANSWER <= out <= DNS_NXDOMAIN:
            note.rcode = bd.rcode
            if reply(t, b, p, q, &bd, True, &tc):
                set_verdict(p, V_REPLY, ST_DNS, R_DNS_ANSWERED)
            else:
                out = DNS_PASS_OTHER
        note.outcome = out
        note.tc = tc
        ctr[out] += 1
        if tc:
            ctr[<int>DNS_C_TRUNCATED] += 1


# ------------------------------------------------------------------ the verdict log

# DnsOutcome -> log label (kdp.control.dns.OUTCOMES mirrors it)
cdef const char* OUTCOME_TEXT[19]
OUTCOME_TEXT[:] = [b"none", b"answer", b"nodata", b"nxdomain", b"formerr", b"badvers", b"short",
                   b"response", b"out_of_zone", b"reverse_miss", b"tcp", b"opcode", b"class", b"xfr",
                   b"external_name", b"sections", b"fragment", b"cut", b"other"]
OUTCOME_LABELS = [OUTCOME_TEXT[i].decode() for i in range(N_DNS_OUTCOMES)] + ["truncated"]


cdef const char* type_text(uint16_t t) noexcept nogil:
    if t == 1: return "A"
    if t == 2: return "NS"
    if t == 5: return "CNAME"
    if t == 6: return "SOA"
    if t == 12: return "PTR"
    if t == 15: return "MX"
    if t == 16: return "TXT"
    if t == 28: return "AAAA"
    if t == 33: return "SRV"
    if t == 35: return "NAPTR"
    if t == 41: return "OPT"
    if t == 43: return "DS"
    if t == 46: return "RRSIG"
    if t == 48: return "DNSKEY"
    if t == 64: return "SVCB"
    if t == 65: return "HTTPS"
    if t == 251: return "IXFR"
    if t == 252: return "AXFR"
    if t == 255: return "ANY"
    if t == 257: return "CAA"
    return NULL


cdef const char* rcode_text(uint8_t r) noexcept nogil:
    if r == RC_NOERROR: return "NOERROR"
    if r == RC_FORMERR: return "FORMERR"
    if r == RC_NXDOMAIN: return "NXDOMAIN"
    if r == RC_BADVERS: return "BADVERS"
    return "?"


cdef int dns_note_json(const dns_note_t* n, char* out) noexcept nogil:
    cdef int k = 0, i, j, L
    cdef uint8_t c
    cdef const char* t
    cdef const char* lab
    cdef const char* tcs
    if n.outcome == DNS_NONE:
        memcpy(out, b"null", 5)
        return 4
    memcpy(out, b"{\"name\":", 8)
    k = 8
    if n.name_len == 0:
        memcpy(out + k, b"null", 4)
        k += 4
    else:
        # presentation form (RFC 1035 5.1: \. and \DDD escapes), then JSON-escaped
        out[k] = 34
        k += 1
        i = 0
        while i < n.name_len and n.name[i] != 0:
            L = n.name[i]
            for j in range(i + 1, i + 1 + L):
                c = n.name[j]
                if c == 46 or c == 34 or c == 92:          # . " \  -> \. \" \\, JSON-escaped
                    out[k] = 92; out[k + 1] = 92; k += 2
                    if c == 92:
                        out[k] = 92; out[k + 1] = 92; k += 2
                    elif c == 34:
                        out[k] = 92; out[k + 1] = 34; k += 2
                    else:
                        out[k] = 46; k += 1
                elif c < 33 or c > 126:                     # \DDD
                    out[k] = 92; out[k + 1] = 92
                    out[k + 2] = <char>(48 + c // 100)
                    out[k + 3] = <char>(48 + (c // 10) % 10)
                    out[k + 4] = <char>(48 + c % 10)
                    k += 5
                else:
                    out[k] = <char>c
                    k += 1
            out[k] = 46
            k += 1
            i += L + 1
        if i == 0:
            out[k] = 46
            k += 1
        out[k] = 34
        k += 1
    t = type_text(n.qtype)
    if n.name_len == 0:
        k += snprintf(out + k, 16, ",\"type\":null")
    elif t != NULL:
        k += snprintf(out + k, 32, ",\"type\":\"%s\"", t)
    else:
        k += snprintf(out + k, 32, ",\"type\":\"TYPE%u\"", n.qtype)
    if DNS_ANSWER <= n.outcome <= DNS_BADVERS:
        k += snprintf(out + k, 40, ",\"rcode\":\"%s\"", rcode_text(n.rcode))
    else:
        k += snprintf(out + k, 16, ",\"rcode\":null")
    lab = "?"
    if n.outcome < N_DNS_OUTCOMES:
        lab = OUTCOME_TEXT[n.outcome]
    tcs = ""
    if n.tc:
        tcs = ",\"tc\":true"
    k += snprintf(out + k, 64, ",\"outcome\":\"%s\"%s}", lab, tcs)
    return k


def note_json(note):
    """The log's "dns" value for one NOTE_DTYPE record (a str), for tests."""
    cdef dns_note_t n
    cdef char out[DNS_NOTE_JSON_MAX]
    arr = np.array([note], dtype=NOTE_DTYPE)
    memcpy(&n, cnp.PyArray_DATA(arr), sizeof(dns_note_t))
    cdef int k = dns_note_json(&n, out)
    return out[:k].decode()


# ------------------------------------------------------------------ Python entry points

def dns_stage(Batch b not None, DnsTable table not None, counters=None, notes=None, scratch=None):
    """Run the DNS stage over a parsed batch. Returns (counters, notes): counters a
    uint64 [N_DNS_COUNTERS] array (added to when given), notes a NOTE_DTYPE array.
    `notes` (NOTE_DTYPE) and `scratch` (uint8, QUERY_SCRATCH_BYTES per packet) may be
    given, of at least the batch's size, to run without allocating (benchmarks)."""
    if counters is None:
        counters = np.zeros(N_DNS_COUNTERS, dtype=np.uint64)
    if counters.dtype != np.uint64 or counters.shape != (N_DNS_COUNTERS,):
        raise ValueError(f"counters must be uint64[{N_DNS_COUNTERS}]")
    if notes is None:
        notes = np.zeros(max(b.count, 1), dtype=NOTE_DTYPE)
    if scratch is None:
        scratch = np.zeros(max(b.count, 1) * sizeof(dns_q_t), dtype=np.uint8)
    if (notes.dtype != NOTE_DTYPE or notes.shape[0] < b.count or scratch.dtype != np.uint8
            or scratch.shape[0] < b.count * sizeof(dns_q_t) or not notes.flags.c_contiguous
            or not scratch.flags.c_contiguous):
        raise ValueError("notes / scratch too small or of the wrong type")
    cdef uint64_t* c = <uint64_t*>cnp.PyArray_DATA(counters)
    cdef dns_note_t* n = <dns_note_t*>cnp.PyArray_DATA(notes)
    cdef dns_q_t* q = <dns_q_t*>cnp.PyArray_DATA(scratch)
    with nogil:
        dns_batch(table, b, c, n, q)
    return counters, notes[:b.count]


def parse_guarded(data):
    """Parse one DNS message laid flush against an unreadable page (a read past
    its end faults). Returns (outcome, name_len, qtype, lowercased name bytes,
    has_opt, edns_size, edns_do). For the fuzzing tests."""
    cdef bytes raw = bytes(data)
    cdef Py_ssize_t n = len(raw)
    cdef size_t page = _mmap.PAGESIZE
    cdef size_t span = ((n + page - 1) // page + 1) * page
    cdef uint8_t* mem = <uint8_t*>mmap(NULL, span, PROT_READ | PROT_WRITE,
                                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    cdef dns_q_t q
    cdef dns_note_t note
    cdef uint8_t out
    cdef uint8_t* start
    if mem == <uint8_t*>MAP_FAILED:
        raise MemoryError("mmap")
    try:
        if mprotect(mem + span - page, page, PROT_NONE) != 0:
            raise OSError("mprotect")
        start = mem + span - page - n
        if n:
            memcpy(start, <const char*>raw, n)
        with nogil:
            out = parse_query(start, <uint32_t>n, &q, &note)
        name = bytes(note.name[:note.name_len])
        return (out, q.name_len, q.qtype, name, q.has_opt, q.edns_size, q.edns_do)
    finally:
        munmap(mem, span)


def fold_name(data):
    """lower8 over a byte string (the stage's case folding), for tests."""
    cdef bytes raw = bytes(data)
    cdef uint32_t n = len(raw)
    buf = np.zeros(((n + 7) // 8) * 8 + 8, dtype=np.uint8)
    cdef uint8_t* d = <uint8_t*>cnp.PyArray_DATA(buf)
    if n:
        fold_and_hash(<const uint8_t*><const char*>raw, n, d)
    return bytes(buf[:n])


def pod_address(label):
    """The address a pod-name label spells (CoreDNS `pods insecure`), or None."""
    cdef bytes raw = bytes(label)
    cdef uint8_t out[16]
    cdef int fam = pod_ip(<const uint8_t*><const char*>raw, len(raw), out)
    if fam == 0:
        return None
    import ipaddress
    return ipaddress.ip_address(bytes(out[:4 if fam == 4 else 16]))
