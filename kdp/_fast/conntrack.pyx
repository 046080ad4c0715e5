# cython: boundscheck=False, wraparound=False, cdivision=True
"""Connection tracking: the two conntrack stages, expiry between batches, and
the Conntrack table as Python sees it.

Table
-----
Fixed capacity (``capacity`` flows, default 1,048,576), allocated once:
128-byte flow records, an open-addressing index of ``3 * capacity`` 8-byte
slots holding both directions of every flow (load <= 2/3), two uint32 links
per flow for the FIFO of non-assured flows, and a small fragment table. No
allocation per packet; nothing an input does can grow it.

The parts, one concern each:
  ct_table.pxd/.pyx   the flow record, the index, the FIFO, deletion
  ct_tcp.pxd          the TCP state machine (inline, header only)
  ct_expiry.pxd/.pyx  timeouts, expiry, the clock-hand sweep, early drop
  ct_keys.pxd/.pyx    packet -> lookup key, ICMP errors' quotes, fragments
  conntrack.pyx       the stages below (lookup, create with the reply tuple and
                      source-port choice, expire), flush, the Python API

Stage ``ct_lookup_batch(ct, b, now_ns)`` (Python: ``Conntrack.lookup_batch``)
---------------------------------------------------------------------------
Time: ``now_ns``, or with ``now_ns = CT_PACKET_CLOCK`` (Python ``PACKET_CLOCK``)
each packet's own timestamp, never running backwards (replay: a flow ages by the
gaps between its packets even inside one batch). ``ct_create`` takes the same.
Reads every V_PENDING IP packet's tuple (ip_ver, proto, src/dst, sport/dport,
tcp_flags, icmp_type/icmp_id, frag/frag_id, quote fields q_* of ICMP errors).
Sets ``flow_id`` and ``ct_state``:
  CT_ESTABLISHED  packet of a tracked flow, original direction
  CT_REPLY        packet of a tracked flow, reply direction
  CT_RELATED      ICMP/ICMPv6 error quoting a packet of a tracked flow
  CT_INVALID      TCP packet fitting no state of its flow (flow_id still set:
                  the packet is still translated by nat_batch unless dropped)
  CT_NEW          miss (flow_id NO_ID): the slow path decides
  CT_NONE         untrackable (not IP, ICMP informational other than echo,
                  ICMP error quoting no tracked flow)
Also sets ``svc_port`` from the flow (the service-port id it was created for,
NO_ID when none). Advances TCP state, counts packets/bytes per direction,
refreshes the flow (last-seen = now_ns). Later fragments find their flow by IP ID (fragment
table filled from first fragments). Drops (stage ST_CONNTRACK): R_CT_INVALID
only when ``drop_invalid`` is set. Next: service (CT_NEW) / nat.

Stage ``ct_create(ct, b, i, spec, now_ns)`` (Python: ``Conntrack.create``)
-------------------------------------------------------------------------
Slow path for one CT_NEW packet: looks the tuple up again first (an earlier
packet of the same batch may have created the flow: both then share it and
its translation), validates that the packet may open a flow (TCP: SYN, or an
ACK when ``tcp_loose``; ICMP: echo request), builds the reply tuple from the
nat_spec_t, picks a source port when asked (or when the reply tuple collides)
so the reply tuple is unique, evicts the oldest non-assured flow when the
table is full, inserts both directions. Sets flow_id and ct_state = CT_NEW.
Drops: R_CT_INVALID (ST_CONNTRACK, only with drop_invalid), R_CT_TABLE_FULL
(ST_CONNTRACK), R_NAT_PORTS_EXHAUSTED (ST_NAT), R_FRAG_NO_FLOW (ST_CONNTRACK,
a later fragment whose first fragment was not seen).

Expiry ``ct_expire(ct, now_ns, max_work)``: a clock hand over the flow
records, at most max_work records per call; expired flows met by a lookup are
removed on the spot too. Never a stop-the-world sweep. Call it between
batches (after NAT): it starts a new batch epoch.

Batch epochs: every flow a packet of the current batch refers to is stamped
with the batch's epoch; early drop and expiry never remove such a flow (its
id is in a packet's metadata, and NAT will read it). ct_lookup_batch and
ct_expire start new epochs.

Early drop: when the table is full, the oldest non-assured flow goes (the
FIFO of non-assured flows, in creation order; flows that become assured leave
it). If none can go, up to 256 records are swept for expired flows; else the
new flow is refused with R_CT_TABLE_FULL.

Linux's rules (nf_conntrack_proto_tcp.c, _udp.c, _icmp.c; kdp/reference/
conntrack.py states them in plain Python and tests compare):
  TCP: Linux's transition table. Ignored packets (a SYN mid-connection, a late
  SYN/ACK) pass but are neither counted nor refresh the flow. A SYN on a
  TIME_WAIT/CLOSE flow reopens it (the flow goes, the packet opens a new one
  with its sender as the opener) when a FIN moved the flow to FIN_WAIT or the
  SYN's side sent the last RST; otherwise it is ignored, and a SYN/ACK answering
  it resynchronises the flow to SYN_RECV. Simultaneous open completes on the
  reply ACK; an ACK answering a SYN ignored in LAST_ACK (an RFC 5961 challenge
  ACK) is ignored. A RST before any reply ends the flow. Assured: an ACK taking
  SYN_RECV or ESTABLISHED to ESTABLISHED after a reply was seen. An ESTABLISHED
  flow not assured (a mid-stream pickup) times out after
  min(established, unacknowledged).
  UDP, SCTP, others: a packet after the first reply makes a stream (UDP's
  stream timeout) and assures the flow. ICMP: never assured.
A flow that ends while a packet of the current batch refers to it (a RST
before any reply, a reopen) leaves the index at once and keeps its record,
with timeout 0, until expiry or early drop frees it after the batch.

Not modelled (known gaps): TCP sequence-window tracking (Linux's
tcp_in_window: out-of-window packets are not detected, only packets whose
flags fit no state; the SYN/ACK resynchronisation does not check the
acknowledgment number), Linux >= 5.16's 2 s wait before a replied UDP flow
becomes a stream, the SCTP state machine (SCTP flows use one timeout),
connection-tracking helpers (FTP, SIP, ...).
"""

import ipaddress

import numpy as np
cimport numpy as cnp
from libc.string cimport memset, memcpy, memcmp
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from kdp._fast.mix cimport P_ICMP, P_TCP, P_UDP, P_ICMPV6, P_SCTP
from kdp._fast.packet cimport (
    Batch, pkt_meta_t, drop, NO_ID, V_PENDING,
    ST_CONNTRACK, ST_NAT, FRAG_NONE, FRAG_FIRST,
    CT_NONE, CT_NEW, CT_ESTABLISHED, CT_REPLY, CT_RELATED, CT_INVALID,
    R_CT_INVALID, R_CT_TABLE_FULL, R_NAT_PORTS_EXHAUSTED, R_FRAG_NO_FLOW,
)
from kdp._fast.flow cimport nat_spec_t, NAT_NONE, NAT_DNAT, NAT_SNAT, NAT_SNAT_PORT, NAT_PORT_KEY
from kdp._fast.ct_table cimport (
    ct_frag_t, CT_MAX_CAPACITY,
    TCP_SYN_SENT, TCP_ESTABLISHED, TCP_FIN_WAIT, TCP_TIME_WAIT,
    TO_TCP_NONE, TO_TCP_SYN_SENT, TO_TCP_SYN_RECV, TO_TCP_ESTABLISHED, TO_TCP_FIN_WAIT,
    TO_TCP_CLOSE_WAIT, TO_TCP_LAST_ACK, TO_TCP_TIME_WAIT, TO_TCP_CLOSE, TO_TCP_SYN_SENT2, TO_UDP,
    TO_UDP_STREAM, TO_ICMP, TO_SCTP, TO_GENERIC, TO_FRAG, TO_TCP_UNACK,
    FL_ASSURED, FL_SEEN_REPLY, FL_STREAM, FL_DNAT, FL_SNAT, TT_CLOSE_INIT,
    C_LOOKUPS, C_HITS, C_MISSES, C_INSERTS, C_EXPIRIES, C_INVALID, C_TABLE_FULL,
    C_PORTS_EXHAUSTED, C_RELATED, C_FRAG_HITS, C_FRAG_NO_FLOW, C_FLUSHED, C_PORT_REMAPS,
    C_REOPENED, C_CREATE_HITS, C_ERRORS_NO_FLOW,
    ct_hash4, ct_key_hash, ct_home_slot, ct_prefetch_run, ct_store_key, ct_find_from, ct_find4,
    ct_index_insert, ct_probe_tag, ct_unassured_push, ct_assure, ct_unindexed, ct_unlink,
    END_EXPIRED, END_FLUSHED, END_REPLACED, END_RESET,
    ct_counters_hi, ct_flow_packets, ct_flow_bytes,
)
from kdp._fast.ct_expiry cimport ct_timeout_ns, ct_expired, ct_sweep, ct_alloc
from kdp._fast.ct_tcp cimport (
    ct_tcp_step, ct_tcp_kind, TK_SYN, TK_ACK, TK_NONE, TS_INVALID, TCP_STEP_OK,
    TCP_STEP_IGNORED, TCP_STEP_INVALID, TCP_STEP_REOPEN, TCP_STEP_KILL,
)
from kdp._fast.ct_keys cimport (
    ct_is_echo_request, ct_echo_other, ct_ip_bytes, ct_frag_note, ct_frag_find, K_SKIP,
)

from kdp.errors import KdpError

cnp.import_array()

#: why a flow ended, by CtEnd (ct_table.pxd): the flow log's "end"
END_NAMES = ("expired", "evicted", "flushed", "replaced", "reset", "live")

cdef extern from *:
    """
    #include <sys/mman.h>
    #include <errno.h>
    #include <unistd.h>
    /* Zeroed, lazily backed memory on transparent huge pages where the kernel
       allows it (fewer TLB misses for a table of 150+ MB). NULL on failure. */
    static void* kdp_big_alloc(size_t n) {
        void* p;
        if (n == 0) n = 1;
        p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return NULL;
    #ifdef MADV_HUGEPAGE
        if (n >= (2u << 20)) madvise(p, n, MADV_HUGEPAGE);
    #endif
        return p;
    }
    static void kdp_big_free(void* p, size_t n) {
        if (p != NULL) munmap(p, n == 0 ? 1 : n);
    }
    /* Back [p, p + n) with memory now (the page faults and the zeroing happen
       here, not under the first packets that use it), on the huge pages asked
       for above. 0 on success, -1 when the memory cannot be had. */
    static int kdp_big_populate(void* p, size_t n) {
        size_t off, step;
    #ifdef MADV_POPULATE_WRITE
        if (madvise(p, n, MADV_POPULATE_WRITE) == 0) return 0;
        if (errno != EINVAL) return -1;      /* ENOMEM, EFAULT, ...; EINVAL: kernel < 5.14 */
    #endif
        step = (size_t)sysconf(_SC_PAGESIZE);
        if (step == 0 || step > 65536) step = 4096;
        for (off = 0; off < n; off += step) ((volatile char*)p)[off] = 0;
        return 0;
    }
    """
    void* kdp_big_alloc(size_t n) nogil
    void kdp_big_free(void* p, size_t n) nogil
    int kdp_big_populate(void* p, size_t n) nogil

cdef enum:
    CHUNK = 8           # ct_lookup_batch: packets per pass
    CDIST = 1           # ct_lookup_batch: chunks between its passes
    NCS = 2 * CDIST + 1 # chunks of state kept
    K_FLOW4 = 5         # ct_lookup_batch: an IPv4 K_FLOW key kept as words (ka, kp, kpv)
    DIST = 12           # bulk APIs: pipeline distance (tuples) between their steps
    RING = 32           # > 2 * DIST, a power of two
    HIT_OK = 0
    HIT_GONE = 1        # flow removed (reopened or expired): treat as a miss

NO_FLOW = <uint32_t>NO_ID

TCP_STATE_NAMES = ("NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT",
                   "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2")

# Timeout names are nf_conntrack's sysctl names without the prefix
# "nf_conntrack_"; defaults are the kernel's (seconds).
TIMEOUT_DEFAULTS = {
    "tcp_timeout_syn_sent": 120,
    "tcp_timeout_syn_recv": 60,
    "tcp_timeout_established": 432000,
    "tcp_timeout_fin_wait": 120,
    "tcp_timeout_close_wait": 60,
    "tcp_timeout_last_ack": 30,
    "tcp_timeout_time_wait": 120,
    "tcp_timeout_close": 10,
    "udp_timeout": 30,
    "udp_timeout_stream": 120,
    "icmp_timeout": 30,
    "sctp_timeout_established": 210,
    "generic_timeout": 600,
    "frag_timeout": 30,          # like ipfrag_time: how long an IP ID maps to a flow
    "tcp_timeout_unacknowledged": 300,
}
_TIMEOUT_SLOT = {
    "tcp_timeout_syn_sent": (TO_TCP_SYN_SENT, TO_TCP_SYN_SENT2),
    "tcp_timeout_syn_recv": (TO_TCP_SYN_RECV,),
    "tcp_timeout_established": (TO_TCP_ESTABLISHED, TO_TCP_NONE),
    "tcp_timeout_fin_wait": (TO_TCP_FIN_WAIT,),
    "tcp_timeout_close_wait": (TO_TCP_CLOSE_WAIT,),
    "tcp_timeout_last_ack": (TO_TCP_LAST_ACK,),
    "tcp_timeout_time_wait": (TO_TCP_TIME_WAIT,),
    "tcp_timeout_close": (TO_TCP_CLOSE,),
    "udp_timeout": (TO_UDP,),
    "udp_timeout_stream": (TO_UDP_STREAM,),
    "icmp_timeout": (TO_ICMP,),
    "sctp_timeout_established": (TO_SCTP,),
    "generic_timeout": (TO_GENERIC,),
    "frag_timeout": (TO_FRAG,),
    "tcp_timeout_unacknowledged": (),   # only through TO_TCP_UNACK, set in __init__
}
COUNTER_NAMES = ("lookups", "hits", "misses", "inserts", "evictions", "expiries",
                 "invalid", "table_full", "ports_exhausted", "related", "frag_hits",
                 "frag_no_flow", "flushed", "port_remaps", "reopened", "create_hits", "errors_no_flow")


class ConntrackConfigError(KdpError):
    """Conntrack settings out of range."""


# ---------------------------------------------------------------- the lookup stage

cdef inline void _account(ct_flow_t* f, int dir, const pkt_meta_t* p, const uint8_t* pkt) noexcept nogil:
    cdef uint32_t n = ct_ip_bytes(p, pkt)
    cdef uint32_t b = f.bytes_lo[dir] + n
    f.pkts_lo[dir] += 1
    if f.pkts_lo[dir] == 0:
        ct_counters_hi(f)[dir] += 1
    if b < n:
        ct_counters_hi(f)[2 + dir] += 1
    f.bytes_lo[dir] = b


cdef int _tcp_uncommon(ct_table_t* t, ct_flow_t* f, uint32_t fid, int dir, pkt_meta_t* p,
                       const uint8_t* pkt, uint64_t now, int step) noexcept nogil:
    """_hit for the TCP steps other than TCP_STEP_OK (out of line: rare)."""
    if step == TCP_STEP_REOPEN:
        # a new connection reusing the tuple of a closed one: this packet opens
        # it. An earlier packet of the batch may still refer to the old flow:
        # then it only leaves the index.
        if f.epoch == t.epoch16:
            ct_unlink(t, fid, END_REPLACED)
        else:
            ct_delete(t, fid, END_REPLACED)
        t.c[C_REOPENED] += 1
        return HIT_GONE
    f.epoch = t.epoch16
    p.flow_id = fid
    p.svc_port = f.svc_port
    if step == TCP_STEP_INVALID:
        t.c[C_INVALID] += 1
        p.ct_state = CT_INVALID
        if t.drop_invalid:
            drop(p, ST_CONNTRACK, R_CT_INVALID)
        return HIT_OK
    p.ct_state = CT_REPLY if dir else CT_ESTABLISHED
    if step == TCP_STEP_IGNORED:
        return HIT_OK               # accepted, but neither counted nor refreshed (as Linux)
    # TCP_STEP_KILL: a reset before any reply: counted, then no connection (Linux kills it)
    f.last_ns = now
    _account(f, dir, p, pkt)
    ct_unlink(t, fid, END_RESET)
    return HIT_OK


cdef inline int _hit(ct_table_t* t, ct_flow_t* f, uint32_t fid, int dir, pkt_meta_t* p,
                     const uint8_t* pkt, uint64_t now) noexcept nogil:
    """A packet of flow fid in direction dir: state, counters, verdict fields."""
    cdef int step
    if ct_expired(t, f, now):
        ct_delete(t, fid, END_EXPIRED)
        t.c[C_EXPIRIES] += 1
        return HIT_GONE
    if f.proto == P_TCP:
        step = ct_tcp_step(t, f, fid, dir, p.tcp_flags)
        if step != TCP_STEP_OK:
            return _tcp_uncommon(t, f, fid, dir, p, pkt, now, step)
    else:
        # a packet after the first reply makes a stream (UDP's longer timeout) and
        # assures the flow; ICMP flows are never assured (Linux)
        if f.flags & FL_SEEN_REPLY:
            f.flags |= FL_STREAM
            if not (f.flags & FL_ASSURED) and f.proto != P_ICMP and f.proto != P_ICMPV6:
                ct_assure(t, f, fid)
        if dir == 1:
            f.flags |= FL_SEEN_REPLY
    f.last_ns = now
    f.epoch = t.epoch16
    p.flow_id = fid
    p.svc_port = f.svc_port
    p.ct_state = CT_REPLY if dir else CT_ESTABLISHED
    _account(f, dir, p, pkt)
    return HIT_OK


cdef inline void _related(ct_table_t* t, ct_flow_t* f, uint32_t fid, pkt_meta_t* p) noexcept nogil:
    f.epoch = t.epoch16
    p.flow_id = fid
    p.svc_port = f.svc_port
    p.ct_state = CT_RELATED


cdef void _one(ct_table_t* t, pkt_meta_t* p, const uint8_t* pkt, int kind, const ct_key_t* k,
               uint64_t h, uint32_t pos, uint64_t now) noexcept nogil:
    """Resolve one packet whose index probe starts at pos (lookup and re-lookup)."""
    cdef int dir = 0
    cdef uint32_t fid
    cdef ct_flow_t* f
    if kind == K_FRAG:
        fid = ct_frag_find(t, p, k, now, &dir)
        if fid != NO_ID:
            f = &t.flows[fid]
            t.c[C_FRAG_HITS] += 1
            _account(f, dir, p, pkt)
            f.epoch = t.epoch16
            p.flow_id = fid
            p.svc_port = f.svc_port
            p.ct_state = CT_REPLY if dir else CT_ESTABLISHED
        else:
            p.ct_state = CT_NEW
        return
    fid = ct_find_from(t, k, h, pos, &dir)
    if fid != NO_ID:
        f = &t.flows[fid]
        if kind == K_ERROR:
            if ct_expired(t, f, now):
                p.ct_state = CT_NONE
            else:
                _related(t, f, fid, p)
            return
        if _hit(t, f, fid, dir, p, pkt, now) == HIT_OK:
            if p.frag == FRAG_FIRST:
                ct_frag_note(t, p, k, fid, dir, now)
            return
    if kind == K_ERROR:
        p.ct_state = CT_NONE
        return
    p.ct_state = CT_NEW


cdef inline void _prefetch_inverse(ct_table_t* t, const ct_key_t* k) noexcept nogil:
    cdef ct_key_t r
    memcpy(&r, k, sizeof(ct_key_t))
    memcpy(r.src, k.dst, 16)
    memcpy(r.dst, k.src, 16)
    if k.proto == P_ICMP or k.proto == P_ICMPV6:
        r.dport = ct_echo_other(k.ver, <uint8_t>k.dport)
    else:
        r.sport = k.dport
        r.dport = k.sport
    ct_prefetch_run(t, ct_home_slot(t, ct_key_hash(t, &r)))


cdef inline uint64_t _now(ct_table_t* t, const pkt_meta_t* p, uint64_t now_ns) noexcept nogil:
    # A packet's time is its timestamp, but never before what earlier batches saw.
    if now_ns != CT_PACKET_CLOCK:
        return now_ns
    if p.ts_ns > t.clock:
        t.clock = p.ts_ns
    return p.ts_ns if p.ts_ns > t.clock_base else t.clock_base


cdef inline bint _fast_v4(const pkt_meta_t* p) noexcept nogil:
    """A packet whose key is its own IPv4 5-tuple (ct_pkt_key would return K_FLOW
    with ports): built inline by the stage, without the general key code."""
    return (p.ip_ver == 4 and p.frag == FRAG_NONE
            and (p.proto == P_TCP or p.proto == P_UDP or p.proto == P_SCTP))


cdef void ct_lookup_batch(Conntrack ct, Batch b, uint64_t now_ns) noexcept nogil:
    # A software pipeline over chunks of CHUNK packets, three passes each:
    # (1) key, hash and prefetch of the home index slot of every packet of
    # chunk c; (2) tag probe in the index and prefetch of the flow record it
    # names, chunk c - 1; (3) resolve (verify the key, state step, counters),
    # chunk c - 2, in batch order. Each pass is a tight loop, so many index
    # and record misses (and, in a VM, their page walks) are in flight at once,
    # and a whole chunk of work separates a prefetch from its use.
    # IPv4 TCP/UDP/SCTP packets (not later fragments) take an inline path: key
    # from the metadata, lookup, state step; everything else goes through
    # ct_pkt_key and _one. Lookup/hit/miss counts are kept in locals.
    cdef ct_table_t* t = &ct.t
    cdef Py_ssize_t n = b.count, nch, ci, cc, base, m, i, q
    cdef ct_key_t keys[NCS * CHUNK]
    cdef uint64_t hs[NCS * CHUNK]
    cdef uint32_t pos[NCS * CHUNK]
    cdef int kinds[NCS * CHUNK]
    cdef uint64_t ka[NCS * CHUNK]
    cdef uint32_t kp[NCS * CHUNK]
    cdef uint16_t kpv[NCS * CHUNK]
    cdef uint64_t muts[NCS]
    cdef int dir
    cdef uint32_t fid
    cdef uint64_t n_look = 0, n_hit = 0, n_miss = 0, n_rel = 0, n_err = 0
    cdef pkt_meta_t* p
    cdef ct_key_t* k
    t.epoch += 1
    t.epoch16 = <uint16_t>t.epoch
    t.clock_base = t.clock
    nch = (n + CHUNK - 1) // CHUNK
    for ci in range(nch + 2 * CDIST):
        # pass 1: chunk ci
        if ci < nch:
            base = ci * CHUNK
            m = n - base if n - base < CHUNK else CHUNK
            q = (ci % NCS) * CHUNK
            for i in range(q, q + m):
                p = &b.m[base + i - q]
                kinds[i] = K_SKIP
                if p.verdict == V_PENDING:
                    k = &keys[i]
                    if _fast_v4(p):
                        p.flow_id = NO_ID
                        kinds[i] = K_FLOW4
                        ka[i] = p.src4 | (<uint64_t>p.dst4 << 32)
                        kp[i] = p.sport | (<uint32_t>p.dport << 16)
                        kpv[i] = p.proto | (4 << 8)
                        hs[i] = ct_hash4(t.seed, p.src4, p.dst4, p.sport, p.dport, p.proto)
                        pos[i] = ct_home_slot(t, hs[i])
                        ct_prefetch_run(t, pos[i])
                    elif p.ip_ver != 4 and p.ip_ver != 6:
                        p.ct_state = CT_NONE
                    else:
                        p.flow_id = NO_ID
                        kinds[i] = ct_pkt_key(p, b.buf + p.off, k)
                        if kinds[i] == K_FLOW or kinds[i] == K_ERROR:
                            hs[i] = ct_key_hash(t, k)
                            pos[i] = ct_home_slot(t, hs[i])
                            ct_prefetch_run(t, pos[i])
        # pass 2: chunk ci - CDIST
        cc = ci - CDIST
        if 0 <= cc < nch:
            base = cc * CHUNK
            m = n - base if n - base < CHUNK else CHUNK
            q = (cc % NCS) * CHUNK
            for i in range(q, q + m):
                if kinds[i] == K_FLOW4:
                    ct_probe_tag(t, hs[i], &pos[i], 0)
                elif kinds[i] == K_FLOW or kinds[i] == K_ERROR:
                    ct_probe_tag(t, hs[i], &pos[i], keys[i].ver == 6)
            muts[cc % NCS] = t.mutations
        # pass 3: chunk ci - 2 * CDIST
        cc = ci - 2 * CDIST
        if 0 <= cc < nch:
            base = cc * CHUNK
            m = n - base if n - base < CHUNK else CHUNK
            q = (cc % NCS) * CHUNK
            for i in range(q, q + m):
                if kinds[i] == K_SKIP:
                    continue
                p = &b.m[base + i - q]
                if kinds[i] == K_NONE:
                    p.ct_state = CT_NONE
                    continue
                n_look += 1
                if muts[cc % NCS] != t.mutations:
                    pos[i] = ct_home_slot(t, hs[i])    # the index moved since the probe
                if kinds[i] == K_FLOW4:
                    fid = ct_find4(t, ka[i], kp[i], kpv[i], hs[i], pos[i], &dir)
                    if fid != NO_ID and _hit(t, &t.flows[fid], fid, dir, p, b.buf + p.off,
                                             _now(t, p, now_ns)) == HIT_OK:
                        n_hit += 1
                        continue
                    p.ct_state = CT_NEW
                    n_miss += 1
                    # warm the reply tuple's slot (see below), from the words: a
                    # key built here would be read back wider than it was written
                    ct_prefetch_run(t, ct_home_slot(t, ct_hash4(t.seed, <uint32_t>(ka[i] >> 32), <uint32_t>ka[i],
                                                     <uint16_t>(kp[i] >> 16), <uint16_t>kp[i],
                                                     <uint8_t>kpv[i])))
                    continue
                if kinds[i] == K_FLOW:
                    # inline: find, then the hit's state step (what _one does for K_FLOW)
                    fid = ct_find_from(t, &keys[i], hs[i], pos[i], &dir)
                    if fid != NO_ID and _hit(t, &t.flows[fid], fid, dir, p, b.buf + p.off,
                                             _now(t, p, now_ns)) == HIT_OK:
                        n_hit += 1
                        if p.frag == FRAG_FIRST:
                            ct_frag_note(t, p, &keys[i], fid, dir, _now(t, p, now_ns))
                        continue
                    p.ct_state = CT_NEW
                else:
                    _one(t, p, b.buf + p.off, kinds[i], &keys[i], hs[i], pos[i], _now(t, p, now_ns))
                    # every looked-up packet is one of: hit, miss, related, error without a flow
                    if p.ct_state == CT_RELATED:
                        n_rel += 1
                    elif p.ct_state == CT_NONE:
                        n_err += 1
                    elif p.ct_state != CT_NEW:
                        n_hit += 1
                if p.ct_state == CT_NEW:
                    n_miss += 1
                    if kinds[i] == K_FLOW:
                        # the slow path will check the reply tuple; without NAT it is
                        # the inverse of this one: warm its home slot now
                        _prefetch_inverse(t, &keys[i])
    t.c[C_LOOKUPS] += n_look
    t.c[C_HITS] += n_hit
    t.c[C_MISSES] += n_miss
    t.c[C_RELATED] += n_rel
    t.c[C_ERRORS_NO_FLOW] += n_err


# ---------------------------------------------------------------- the slow path: new flows

cdef inline bint _ports_tracked(uint8_t proto) noexcept nogil:
    return proto == P_TCP or proto == P_UDP or proto == P_SCTP or proto == P_ICMP or proto == P_ICMPV6


cdef inline uint16_t* _snat_field(ct_key_t* r) noexcept nogil:
    """The field of a reply tuple that a source-port translation changes."""
    if r.proto == P_ICMP or r.proto == P_ICMPV6:
        return &r.sport         # echo identifier
    return &r.dport


cdef bint _free_port(ct_table_t* t, ct_key_t* r, uint16_t* pf, uint32_t first, uint32_t step,
                     uint32_t size, uint32_t start) noexcept nogil:
    """Set *pf (the reply tuple r's translated port) to the first of up to nat_max_tries
    ports first + ((start + n) % size) * step no flow's tuple holds; True when all are taken."""
    cdef uint32_t nn, tries = size if size < t.nat_max_tries else t.nat_max_tries
    cdef uint64_t hr
    cdef int dir
    for nn in range(tries):
        pf[0] = <uint16_t>(first + ((start + nn) % size) * step)
        hr = ct_key_hash(t, r)
        if ct_find_from(t, r, hr, ct_home_slot(t, hr), &dir) == NO_ID:
            return False
    return True


cdef uint32_t _new_flow(ct_table_t* t, const ct_key_t* k, uint64_t h, const nat_spec_t* spec,
                        uint8_t state, uint64_t now, uint16_t* reason,
                        const uint64_t* hr_swapped=NULL) noexcept nogil:
    """Create the flow of key k (known absent). NO_ID with *reason when refused.
    hr_swapped: the hash of k with addresses and ports swapped when the caller has
    it (the reply tuple of a TCP/UDP/SCTP flow without translation)."""
    cdef ct_key_t r
    cdef uint64_t hr
    cdef uint8_t flags = NAT_NONE
    cdef uint16_t lo, hi, orig_port
    cdef uint16_t* pf
    cdef uint32_t size, fid, first, want
    cdef int dir
    cdef bint found
    cdef ct_flow_t* f
    if spec != NULL and (spec.ip_ver == 0 or spec.ip_ver == k.ver):
        flags = spec.flags
    # the reply tuple: from the (translated) destination to the (translated) source
    # (built field by field: a copy of k as a whole would read its narrow stores
    # back with wide loads, which the store buffer cannot forward)
    memset(&r, 0, sizeof(ct_key_t))
    r.proto = k.proto
    r.ver = k.ver
    if k.ver == 4:
        r.src[0] = spec.dnat4 if flags & NAT_DNAT else k.dst[0]
        r.dst[0] = spec.snat4 if flags & NAT_SNAT else k.src[0]
    else:
        if flags & NAT_DNAT:
            memcpy(r.src, spec.dnat6, 16)
        else:
            memcpy(r.src, k.dst, 16)
        if flags & NAT_SNAT:
            memcpy(r.dst, spec.snat6, 16)
        else:
            memcpy(r.dst, k.src, 16)
    if k.proto == P_ICMP or k.proto == P_ICMPV6:
        r.sport = k.sport
        r.dport = ct_echo_other(k.ver, <uint8_t>k.dport)
    else:
        r.sport = spec.dnat_port if (flags & NAT_DNAT) and spec.dnat_port != 0 else k.dport
        r.dport = k.sport
    pf = _snat_field(&r)
    if hr_swapped != NULL and flags == NAT_NONE and k.proto != P_ICMP and k.proto != P_ICMPV6:
        hr = hr_swapped[0]
    else:
        hr = ct_key_hash(t, &r)
    found = ct_find_from(t, &r, hr, ct_home_slot(t, hr), &dir) != NO_ID
    if (flags & NAT_SNAT_PORT) or found:
        if not _ports_tracked(k.proto):
            t.c[C_PORTS_EXHAUSTED] += 1
            reason[0] = R_NAT_PORTS_EXHAUSTED
            return NO_ID
        if (flags & NAT_SNAT_PORT) and spec.snat_port_lo != 0 and spec.snat_port_lo <= spec.snat_port_hi:
            lo = spec.snat_port_lo
            hi = spec.snat_port_hi
        else:
            lo = t.port_lo
            hi = t.port_hi
        # ports with the original port's low 6 bits first (NAT_PORT_KEY: the spec's
        # port_key): flow sharding (shard.pyx) keys a flow by its client, and a masqueraded
        # answer that keeps the key stays in its worker. One worker chooses so too, so the
        # choice does not depend on the number of workers. When none of those is free,
        # any port of the range: the range stays whole for a client that needs it, and a
        # sharded replay sees the answer's other key and starts again on one worker.
        orig_port = pf[0]
        want = spec.port_key & 63 if flags & NAT_PORT_KEY else orig_port & 63
        first = lo + ((want - lo) & 63)
        size = (<uint32_t>hi - first) // 64 + 1 if first <= hi else 0
        found = 1
        if size != 0:
            found = _free_port(t, &r, pf, first, 64, size, <uint32_t>((h >> 16) % size))
        if found:
            size = <uint32_t>hi - lo + 1
            found = _free_port(t, &r, pf, lo, 1, size, <uint32_t>((h >> 16) % size))
        if found:
            t.c[C_PORTS_EXHAUSTED] += 1
            reason[0] = R_NAT_PORTS_EXHAUSTED
            return NO_ID
        hr = ct_key_hash(t, &r)             # the reply tuple's index slot, with its port
        if not (flags & NAT_SNAT_PORT) and pf[0] != orig_port:
            t.c[C_PORT_REMAPS] += 1
    fid = ct_alloc(t, now)
    if fid == NO_ID:
        t.c[C_TABLE_FULL] += 1
        reason[0] = R_CT_TABLE_FULL
        return NO_ID
    f = &t.flows[fid]
    memset(f, 0, sizeof(ct_flow_t))
    f.proto = k.proto
    f.ip_ver = k.ver
    ct_store_key(f, 0, k)
    ct_store_key(f, 1, &r)
    f.state = state
    if k.proto == P_TCP:
        # no packet yet (ct_create notes the opening one); a state past FIN_WAIT
        # (bulk inserts) implies the FIN that led there
        f.tcp = TK_NONE | (TT_CLOSE_INIT if TCP_FIN_WAIT <= state <= TCP_TIME_WAIT else 0)
    f.flags = FL_USED
    f.nat = flags & (NAT_DNAT | NAT_SNAT | NAT_SNAT_PORT)
    if flags & NAT_DNAT:
        f.flags |= FL_DNAT
    if flags & NAT_SNAT:
        f.flags |= FL_SNAT
    # does the flow rewrite anything? (O == inverse of R means no)
    if ((r.src[0] != k.dst[0] or r.dst[0] != k.src[0] if k.ver == 4 else
            memcmp(r.src, k.dst, 16) != 0 or memcmp(r.dst, k.src, 16) != 0)
            or (k.proto != P_ICMP and k.proto != P_ICMPV6 and (r.sport != k.dport or r.dport != k.sport))
            or ((k.proto == P_ICMP or k.proto == P_ICMPV6) and r.sport != k.sport)):
        f.flags |= FL_NAT
    f.last_ns = now
    f.epoch = t.epoch16
    if t.first_ns != NULL:
        t.first_ns[fid] = now
        t.pol[fid] = 0
    f.svc_port = spec.svc_port if spec != NULL else NO_ID
    f.backend = spec.backend if spec != NULL else NO_ID
    ct_index_insert(t, h, fid, 0)
    ct_index_insert(t, hr, fid, 1)
    ct_unassured_push(t, fid)
    t.n_flows += 1
    t.c[C_INSERTS] += 1
    return fid


cdef uint32_t ct_create(Conntrack ct, Batch b, Py_ssize_t i, const nat_spec_t* spec,
                        uint64_t now_ns) noexcept nogil:
    cdef ct_table_t* t = &ct.t
    cdef pkt_meta_t* p
    cdef const uint8_t* pkt
    cdef ct_key_t k
    cdef int kind, dir = 0
    cdef uint64_t h
    cdef uint32_t fid
    cdef uint8_t state = 0
    cdef int tcp_kind = TK_NONE
    cdef uint16_t reason = 0
    if i < 0 or i >= b.count:
        return NO_ID
    p = &b.m[i]
    if p.verdict != V_PENDING:
        return NO_ID
    if p.flow_id != NO_ID and p.ct_state != CT_NEW:
        return p.flow_id
    now_ns = _now(t, p, now_ns)
    pkt = b.buf + p.off
    kind = ct_pkt_key(p, pkt, &k)
    if kind == K_NONE:
        p.ct_state = CT_NONE
        return NO_ID
    if kind == K_FRAG:
        fid = ct_frag_find(t, p, &k, now_ns, &dir)
        if fid == NO_ID:
            t.c[C_FRAG_NO_FLOW] += 1
            drop(p, ST_CONNTRACK, R_FRAG_NO_FLOW)
            return NO_ID
        _one(t, p, pkt, kind, &k, 0, 0, now_ns)
        t.c[C_CREATE_HITS] += 1
        return p.flow_id
    h = ct_key_hash(t, &k)
    # the flow may exist by now (an earlier packet of this batch created it)
    _one(t, p, pkt, kind, &k, h, ct_home_slot(t, h), now_ns)
    if kind == K_ERROR or p.flow_id != NO_ID:
        if p.flow_id != NO_ID:
            t.c[C_CREATE_HITS] += 1
        return p.flow_id
    # may this packet open a flow?
    if k.proto == P_TCP:
        # a SYN opens a flow; an ACK opens one mid-stream when tcp_loose
        tcp_kind = ct_tcp_kind(p.tcp_flags)
        state = TS_INVALID
        if tcp_kind == TK_SYN:
            state = TCP_SYN_SENT
        elif tcp_kind == TK_ACK and t.tcp_loose:
            state = TCP_ESTABLISHED
        if state == TS_INVALID:
            t.c[C_INVALID] += 1
            p.ct_state = CT_INVALID
            if t.drop_invalid:
                drop(p, ST_CONNTRACK, R_CT_INVALID)
            return NO_ID
    elif k.proto == P_ICMP or k.proto == P_ICMPV6:
        if not ct_is_echo_request(k.ver, <uint8_t>k.dport):
            t.c[C_INVALID] += 1
            p.ct_state = CT_INVALID
            if t.drop_invalid:
                drop(p, ST_CONNTRACK, R_CT_INVALID)
            return NO_ID
    fid = _new_flow(t, &k, h, spec, state, now_ns, &reason)
    if fid == NO_ID:
        drop(p, ST_NAT if reason == R_NAT_PORTS_EXHAUSTED else ST_CONNTRACK, reason)
        return NO_ID
    if k.proto == P_TCP:
        t.flows[fid].tcp = <uint8_t>tcp_kind       # the opening packet, original direction
    _account(&t.flows[fid], 0, p, pkt)
    if t.pol != NULL:
        t.pol[fid] = (<uint32_t>p.pol_egress << 16) | p.pol_ingress
    p.flow_id = fid
    p.svc_port = t.flows[fid].svc_port
    p.ct_state = CT_NEW
    if p.frag == FRAG_FIRST:
        ct_frag_note(t, p, &k, fid, 0, now_ns)
    return fid


# ---------------------------------------------------------------- expiry between batches

cdef Py_ssize_t ct_expire(Conntrack ct, uint64_t now_ns, Py_ssize_t max_work) noexcept nogil:
    # called between batches: the packets of the last batch are done with
    # their flows, so a new epoch starts (flows they touched may go now)
    ct.t.epoch += 1
    ct.t.epoch16 = <uint16_t>ct.t.epoch
    return ct_sweep(&ct.t, now_ns, max_work)


# ---------------------------------------------------------------- flush

cdef bint _flush_match(const ct_flow_t* f, const flush_t* q) noexcept nogil:
    cdef ct_key_t o, r
    if q.mode == 0:
        return 1
    if q.mode == 3:
        return f.svc_port == q.svc_port
    if f.ip_ver != q.ver or (q.proto != 0 and f.proto != q.proto):
        return 0
    ct_flow_key(f, 0, &o)
    ct_flow_key(f, 1, &r)
    if q.mode == 1:
        return (memcmp(o.src, q.addr, 16) == 0 or memcmp(o.dst, q.addr, 16) == 0
                or memcmp(r.src, q.addr, 16) == 0 or memcmp(r.dst, q.addr, 16) == 0)
    # backend: the reply comes from it
    return memcmp(r.src, q.addr, 16) == 0 and (not q.has_port or r.sport == q.port)


cdef Py_ssize_t _flush(ct_table_t* t, const flush_t* q) noexcept nogil:
    cdef uint32_t fid
    cdef Py_ssize_t n = 0
    for fid in range(t.hwm):
        if (t.flows[fid].flags & FL_USED) and _flush_match(&t.flows[fid], q):
            if not ct_unindexed(&t.flows[fid]):
                n += 1              # (an unlinked flow has gone already: not counted)
            ct_delete(t, fid, END_FLUSHED)
    t.c[C_FLUSHED] += n
    return n


# ---------------------------------------------------------------- Python API

cdef void _addr_words(object addr, uint8_t* ver, uint32_t* out) except *:
    a = ipaddress.ip_address(addr) if not isinstance(addr, (ipaddress.IPv4Address, ipaddress.IPv6Address)) else addr
    memset(out, 0, 16)
    cdef bytes raw
    if a.version == 4:
        ver[0] = 4
        out[0] = int(a)
    else:
        ver[0] = 6
        raw = a.packed
        memcpy(out, <const char*>raw, 16)


cdef object _addr_str(const uint32_t* w, uint8_t ver):
    if ver == 4:
        return str(ipaddress.IPv4Address(w[0]))
    return str(ipaddress.IPv6Address((<const char*>w)[:16]))


cdef void _fill_spec(nat_spec_t* s, object spec) except *:
    """nat_spec_t from a dict (keys as the struct's fields; addresses as strings/ints)."""
    cdef uint8_t v
    cdef uint32_t w[4]
    memset(s, 0, sizeof(nat_spec_t))
    s.svc_port = NO_ID
    s.backend = NO_ID
    get = spec.get
    s.flags = get("flags", 0)
    s.ip_ver = get("ip_ver", 0)
    for name in ("dnat", "snat"):
        val = get(name)
        if val is None:
            continue
        _addr_words(val, &v, w)
        if s.ip_ver == 0:
            s.ip_ver = v
        elif s.ip_ver != v:
            raise ConntrackConfigError(f"nat spec: {name} {val} is not IPv{s.ip_ver}")
        if name == "dnat":
            if v == 4:
                s.dnat4 = w[0]
            else:
                memcpy(s.dnat6, w, 16)
        else:
            if v == 4:
                s.snat4 = w[0]
            else:
                memcpy(s.snat6, w, 16)
    s.dnat_port = get("dnat_port", 0)
    lo, hi = get("snat_ports", (0, 0))
    if not (0 <= lo <= hi <= 65535):
        raise ConntrackConfigError(f"nat spec: bad snat_ports {lo}..{hi}")
    s.snat_port_lo = lo
    s.snat_port_hi = hi
    sp = get("svc_port")
    s.svc_port = NO_ID if sp is None else sp
    be = get("backend")
    s.backend = NO_ID if be is None else be


def _tuple_arrays(name, src, dst, sport, dport, proto):
    """IPv4 tuples as contiguous arrays of the core's types, all of one length."""
    arrays = (np.ascontiguousarray(src, dtype=np.uint32), np.ascontiguousarray(dst, dtype=np.uint32),
              np.ascontiguousarray(sport, dtype=np.uint16), np.ascontiguousarray(dport, dtype=np.uint16),
              np.ascontiguousarray(proto, dtype=np.uint8))
    if len({a.shape[0] for a in arrays}) != 1:
        raise ValueError(f"{name}: arrays of different lengths")
    return arrays


PACKET_CLOCK = CT_PACKET_CLOCK


def _mem_available():
    """Bytes of memory the kernel reports available (MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


cdef class Conntrack:
    """The flow table. See the module docstring for the stage contracts.

    Conntrack(capacity=1048576, *, timeouts=None, drop_invalid=False,
              tcp_loose=True, port_range=(1024, 65535), nat_max_tries=128,
              frag_slots=4096, seed=..., prefault=False)

    ``timeouts``: {name: seconds} overriding TIMEOUT_DEFAULTS (nf_conntrack
    sysctl names, e.g. "tcp_timeout_established": 86400 as kube-proxy sets).
    ``port_range``: where a source port is chosen when a reply tuple collides
    and the flow asked for no explicit range. ``nat_max_tries``: ports tried
    per new flow before R_NAT_PORTS_EXHAUSTED (all of them when the range is
    smaller).

    ``prefault``: back the flow records and their list links with memory when
    the table is built (on transparent huge pages where the kernel grants
    them) instead of on first use. New flows then never take a page fault or
    wait for page zeroing (in a VM whose host backs memory lazily that is most
    of the cost of a new flow on a never-used record page); the table costs
    its full size (``memory_bytes``) in resident memory from the start, and
    construction takes the zeroing time (~3 ms per 262,144 flows when the
    memory is already backed by the host, up to ~20x more on first use).
    MemoryError when the memory cannot be had or the table is larger than the
    memory the kernel reports available. The default (False) keeps
    construction cheap for tools and tests; the Dataplane prefaults (a node
    reserves its flow memory up front). The index is always touched at
    construction (it is filled with empty slots).
    """

    def __cinit__(self):
        memset(&self.t, 0, sizeof(ct_table_t))

    def __init__(self, capacity=1 << 20, *, timeouts=None, drop_invalid=False, tcp_loose=True,
                 port_range=(1024, 65535), nat_max_tries=128, frag_slots=4096,
                 seed=0x6B64705F63742121, prefault=False):
        if not isinstance(capacity, int) or not (1 <= capacity <= CT_MAX_CAPACITY):
            raise ConntrackConfigError(f"conntrack capacity must be 1..{CT_MAX_CAPACITY}, got {capacity!r}")
        lo, hi = port_range
        if not (1 <= lo <= hi <= 65535):
            raise ConntrackConfigError(f"conntrack port_range must be within 1..65535, got {port_range!r}")
        if not (1 <= nat_max_tries <= 65536):
            raise ConntrackConfigError(f"nat_max_tries must be 1..65536, got {nat_max_tries!r}")
        if frag_slots < 1 or frag_slots > (1 << 20) or (frag_slots & (frag_slots - 1)):
            raise ConntrackConfigError(f"frag_slots must be a power of two 1..1048576, got {frag_slots!r}")
        tos = dict(TIMEOUT_DEFAULTS)
        for name, val in (timeouts or {}).items():
            if name not in tos:
                raise ConntrackConfigError(f"unknown conntrack timeout {name!r} (known: {', '.join(tos)})")
            if not isinstance(val, (int, float)) or val < 0 or val > 10 ** 9:
                raise ConntrackConfigError(f"conntrack timeout {name} must be 0..1e9 seconds, got {val!r}")
            tos[name] = val
        if prefault:
            # reserving more than the machine has would summon the OOM killer, not fail
            need = capacity * (sizeof(ct_flow_t) + 2 * sizeof(uint32_t) + 3 * sizeof(uint64_t))
            avail = _mem_available()
            if avail is not None and need > avail:
                raise MemoryError(f"conntrack: reserving {capacity} flows (prefault) needs "
                                  f"{need >> 20} MiB, {avail >> 20} MiB available")
        self._free()
        cdef ct_table_t* t = &self.t
        memset(t, 0, sizeof(ct_table_t))
        t.capacity = capacity
        t.nslots = 3 * capacity if capacity >= 4 else 12
        t.frag_mask = frag_slots - 1
        t.flows = <ct_flow_t*>kdp_big_alloc(capacity * sizeof(ct_flow_t))
        t.index = <uint64_t*>kdp_big_alloc(t.nslots * sizeof(uint64_t))
        t.lru_prev = <uint32_t*>kdp_big_alloc(capacity * sizeof(uint32_t))
        t.lru_next = <uint32_t*>kdp_big_alloc(capacity * sizeof(uint32_t))
        t.frags = <ct_frag_t*>kdp_big_alloc(frag_slots * sizeof(ct_frag_t))
        if not (t.flows and t.index and t.lru_prev and t.lru_next and t.frags):
            self._free()
            raise MemoryError(f"conntrack: cannot allocate a table of {capacity} flows")
        cdef bint ok = True
        if prefault:
            with nogil:
                ok = (kdp_big_populate(t.flows, <size_t>t.capacity * sizeof(ct_flow_t)) == 0
                      and kdp_big_populate(t.lru_prev, <size_t>t.capacity * sizeof(uint32_t)) == 0
                      and kdp_big_populate(t.lru_next, <size_t>t.capacity * sizeof(uint32_t)) == 0)
            if not ok:
                self._free()
                raise MemoryError(f"conntrack: cannot reserve the memory of {capacity} flows (prefault)")
        memset(t.index, 0xFF, t.nslots * sizeof(uint64_t))
        memset(t.frags, 0xFF, frag_slots * sizeof(ct_frag_t))
        t.frag_mask = frag_slots - 1
        t.hwm = 0
        t.free_head = NO_ID
        t.unas_head = NO_ID
        t.unas_tail = NO_ID
        t.port_lo = lo
        t.port_hi = hi
        t.nat_max_tries = nat_max_tries
        t.drop_invalid = bool(drop_invalid)
        t.tcp_loose = bool(tcp_loose)
        t.seed = seed & 0xFFFFFFFFFFFFFFFF
        t.epoch = 0
        t.epoch16 = 0
        t.vfid[0] = NO_ID
        t.vfid[1] = NO_ID
        for name, slots in _TIMEOUT_SLOT.items():
            for s in slots:
                t.timeout_ns[s] = <uint64_t>(tos[name] * 1_000_000_000)
        # Linux caps the established timeout of a flow that saw no reply (a
        # mid-stream pickup) at the unacknowledged one
        t.timeout_ns[TO_TCP_UNACK] = <uint64_t>(min(tos["tcp_timeout_established"],
                                                    tos["tcp_timeout_unacknowledged"]) * 1_000_000_000)
        self.settings = {
            "capacity": capacity, "timeouts": tos, "drop_invalid": bool(drop_invalid),
            "tcp_loose": bool(tcp_loose), "port_range": (lo, hi), "nat_max_tries": nat_max_tries,
            "frag_slots": frag_slots, "seed": t.seed, "prefault": bool(prefault),
        }

    cdef _free(self):
        cdef ct_table_t* t = &self.t
        kdp_big_free(t.flows, t.capacity * sizeof(ct_flow_t))
        kdp_big_free(t.index, t.nslots * sizeof(uint64_t))
        kdp_big_free(t.lru_prev, t.capacity * sizeof(uint32_t))
        kdp_big_free(t.lru_next, t.capacity * sizeof(uint32_t))
        kdp_big_free(t.frags, (t.frag_mask + 1) * sizeof(ct_frag_t))
        self.t.flows = NULL
        self.t.index = NULL
        self.t.lru_prev = NULL
        self.t.lru_next = NULL
        self.t.frags = NULL

    def __dealloc__(self):
        self._free()

    # -- properties
    @property
    def capacity(self):
        return self.t.capacity

    def __len__(self):
        return self.t.n_flows

    @property
    def inserts(self):
        """Flows made so far (counters()["inserts"], without building the dict)."""
        return self.t.c[C_INSERTS]

    @property
    def memory_bytes(self):
        """Bytes allocated for the table (records, index, links, fragment table)."""
        return (self.t.capacity * (sizeof(ct_flow_t) + 2 * sizeof(uint32_t))
                + self.t.nslots * sizeof(uint64_t) + (self.t.frag_mask + 1) * sizeof(ct_frag_t))

    @property
    def bytes_per_flow(self):
        """Bytes per flow of capacity, index and links included (not the fragment table)."""
        return (sizeof(ct_flow_t) + 2 * sizeof(uint32_t)
                + <double>self.t.nslots * sizeof(uint64_t) / self.t.capacity)

    def counters(self):
        """Table counters as a dict, plus the current number of flows ("flows")."""
        d = {name: self.t.c[i] for i, name in enumerate(COUNTER_NAMES)}
        d["flows"] = self.t.n_flows
        return d

    # -- stages
    def lookup_batch(self, Batch b not None, uint64_t now_ns):
        """Run the fast-path stage over batch b (see module docstring)."""
        with nogil:
            ct_lookup_batch(self, b, now_ns)

    def create(self, Batch b not None, Py_ssize_t i, spec=None, uint64_t now_ns=0):
        """Slow path for packet i. spec: None or a dict with flags, dnat, dnat_port,
        snat, snat_ports=(lo, hi), svc_port, backend. Returns the flow id or None."""
        cdef nat_spec_t s
        cdef nat_spec_t* sp = NULL
        cdef uint32_t fid
        if i < 0 or i >= b.count:
            raise IndexError(i)
        if spec is not None:
            _fill_spec(&s, spec)
            sp = &s
        with nogil:
            fid = ct_create(self, b, i, sp, now_ns)
        return None if fid == NO_ID else fid

    def create_all(self, Batch b not None, uint64_t now_ns=0):
        """The slow path without translation for every CT_NEW packet of b, in
        order (tools and benchmarks; the pipeline calls ct_create itself).
        Returns the number of packets that got a flow."""
        cdef Py_ssize_t i, n = 0
        with nogil:
            for i in range(b.count):
                if b.m[i].verdict == V_PENDING and b.m[i].ct_state == CT_NEW:
                    if ct_create(self, b, i, NULL, now_ns) != NO_ID:
                        n += 1
        return n

    def expire(self, uint64_t now_ns, Py_ssize_t max_work=1024):
        """Incremental expiry: examine at most max_work records; returns flows removed."""
        cdef Py_ssize_t n
        if max_work < 0:
            raise ValueError("max_work must be >= 0")
        with nogil:
            n = ct_expire(self, now_ns, max_work)
        return n

    def expire_all(self, uint64_t now_ns):
        """Remove every flow expired at now_ns (a whole turn of the expiry hand): the end
        of a replay, so that its counts of expired and live flows do not depend on how
        far the hand had come (nor on how the flows were spread over workers)."""
        cdef Py_ssize_t n
        with nogil:
            n = ct_expire(self, now_ns, self.t.hwm if self.t.hwm > 0 else 1)
        return n

    # -- single items and inspection
    def lookup(self, proto, src, dst, sport=0, dport=0):
        """(flow_id, dir) of the tuple as a packet would carry it, or (None, None).
        For ICMP echo pass sport = identifier, dport = echo type."""
        cdef ct_key_t k
        cdef uint8_t v1, v2
        cdef int dir = 0
        cdef uint32_t fid
        memset(&k, 0, sizeof(k))
        _addr_words(src, &v1, k.src)
        _addr_words(dst, &v2, k.dst)
        if v1 != v2:
            raise ValueError("source and destination are of different IP versions")
        k.ver = v1
        k.proto = proto
        k.sport = sport
        k.dport = dport
        fid = ct_find(&self.t, &k, &dir)
        if fid == NO_ID:
            return (None, None)
        return (fid, dir)

    def flow(self, uint32_t fid):
        """One flow as a dict (None when the id is not a live flow)."""
        if fid >= self.t.hwm or not (self.t.flows[fid].flags & FL_USED) or ct_unindexed(&self.t.flows[fid]):
            return None
        return self._flow_dict(&self.t.flows[fid], fid)

    cdef dict _flow_dict(self, const ct_flow_t* f, uint32_t fid):
        cdef ct_key_t o, r
        ct_flow_key(f, 0, &o)
        ct_flow_key(f, 1, &r)
        return {
            "id": fid, "ip_ver": f.ip_ver, "proto": f.proto,
            "orig": (_addr_str(o.src, f.ip_ver), _addr_str(o.dst, f.ip_ver), o.sport, o.dport),
            "reply": (_addr_str(r.src, f.ip_ver), _addr_str(r.dst, f.ip_ver), r.sport, r.dport),
            "state": TCP_STATE_NAMES[f.state] if f.proto == P_TCP else "",
            "assured": bool(f.flags & FL_ASSURED), "seen_reply": bool(f.flags & FL_SEEN_REPLY),
            "nat": bool(f.flags & FL_NAT), "dnat": bool(f.flags & FL_DNAT), "snat": bool(f.flags & FL_SNAT),
            "packets": (ct_flow_packets(f, 0), ct_flow_packets(f, 1)), "bytes": (ct_flow_bytes(f, 0), ct_flow_bytes(f, 1)),
            "last_ns": f.last_ns, "timeout_s": ct_timeout_ns(&self.t, f) / 1e9, "epoch": f.epoch,
            "svc_port": None if f.svc_port == NO_ID else f.svc_port,
            "backend": None if f.backend == NO_ID else f.backend,
        }

    # -- the flow log
    def enable_flow_log(self, Py_ssize_t buffer=65536):
        """Keep a copy of every flow as it ends (expired, evicted, flushed, replaced,
        reset), `buffer` at most between two drain_ended() calls (more are counted
        in flow_log_lost), with when it began and its first packet's policy decisions."""
        cdef ct_table_t* t = &self.t
        if buffer < 1:
            raise ValueError("the flow log buffer holds at least one flow")
        arrays = {
            "ended": np.zeros(buffer * sizeof(ct_flow_t), dtype=np.uint8),
            "why": np.zeros(buffer, dtype=np.uint8),
            "first": np.zeros(buffer, dtype=np.uint64),
            "pol": np.zeros(buffer, dtype=np.uint32),
            "id": np.zeros(buffer, dtype=np.uint32),
            "first_ns": np.zeros(t.capacity, dtype=np.uint64),
            "flow_pol": np.zeros(t.capacity, dtype=np.uint32),
        }
        self._flow_log = arrays
        t.ended = <ct_flow_t*>cnp.PyArray_DATA(arrays["ended"])
        t.ended_why = <uint8_t*>cnp.PyArray_DATA(arrays["why"])
        t.ended_first = <uint64_t*>cnp.PyArray_DATA(arrays["first"])
        t.ended_pol = <uint32_t*>cnp.PyArray_DATA(arrays["pol"])
        t.ended_id = <uint32_t*>cnp.PyArray_DATA(arrays["id"])
        t.first_ns = <uint64_t*>cnp.PyArray_DATA(arrays["first_ns"])
        t.pol = <uint32_t*>cnp.PyArray_DATA(arrays["flow_pol"])
        t.n_ended = 0
        t.cap_ended = <uint32_t>buffer
        t.ended_lost = 0

    @property
    def flow_log_lost(self):
        """Flows that ended while the flow log's buffer was full (not logged)."""
        return self.t.ended_lost

    def drain_ended(self):
        """The flows that ended since the last call, in the order they ended: dicts as
        flow() gives (their timeout 0) plus "end" (END_NAMES), "first_ns" and
        "policy" ((egress, ingress) decision ids). [] when the flow log is off."""
        cdef ct_table_t* t = &self.t
        cdef uint32_t k
        out = []
        if t.ended == NULL:
            return out
        for k in range(t.n_ended):
            d = self._flow_dict(&t.ended[k], t.ended_id[k])
            d["timeout_s"] = 0.0
            d["end"] = END_NAMES[t.ended_why[k]]
            d["first_ns"] = t.ended_first[k]
            d["policy"] = (t.ended_pol[k] >> 16, t.ended_pol[k] & 0xFFFF)
            out.append(d)
        t.n_ended = 0
        return out

    def live_flows(self):
        """Every live flow as drain_ended() gives them, "end" "live" (a replay's end)."""
        cdef ct_table_t* t = &self.t
        out = []
        for d in self.flows():
            d["end"] = "live"
            fid = d["id"]
            d["first_ns"] = t.first_ns[fid] if t.first_ns != NULL else None
            d["policy"] = (t.pol[fid] >> 16, t.pol[fid] & 0xFFFF) if t.pol != NULL else (0, 0)
            out.append(d)
        return out

    def flows(self):
        """Every live flow, as dicts (see flow()), in id order."""
        return [self.flow(i) for i in range(self.t.hwm)
                if self.t.flows[i].flags & FL_USED and not ct_unindexed(&self.t.flows[i])]

    def unassured_order(self):
        """Ids of the non-assured flows, oldest first (the early-drop order)."""
        out = []
        cdef uint32_t f = self.t.unas_head
        while f != NO_ID:
            out.append(f)
            f = self.t.lru_next[f]
        return out

    # -- flush
    def flush_all(self):
        """Delete every flow; returns how many."""
        cdef flush_t q
        memset(&q, 0, sizeof(q))
        return self._run_flush(&q)

    def flush_address(self, addr, proto=0):
        """Delete flows with addr in either tuple (any side); returns how many."""
        cdef flush_t q
        memset(&q, 0, sizeof(q))
        q.mode = 1
        q.proto = proto
        _addr_words(addr, &q.ver, q.addr)
        return self._run_flush(&q)

    def flush_backend(self, addr, port=None, proto=0):
        """Delete flows translated to (or replying from) backend addr[:port], e.g.
        the UDP flows of an endpoint that went away (proto=17); returns how many."""
        cdef flush_t q
        memset(&q, 0, sizeof(q))
        q.mode = 2
        q.proto = proto
        _addr_words(addr, &q.ver, q.addr)
        if port is not None:
            q.has_port = 1
            q.port = port
        return self._run_flush(&q)

    def flush_service(self, uint32_t svc_port):
        """Delete the flows created for service-port id svc_port; returns how many."""
        cdef flush_t q
        memset(&q, 0, sizeof(q))
        q.mode = 3
        q.svc_port = svc_port
        return self._run_flush(&q)

    def renumber_services(self, mapping):
        """Give every flow its service-port id under a new configuration.

        `mapping[old id]` is the new id (NO_ID: the service-port is gone); ids past its
        end become NO_ID. The control layer renumbers service-ports on a full compile;
        flows keep their translation but must name the right service. O(flows), nogil.
        """
        cdef const uint32_t[::1] m = np.ascontiguousarray(mapping, dtype=np.uint32)
        cdef Py_ssize_t n = m.shape[0]
        cdef uint32_t fid, sp
        cdef ct_flow_t* f
        with nogil:
            for fid in range(self.t.hwm):
                f = &self.t.flows[fid]
                if not (f.flags & FL_USED) or f.svc_port == NO_ID:
                    continue
                sp = f.svc_port
                f.svc_port = m[sp] if sp < n else NO_ID

    cdef Py_ssize_t _run_flush(self, flush_t* q):
        cdef Py_ssize_t n
        with nogil:
            n = _flush(&self.t, q)
        return n

    # -- bulk APIs over numpy arrays (IPv4), for benchmarks and tools
    def lookup4(self, src, dst, sport, dport, proto, out=None):
        """Flow ids (uint32, NO_ID for a miss) of IPv4 tuples given as numpy arrays
        (src/dst uint32 host order, ports uint16, proto uint8). No state change."""
        src, dst, sport, dport, proto = _tuple_arrays("lookup4", src, dst, sport, dport, proto)
        cdef const uint32_t[::1] s = src
        cdef const uint32_t[::1] d = dst
        cdef const uint16_t[::1] sp = sport
        cdef const uint16_t[::1] dp = dport
        cdef const uint8_t[::1] pr = proto
        cdef Py_ssize_t n = s.shape[0]
        if out is None:
            out = np.empty(n, dtype=np.uint32)
        cdef uint32_t[::1] o = out
        if o.shape[0] < n:
            raise ValueError("lookup4: out is too short")
        if n:
            with nogil:
                _lookup4(&self.t, &s[0], &d[0], &sp[0], &dp[0], &pr[0], &o[0], n)
        return out

    def insert4(self, src, dst, sport, dport, proto, uint64_t now_ns=0, tcp_state=TCP_SYN_SENT):
        """Create flows (no NAT) for IPv4 tuples; TCP flows start in tcp_state (as
        after a SYN by default). Returns their ids (NO_ID where refused: table
        full). Existing tuples give their flow."""
        if not (1 <= tcp_state <= 9):
            raise ValueError("tcp_state must be 1..9")
        cdef uint8_t st = tcp_state
        src, dst, sport, dport, proto = _tuple_arrays("insert4", src, dst, sport, dport, proto)
        cdef const uint32_t[::1] s = src
        cdef const uint32_t[::1] d = dst
        cdef const uint16_t[::1] sp = sport
        cdef const uint16_t[::1] dp = dport
        cdef const uint8_t[::1] pr = proto
        cdef Py_ssize_t n = s.shape[0]
        out = np.empty(n, dtype=np.uint32)
        cdef uint32_t[::1] o = out
        if n:
            with nogil:
                _insert4(&self.t, &s[0], &d[0], &sp[0], &dp[0], &pr[0], &o[0], n, now_ns, st)
        return out


cdef void _lookup4(ct_table_t* t, const uint32_t* s, const uint32_t* d, const uint16_t* sp,
                   const uint16_t* dp, const uint8_t* pr, uint32_t* out, Py_ssize_t n) noexcept nogil:
    cdef ct_key_t keys[RING]
    cdef uint64_t hs[RING]
    cdef uint32_t pos[RING]
    cdef Py_ssize_t j, a, c
    cdef int r, dir
    for j in range(n + 2 * DIST):
        if j < n:
            r = j & (RING - 1)
            memset(&keys[r], 0, sizeof(ct_key_t))
            keys[r].src[0] = s[j]
            keys[r].dst[0] = d[j]
            keys[r].sport = sp[j]
            keys[r].dport = dp[j]
            keys[r].proto = pr[j]
            keys[r].ver = 4
            hs[r] = ct_key_hash(t, &keys[r])
            pos[r] = ct_home_slot(t, hs[r])
            ct_prefetch_run(t, pos[r])
        a = j - DIST
        if 0 <= a < n:
            r = a & (RING - 1)
            ct_probe_tag(t, hs[r], &pos[r], 0)    # IPv4 flows live in the first line
        c = j - 2 * DIST
        if 0 <= c < n:
            r = c & (RING - 1)
            out[c] = ct_find_from(t, &keys[r], hs[r], pos[r], &dir)


cdef void _insert4(ct_table_t* t, const uint32_t* s, const uint32_t* d, const uint16_t* sp,
                   const uint16_t* dp, const uint8_t* pr, uint32_t* out, Py_ssize_t n,
                   uint64_t now, uint8_t tcp_state) noexcept nogil:
    # pipelined: tuple j hashes its key and the reply key (no NAT: the swapped
    # tuple) and prefetches both home slots; tuple j - DIST is inserted
    cdef ct_key_t keys[RING]
    cdef ct_key_t rk
    cdef uint64_t hs[RING]
    cdef uint64_t hrs[RING]
    cdef Py_ssize_t j, c
    cdef int r, dir
    cdef uint32_t fid
    cdef uint16_t reason
    memset(&rk, 0, sizeof(rk))
    rk.ver = 4
    t.epoch += 1
    t.epoch16 = <uint16_t>t.epoch
    for j in range(n + DIST):
        if j < n:
            r = j & (RING - 1)
            memset(&keys[r], 0, sizeof(ct_key_t))
            keys[r].ver = 4
            keys[r].src[0] = s[j]
            keys[r].dst[0] = d[j]
            keys[r].sport = sp[j]
            keys[r].dport = dp[j]
            keys[r].proto = pr[j]
            hs[r] = ct_key_hash(t, &keys[r])
            ct_prefetch_run(t, ct_home_slot(t, hs[r]))
            rk.src[0] = d[j]
            rk.dst[0] = s[j]
            rk.sport = dp[j]
            rk.dport = sp[j]
            rk.proto = pr[j]
            hrs[r] = ct_key_hash(t, &rk)
            ct_prefetch_run(t, ct_home_slot(t, hrs[r]))
        c = j - DIST
        if c >= 0:
            r = c & (RING - 1)
            fid = ct_find_from(t, &keys[r], hs[r], ct_home_slot(t, hs[r]), &dir)
            if fid == NO_ID:
                fid = _new_flow(t, &keys[r], hs[r], NULL, tcp_state if keys[r].proto == P_TCP else 0,
                                now, &reason, &hrs[r])
            out[c] = fid


TCP_STATES = {name: i for i, name in enumerate(TCP_STATE_NAMES)}

cdef ct_flow_t _probe_flow


def flow_layout():
    """{field: byte offset} of ct_flow_t plus "sizeof" (tests check the cache-line plan)."""
    cdef ct_flow_t* f = &_probe_flow
    base = <size_t>f
    return {
        "a4": <size_t>&f.a4[0] - base, "port": <size_t>&f.port[0] - base,
        "proto": <size_t>&f.proto - base, "state": <size_t>&f.state - base,
        "flags": <size_t>&f.flags - base, "epoch": <size_t>&f.epoch - base,
        "last_ns": <size_t>&f.last_ns - base, "svc_port": <size_t>&f.svc_port - base,
        "backend": <size_t>&f.backend - base, "pkts_lo": <size_t>&f.pkts_lo[0] - base,
        "bytes_lo": <size_t>&f.bytes_lo[0] - base, "a6": <size_t>&f.a6[0] - base,
        "sizeof": sizeof(ct_flow_t),
    }
