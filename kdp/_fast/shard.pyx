# cython: boundscheck=False, wraparound=False
"""Flow sharding for `kdp replay --workers N`: the key that sends both directions of a
flow (and its ICMP errors) to the same worker, as RSS does on a NIC, through
kube-proxy's translations.

What a Service flow keeps across DNAT and masquerade is its client: DNAT keeps the
client's address and port (client:c -> VIP:v becomes backend:b -> client:c), and
masquerade (backend -> node:P) picks a port P whose low 6 bits are the client's key
(service.pyx sets nat_spec_t.port_key, conntrack.pyx _new_flow picks among those
ports first; another port, when all of those are taken, fails the reply-key check). So a TCP, UDP or SCTP packet is keyed by its client side, told by whether an
end is a Service frontend or a backend endpoint (the compiled tables, read only):
  from one to a node address     -> the destination port (an answer to a masqueraded
                                    flow, or to the node's own; tested first: the port
                                    masquerade picked may be a NodePort)
  to a frontend or an endpoint   -> the source address's key (shardkey.pxd), or the
                                    source port when the source is a node address
  from one                       -> the destination address's key
  neither (pod to pod, to the internet) -> source port XOR destination port (Calico's
                                    natOutgoing keeps the port's low 6 bits)
By address rather than by port, a client's flows to a Service with ClientIP affinity
meet the same worker, whose own affinity table remembers its backend (pipeline.pyx;
service.pyx aff_bucket gives each key its own buckets). ICMP echo: its identifier;
an ICMP error: the key of the packet it quotes. The key's low 6 bits are one of 64
virtual shards, spread over the workers (shard v -> worker v mod N). Everything else
(non-IP, ICMP other than echo and errors, ND, protocols without ports, packets parse
dropped) goes to worker 0. ARP and ND are in every worker's view (assign marks them):
each notes what they teach before sharding (neigh.pyx) and learns it at their place.

The replay's thread keys each batch once (assign); each worker copies its packets'
metadata into a view sharing the batch's buffer (share_buffer, start_view), and the
replay's thread gathers the views' metadata back in input order (gather).

The key is a guess a check keeps honest: the pipeline computes, for every flow it
creates, the key of the flow's reply tuple (shard_key), and a flow whose two
directions disagree makes the replay start again on one worker (kdp/shards.py).
"""
import numpy as np
cimport numpy as cnp
from libc.string cimport memcpy, memset

from kdp._fast.mix cimport mix64, P_ICMP, P_TCP, P_UDP, P_ICMPV6, P_SCTP
from kdp._fast.packet cimport (Batch, pkt_meta_t, NO_ID, V_PENDING, V_LOCAL, ST_PARSE, R_ARP, FRAG_NONE,
                               SLOT_ALIGN)
from kdp._fast.service cimport svc_frontend, svc_is_node_address, svc_tables_t, bset_t, backend_t
from kdp._fast.shardkey cimport shard_addr_key

cnp.import_array()



cdef inline uint64_t _end_tag(uint8_t proto, uint8_t ver, uint32_t a4, const uint8_t* a6,
                              uint16_t port) noexcept nogil:
    cdef uint64_t w0, w1, h
    if ver == 4:
        h = mix64((<uint64_t>4 << 32) | a4)
    else:
        memcpy(&w0, a6, 8)
        memcpy(&w1, a6 + 8, 8)
        h = mix64(w0 ^ mix64(w1 ^ <uint64_t>6))
    return mix64(h ^ (((<uint64_t>proto << 16) | port) * <uint64_t>0x9E3779B97F4A7C15)) | 1


cdef inline void _set_port(uint8_t* ports, uint16_t port) noexcept nogil:
    ports[port >> 3] |= <uint8_t>(1 << (port & 7))


cdef void _insert(uint64_t* tab, uint64_t mask, uint8_t proto, const backend_t* be,
                  uint32_t n, uint8_t* ports) noexcept nogil:
    cdef uint32_t j
    cdef uint64_t tag, i
    for j in range(n):
        _set_port(ports, be[j].port)
        tag = _end_tag(proto, be[j].ip_ver, be[j].a4, be[j].a6, be[j].port)
        i = tag & mask
        while tab[i] != 0 and tab[i] != tag:
            i = (i + 1) & mask
        tab[i] = tag


cdef inline bint _is_end(ShardPlan s, uint8_t proto, uint8_t ver, uint32_t a4, const uint8_t* a6,
                         uint16_t port) noexcept nogil:
    """A Service frontend or a backend endpoint. (A tag collision may call another end
    one: the key is then another guess, which the reply check still verifies.)"""
    cdef uint64_t tag, i, e
    if s.services is None or not (s.ports[port >> 3] & (1 << (port & 7))):
        return False        # (most clients' ports: no lookup)
    if svc_frontend(&s.services.t, proto, ver, a4, a6, port) != NO_ID:
        return True
    tag = _end_tag(proto, ver, a4, a6, port)
    i = tag & s.ep_mask
    while True:
        e = s.ep[i]
        if e == 0:
            return False
        if e == tag:
            return True
        i = (i + 1) & s.ep_mask


cdef uint8_t shard_key(ShardPlan s, uint8_t ver, uint8_t proto, uint32_t s4, const uint8_t* s6,
                       uint32_t d4, const uint8_t* d6, uint16_t sport, uint16_t dport) noexcept nogil:
    """The virtual shard of a tuple (ICMP: sport is the echo identifier), SHARD_FIRST
    for protocols without ports."""
    if proto == P_ICMP or proto == P_ICMPV6:
        return sport & (N_VSHARDS - 1)
    if proto != P_TCP and proto != P_UDP and proto != P_SCTP:
        return SHARD_FIRST
    cdef bint src_end
    if s.services is None:
        return (sport ^ dport) & (N_VSHARDS - 1)
    src_end = _is_end(s, proto, ver, s4, s6, sport)
    if src_end and svc_is_node_address(&s.services.t, ver, d4, d6):
        # first: an answer to a masqueraded flow (the port it was given may be a NodePort)
        return dport & (N_VSHARDS - 1)
    if _is_end(s, proto, ver, d4, d6, dport):
        if svc_is_node_address(&s.services.t, ver, s4, s6):
            return sport & (N_VSHARDS - 1)
        return shard_addr_key(ver, s4, s6)
    if src_end:
        return shard_addr_key(ver, d4, d6)
    return (sport ^ dport) & (N_VSHARDS - 1)


cdef uint8_t shard_packet(ShardPlan s, const pkt_meta_t* p) noexcept nogil:
    if p.verdict != V_PENDING or (p.ip_ver != 4 and p.ip_ver != 6):
        return SHARD_FIRST
    if p.frag != FRAG_NONE:
        return SHARD_UNSAFE
    if p.proto == P_ICMP or p.proto == P_ICMPV6:
        if p.quote_off != 0:
            # an error: the flow of the packet it quotes
            return shard_key(s, p.ip_ver, p.q_proto, p.q_src4, p.q_src6, p.q_dst4, p.q_dst6,
                             p.q_sport, p.q_dport)
        if (p.proto == P_ICMP and (p.icmp_type == 8 or p.icmp_type == 0)) or \
                (p.proto == P_ICMPV6 and (p.icmp_type == 128 or p.icmp_type == 129)):
            return p.icmp_id & (N_VSHARDS - 1)
        return SHARD_FIRST
    return shard_key(s, p.ip_ver, p.proto, p.src4, p.src6, p.dst4, p.dst6, p.sport, p.dport)


cdef class ShardPlan:
    """The read-only part of sharding, shared by the workers: the endpoints of
    `services` (a ServiceTables, None without Services) and which worker each of the
    64 virtual shards goes to."""

    def __init__(self, ServiceTables services, int workers, int first=-1):
        """`first`: how many of the 64 virtual shards worker 0 takes (the others share the
        rest evenly); -1: all of them evenly (v mod workers). A worker that also keys every
        packet (kdp/_fast/chunk.pyx) takes fewer flows."""
        if not 1 <= workers <= N_VSHARDS:
            raise ValueError(f"workers must be 1..{N_VSHARDS}, got {workers}")
        if first != -1 and (workers < 2 or not 1 <= first <= N_VSHARDS - (workers - 1)):
            raise ValueError(f"worker 0's share of the shards must leave each other worker one, got {first}")
        self.services = services
        self.workers = workers
        self.affinity_split = services is None or services.t.aff_mask >= 255
        cdef int v
        for v in range(N_VSHARDS):
            if first == -1:
                self.owner[v] = v % workers
            else:
                self.owner[v] = 0 if v < first else 1 + (v - first) % (workers - 1)
        cdef Py_ssize_t total = 0, size = 16
        cdef uint32_t k
        cdef bset_t* bs
        cdef svc_tables_t* t = NULL
        if services is not None:
            t = &services.t
            for k in range(t.n_svc):
                bs = t.svc[k].bs
                if bs != NULL:
                    total += bs.n + bs.n_local
        while size < 2 * total:
            size *= 2
        arr = np.zeros(size, dtype=np.uint64)
        self.ep_arr = arr
        self.ep = <const uint64_t*>cnp.PyArray_DATA(arr)
        self.ep_mask = size - 1
        memset(self.ports, 0, sizeof(self.ports))
        if services is not None:
            with nogil:
                for k in range(t.fe_mask + 1):
                    if t.fe[k].used:
                        _set_port(self.ports, t.fe[k].port)
                if t.nodeport != NULL:
                    for k in range(t.np_lo, <uint32_t>t.np_hi + 1):
                        _set_port(self.ports, <uint16_t>k)
                for k in range(t.n_svc):
                    bs = t.svc[k].bs
                    if bs != NULL:
                        _insert(<uint64_t*>self.ep, self.ep_mask, t.svc[k].proto, bs.be, bs.n, self.ports)
                        _insert(<uint64_t*>self.ep, self.ep_mask, t.svc[k].proto, bs.be_local, bs.n_local,
                                self.ports)

    @staticmethod
    def _tag(int proto, int ver, uint32_t a4, bytes a6, int port):
        cdef const uint8_t* b = a6
        return _end_tag(proto, ver, a4, b, port)

    def owner_of(self, int vshard):
        """The worker of a virtual shard (SHARD_FIRST and above: worker 0)."""
        return self.owner[vshard] if 0 <= vshard < N_VSHARDS else 0

    def key(self, int ver, int proto, src, dst, int sport, int dport):
        """The virtual shard of a tuple (addresses as ipaddress objects), for tests."""
        cdef bytes s6 = src.packed if ver == 6 else bytes(16)
        cdef bytes d6 = dst.packed if ver == 6 else bytes(16)
        return shard_key(self, ver, proto, int(src) if ver == 4 else 0, s6,
                         int(dst) if ver == 4 else 0, d6, sport, dport)


def share_buffer(Batch view not None, Batch base not None):
    """`view` takes `base`'s buffer (its metadata stays its own): a worker's view of the
    batch the replay read and parsed, whose packets it processes in place (each worker
    writes only its own packets' bytes)."""
    if view.capacity < base.capacity:
        raise ValueError("the view holds fewer packets than the batch")
    view.buffer = base.buffer
    view.buf = base.buf
    view.buf_size = base.buf_size


cdef inline bint _teaches(const pkt_meta_t* p) noexcept nogil:
    """ARP (parse delivered it locally) and ND: what neigh_note_batch learns from; every
    worker sees such a packet, at its place, and worker 0 processes it."""
    return (p.verdict == V_LOCAL and p.stage == ST_PARSE and p.reason == R_ARP) or \
        (p.verdict == V_PENDING and p.ip_ver == 6 and p.proto == P_ICMPV6 and p.l4_off != 0
         and (p.icmp_type == 135 or p.icmp_type == 136))


cdef uint8_t shard_one(ShardPlan plan, const pkt_meta_t* p, uint8_t* vshard, uint32_t* unsafe) noexcept nogil:
    """A parsed packet's worker (bit 7: every worker sees it, _teaches); its virtual shard
    into *vshard (SHARD_FIRST: not sharded); an IP fragment sets U_FRAGMENT in *unsafe."""
    cdef uint8_t v = shard_packet(plan, p)
    if v == SHARD_UNSAFE:
        unsafe[0] |= U_FRAGMENT
        v = SHARD_FIRST
    vshard[0] = v
    return (plan.owner[v] if v < SHARD_FIRST else 0) | (0x80 if _teaches(p) else 0)


def assign(ShardPlan plan not None, Batch b not None, who, vshards, uint64_t newest):
    """Each parsed packet's worker into `who` (uint8 per packet; bit 7: every worker sees it,
    _teaches) and its virtual shard into `vshards` (uint8; SHARD_FIRST: not sharded).
    Returns (shard.pxd U_* bits that make sharding unsafe, the newest timestamp so far):
    an IP fragment, or a packet older than `newest` (the batches before: conntrack's
    clock never runs back, and each worker sees only its own)."""
    cdef uint8_t[::1] wv = who
    cdef uint8_t[::1] vv = vshards
    cdef Py_ssize_t i
    cdef pkt_meta_t* p
    cdef uint32_t unsafe = 0
    cdef uint64_t before = newest
    if wv.shape[0] < b.count or vv.shape[0] < b.count:
        raise ValueError("`who` or `vshards` smaller than the batch")
    with nogil:
        for i in range(b.count):
            p = &b.m[i]
            wv[i] = shard_one(plan, p, &vv[i], &unsafe)
            if p.ts_ns < before:
                unsafe |= U_CLOCK
            if p.ts_ns > newest:
                newest = p.ts_ns
    return unsafe, newest


cdef Py_ssize_t start_view(Batch view, Batch base, int me, int workers, const uint8_t* who,
                           const uint8_t* vshards, uint32_t* index, uint8_t* view_vshards) noexcept nogil:
    """Before worker `me` runs the batch in `base` through `view` (share_buffer): the
    metadata of its packets (and of those every worker sees), in input order, their
    indices in `base` into `index` and their virtual shards (assign's `vshards`) into
    `view_vshards`; and a part of the buffer's free end of its own (where a DNS answer
    too big for its slot goes, dns.pyx), so that workers never write the same bytes.
    Returns the view's count. (Pipeline.run_view calls it, having checked that the view
    shares base's buffer and that the arrays hold base.count.)"""
    cdef Py_ssize_t share, i, j = 0
    cdef uint8_t w = <uint8_t>me
    share = ((base.buf_size - base.used) // workers) & ~(<Py_ssize_t>SLOT_ALIGN - 1)
    for i in range(base.count):
        if (who[i] & 0x7F) == w or (who[i] & 0x80):
            view.m[j] = base.m[i]
            index[j] = <uint32_t>i
            view_vshards[j] = vshards[i]
            j += 1
    view.count = j
    view.used = base.used + me * share
    view.buf_size = view.used + share
    return j


def gather(Batch dst not None, Batch view not None, mine, index):
    """Into dst (the batch the replay read), the metadata of the packets of `view` that
    its worker processed (`mine`, uint8 per view packet), at their input places (`index`);
    their bytes are in the shared buffer already."""
    cdef const uint8_t[::1] mv = mine
    cdef const uint32_t[::1] iv = index
    cdef Py_ssize_t j, n = view.count
    if mv.shape[0] < n or iv.shape[0] < n or view.buf != dst.buf:
        raise ValueError("not a view of this batch")
    with nogil:
        for j in range(n):
            if mv[j]:
                dst.m[iv[j]] = view.m[j]
