# cython: boundscheck=False, wraparound=False
"""The neighbour table: the MAC of each next hop, as Linux's neighbour table learns it.

Learned like Linux's ARP and NDISC input, in packet order: `neigh_note_batch` (after
parse) notes what each packet teaches, and the route stage learns a packet's note when
it reaches that packet (`neigh_learn_upto`), so no packet is addressed with what a
later packet of its batch taught, whatever the batch size (one exception: the pieces
of a packet kdp fragments are addressed after the route stage, with all the batch
taught). What it teaches:
  ARP (Ethernet/IPv4, requests and replies)  sender protocol address -> sender MAC
                                              (not from sender 0.0.0.0: a probe)
  ICMPv6 neighbour solicitation (135)         source address -> source link-layer
                                              address option (not from ::: DAD)
  ICMPv6 neighbour advertisement (136)        target address -> target link-layer
                                              address option
A newer answer replaces an older one. Entries do not age: a replay is short, and the
last word of the capture is the best guess (Linux would re-probe a stale entry).

The encap stage asks it for the MAC of a route's next hop when the configuration
names none (see route.pxd RF_STATIC_MAC: configured MACs always win, as permanent
entries do in Linux); without an entry the route's placeholder MAC is used.

Open addressing, linear probing, a fixed number of slots per family; when the
table is three-quarters full further addresses are not stored (`refused`).
The table lives with the pipeline, not with its swapped tables: a reload keeps
what was learned, as it keeps conntrack.
"""
import ipaddress

import numpy as np
cimport numpy as cnp
from libc.string cimport memcpy, memcmp, memset
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from kdp._fast.packet cimport (Batch, pkt_meta_t, V_PENDING, V_LOCAL, ST_PARSE, R_ARP,
                               LT_ETHERNET)
from kdp._fast.mix cimport mix64

cnp.import_array()

NEIGH4_DTYPE = np.dtype([("b", "u1", sizeof(neigh4_t))])
NEIGH6_DTYPE = np.dtype([("b", "u1", sizeof(neigh6_t))])


cdef inline bint _zero16(const uint8_t* a) noexcept nogil:
    cdef int k
    for k in range(16):
        if a[k]:
            return False
    return True


cdef inline uint32_t _rd32(const uint8_t* b) noexcept nogil:
    return (<uint32_t>b[0] << 24) | (<uint32_t>b[1] << 16) | (<uint32_t>b[2] << 8) | b[3]


cdef inline uint64_t _h6(const uint8_t* a) noexcept nogil:
    cdef uint64_t x = 0, y = 0
    cdef int k
    for k in range(8):
        x = (x << 8) | a[k]
        y = (y << 8) | a[8 + k]
    return mix64(x ^ mix64(y))


cdef class Neighbours:
    """IP -> MAC, learned from ARP and neighbour discovery (see the module docstring)."""

    def __init__(self, Py_ssize_t capacity=4096):
        cdef Py_ssize_t c = 16
        while c < capacity:
            c <<= 1
        self.capacity = c
        self.mask = c - 1
        self._t4 = np.zeros(c, dtype=NEIGH4_DTYPE)
        self._t6 = np.zeros(c, dtype=NEIGH6_DTYPE)
        self.t4 = <neigh4_t*>cnp.PyArray_DATA(self._t4)
        self.t6 = <neigh6_t*>cnp.PyArray_DATA(self._t6)
        self.count4 = self.count6 = 0
        self.learned = self.refused = 0
        self._notes = np.zeros(0, dtype=np.uint8)
        self.notes = NULL
        self.n_notes = self.next_note = 0

    def ensure_notes(self, Py_ssize_t capacity):
        """Room for the notes of a batch of `capacity` packets."""
        if self._notes.shape[0] < capacity * <Py_ssize_t>sizeof(neigh_note_t):
            self._notes = np.zeros(capacity * sizeof(neigh_note_t), dtype=np.uint8)
        self.notes = <neigh_note_t*>cnp.PyArray_DATA(self._notes)

    def __len__(self):
        return self.count4 + self.count6

    cdef bint lookup4(self, uint32_t ip, uint8_t* mac) noexcept nogil:
        cdef Py_ssize_t k = <Py_ssize_t>(mix64(ip) & self.mask)
        if ip == 0 or self.count4 == 0:
            return False
        while self.t4[k].ip != 0:
            if self.t4[k].ip == ip:
                memcpy(mac, self.t4[k].mac, 6)
                return True
            k = (k + 1) & self.mask
        return False

    cdef bint lookup6(self, const uint8_t* ip, uint8_t* mac) noexcept nogil:
        cdef Py_ssize_t k
        if self.count6 == 0:
            return False
        k = <Py_ssize_t>(_h6(ip) & self.mask)
        while self.t6[k].used:
            if memcmp(self.t6[k].ip, ip, 16) == 0:
                memcpy(mac, self.t6[k].mac, 6)
                return True
            k = (k + 1) & self.mask
        return False

    cdef void learn4(self, uint32_t ip, const uint8_t* mac) noexcept nogil:
        cdef Py_ssize_t k = <Py_ssize_t>(mix64(ip) & self.mask)
        if ip == 0:
            return
        while self.t4[k].ip != 0:
            if self.t4[k].ip == ip:
                if memcmp(self.t4[k].mac, mac, 6) != 0:
                    memcpy(self.t4[k].mac, mac, 6)
                    self.learned += 1
                return
            k = (k + 1) & self.mask
        if (self.count4 + 1) * 4 > self.capacity * 3:
            self.refused += 1
            return
        self.t4[k].ip = ip
        memcpy(self.t4[k].mac, mac, 6)
        self.count4 += 1
        self.learned += 1

    cdef void learn6(self, const uint8_t* ip, const uint8_t* mac) noexcept nogil:
        cdef Py_ssize_t k = <Py_ssize_t>(_h6(ip) & self.mask)
        if _zero16(ip):
            return
        while self.t6[k].used:
            if memcmp(self.t6[k].ip, ip, 16) == 0:
                if memcmp(self.t6[k].mac, mac, 6) != 0:
                    memcpy(self.t6[k].mac, mac, 6)
                    self.learned += 1
                return
            k = (k + 1) & self.mask
        if (self.count6 + 1) * 4 > self.capacity * 3:
            self.refused += 1
            return
        memcpy(self.t6[k].ip, ip, 16)
        memcpy(self.t6[k].mac, mac, 6)
        self.t6[k].used = 1
        self.count6 += 1
        self.learned += 1

    # -- Python face (tests, tools, static entries)
    def learn(self, address, mac):
        """Store address -> mac (bytes of 6, or "aa:bb:..")."""
        a = ipaddress.ip_address(address)
        m = mac if isinstance(mac, (bytes, bytearray)) else bytes(int(x, 16) for x in str(mac).split(":"))
        if len(m) != 6:
            raise ValueError(f"not a MAC address: {mac!r}")
        cdef bytes mb = bytes(m)
        cdef bytes packed = a.packed
        if a.version == 4:
            self.learn4(int(a), <const uint8_t*><const char*>mb)
        else:
            self.learn6(<const uint8_t*><const char*>packed, <const uint8_t*><const char*>mb)

    def get(self, address):
        """The MAC (bytes) learned for address, or None."""
        a = ipaddress.ip_address(address)
        cdef uint8_t mac[6]
        cdef bytes packed = a.packed
        cdef bint found
        if a.version == 4:
            found = self.lookup4(int(a), mac)
        else:
            found = self.lookup6(<const uint8_t*><const char*>packed, mac)
        return bytes(mac[:6]) if found else None

    def entries(self):
        """{address string: MAC bytes} of every entry."""
        out = {}
        cdef Py_ssize_t k
        for k in range(self.capacity):
            if self.t4[k].ip:
                out[str(ipaddress.IPv4Address(self.t4[k].ip))] = bytes(self.t4[k].mac[:6])
            if self.t6[k].used:
                out[str(ipaddress.IPv6Address(bytes(self.t6[k].ip[:16])))] = bytes(self.t6[k].mac[:6])
        return out

    def learn_batch(self, Batch b not None):
        """Run neigh_learn_batch over a parsed batch."""
        self.ensure_notes(b.capacity)
        with nogil:
            neigh_learn_batch(self, b)


cdef inline void _note(Neighbours n, Py_ssize_t i, uint8_t ver, const uint8_t* ip,
                       const uint8_t* mac) noexcept nogil:
    cdef neigh_note_t* t = &n.notes[n.n_notes]
    t.index = <uint32_t>i
    t.ver = ver
    memcpy(t.mac, mac, 6)
    if ver == 4:
        (<uint32_t*>t.ip)[0] = _rd32(ip)
    else:
        memcpy(t.ip, ip, 16)
    n.n_notes += 1


cdef inline void _note_nd(Neighbours n, Py_ssize_t i, const pkt_meta_t* p, const uint8_t* pkt) noexcept nogil:
    """ICMPv6 135 / 136: walk the options for the source / target link-layer address."""
    cdef uint32_t l4 = p.l4_off
    cdef uint32_t end = p.len
    cdef uint32_t o = l4 + 24          # type, code, checksum, reserved/flags, target (16)
    cdef uint32_t olen
    cdef uint8_t want = 1 if p.icmp_type == 135 else 2
    if o > end:
        return
    while o + 8 <= end:
        olen = <uint32_t>pkt[o + 1] * 8
        if olen == 0 or o + olen > end:
            return
        if pkt[o] == want:
            if want == 1:
                if not _zero16(p.src6):
                    _note(n, i, 6, p.src6, pkt + o + 2)
            else:
                _note(n, i, 6, pkt + l4 + 8, pkt + o + 2)
            return
        o += olen


cdef void neigh_note_batch(Neighbours n, Batch b) noexcept nogil:
    cdef Py_ssize_t i
    cdef pkt_meta_t* p
    cdef const uint8_t* pkt
    cdef const uint8_t* a
    n.n_notes = n.next_note = 0
    if n.notes == NULL:
        return
    for i in range(b.count):
        p = &b.m[i]
        if p.verdict == V_LOCAL and p.stage == ST_PARSE and p.reason == R_ARP:
            pkt = b.buf + p.off
            a = pkt + p.l3_off
            # Ethernet / IPv4 ARP only: htype 1, ptype 0x0800, hlen 6, plen 4 (28 bytes)
            if p.l3_off + 28 <= p.len and a[0] == 0 and a[1] == 1 and a[2] == 0x08 \
                    and a[3] == 0 and a[4] == 6 and a[5] == 4 and _rd32(a + 14) != 0:
                _note(n, i, 4, a + 14, a + 8)
        elif p.verdict == V_PENDING and p.ip_ver == 6 and p.proto == 58 and p.l4_off \
                and (p.icmp_type == 135 or p.icmp_type == 136):
            _note_nd(n, i, p, b.buf + p.off)


cdef void neigh_learn_upto(Neighbours n, Py_ssize_t i) noexcept nogil:
    cdef neigh_note_t* t
    while n.next_note < n.n_notes and <Py_ssize_t>n.notes[n.next_note].index <= i:
        t = &n.notes[n.next_note]
        if t.ver == 4:
            n.learn4((<uint32_t*>t.ip)[0], t.mac)
        else:
            n.learn6(t.ip, t.mac)
        n.next_note += 1


cdef void neigh_learn_batch(Neighbours n, Batch b) noexcept nogil:
    neigh_note_batch(n, b)
    neigh_learn_upto(n, b.count)
