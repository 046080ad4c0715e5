# cython: boundscheck=False, wraparound=False
"""Network policy tables and the policy step of the slow path.

Stage contract (`pol_decide`, called by the pipeline for each packet that
starts a new flow, after the service stage and before conntrack creates the
flow; Python: `PolicyTables.decide`):

  reads   pkt_meta_t: ip_ver, proto, src4/src6, dst4/dst6, dport, in_port
          (the host port is the node itself); nat_spec_t of the service stage
          (NAT_DNAT: the flow is judged on its backend address and port)
  sets    pol_egress / pol_ingress: the decision of each direction (an index
          into the compile's decision labels, 0: no policy decided it)
  returns 0 (allowed) or R_POLICY_DENIED_EGRESS / R_POLICY_DENIED_INGRESS:
          the pipeline drops the packet (stage ST_POLICY) and creates no flow,
          as Linux drops before conntrack confirms a flow

The egress of the source is judged when the source is a pod of this node, the
ingress of the (post-DNAT) destination when that is a pod of this node; egress
first, and a flow denied by its egress is not judged again for ingress. The
source address is the one the packet arrived with (a masquerade this node
applies comes after policy); packets from the host port count as the node.
IPv6 neighbour discovery (ICMPv6 types 133-137) is never judged: it is the link's
housekeeping, as ARP is (which the parser hands to the node).

Re-check (`pol_recheck_batch`, only when NodeConfig sets networkPolicy.
establishedFlows: Recheck): for packets of established flows (any ct state
but new) whose flow was judged by older tables, the flow is judged again from
its conntrack record (original source, reply source = the backend, reply
source port = the backend port) and the packet dropped with the same reasons
when the flow is now denied; the verdict is remembered per flow (FlowPolicy),
so one judgement per flow and reload. Conntrack itself is not changed.
"""
import numpy as np
cimport numpy as cnp
from kdp._fast.packet import struct_dtype
from libc.string cimport memcpy, memset, memcmp

from kdp._fast.packet cimport (field_offset, NO_ID, NO_PORT, V_PENDING, CT_NEW, ST_POLICY, drop,
                               R_POLICY_DENIED_EGRESS, R_POLICY_DENIED_INGRESS)
from kdp._fast.flow cimport NAT_DNAT
from kdp._fast.mix cimport mix64, P_TCP, P_UDP, P_SCTP, P_ICMPV6
from kdp._fast.lpm cimport KDP_LPM_MISS
from kdp._fast.ct_table cimport ct_flow_t, FL_DNAT

cnp.import_array()

cdef enum:
    HOST_PORT = 1               # kdp.ports.HOST
    ST_GEN_SHIFT = 3
    ST_FROM_HOST = 4
    ST_DENIED_MASK = 3

cdef extern from *:
    """
    #define KDP_POL_EMPTY_KEY 0xFFFFFFFFFFFFFFFFull
    """
    const uint64_t POL_EMPTY_KEY "KDP_POL_EMPTY_KEY"

cdef uint32_t _generation = 0

# ---------------------------------------------------------------- dtypes

cdef pol_addr_t _pa
cdef pol_endpoint_t _pe
cdef pol_map_t _pm


ADDR_DTYPE = struct_dtype([
    ("ip_ver", "u1", field_offset(&_pa.ip_ver, &_pa)), ("flags", "u1", field_offset(&_pa.flags, &_pa)),
    ("identity", "<u4", field_offset(&_pa.identity, &_pa)), ("endpoint", "<u4", field_offset(&_pa.endpoint, &_pa)),
    ("self_map", "2<u4", field_offset(&_pa.self_map[0], &_pa)), ("a4", "<u4", field_offset(&_pa.a4, &_pa)),
    ("a6", "16u1", field_offset(&_pa.a6[0], &_pa)),
], sizeof(pol_addr_t))

ENDPOINT_DTYPE = struct_dtype([("profile", "2<u4", field_offset(&_pe.profile[0], &_pe)),
                         ("self_map", "(2,2)<u4", field_offset(&_pe.self_map[0][0], &_pe))], sizeof(pol_endpoint_t))
ADDR4_DTYPE = np.dtype([("b", "u1", sizeof(pol_addr4_t))])
ADDR6_DTYPE = np.dtype([("b", "u1", sizeof(pol_addr6_t))])
MAP_DTYPE = struct_dtype([("off", "<u4", field_offset(&_pm.off, &_pm)), ("n", "<u4", field_offset(&_pm.n, &_pm))],
                   sizeof(pol_map_t))
NO_ID_VALUE = <uint32_t>NO_ID
KEY_LIMIT = <uint32_t>PK_LIMIT
EGRESS, INGRESS = POL_EGRESS, POL_INGRESS
LOCAL_NODE = PA_LOCAL_NODE
PROTOCOL_CLASS = {6: PK_TCP, 17: PK_UDP, 132: PK_SCTP}      # key = class << 16 | port


# ---------------------------------------------------------------- lookups

cdef inline uint32_t port_key(uint8_t proto, uint16_t port) noexcept nogil:
    if proto == P_TCP:
        return (<uint32_t>PK_TCP << 16) | port
    if proto == P_UDP:
        return (<uint32_t>PK_UDP << 16) | port
    if proto == P_SCTP:
        return (<uint32_t>PK_SCTP << 16) | port
    return 0


cdef inline uint64_t _addr_hash(uint8_t ver, uint32_t a4, const uint8_t* a6) noexcept nogil:
    cdef uint64_t w0, w1
    if ver == 4:
        return mix64((<uint64_t>4 << 32) | a4)
    memcpy(&w0, a6, 8)
    memcpy(&w1, a6 + 8, 8)
    return mix64(w0 ^ mix64(w1 ^ <uint64_t>6))


cdef inline bint _addr_find(const pol_tables_t* t, uint8_t ver, uint32_t a4, const uint8_t* a6,
                            uint32_t* identity, uint32_t* endpoint) noexcept nogil:
    """Is (ver, a4 / a6) an exact address? Sets its identity and endpoint when it is."""
    cdef uint32_t i = <uint32_t>_addr_hash(ver, a4, a6)
    cdef const pol_addr4_t* e4
    cdef const pol_addr6_t* e6
    if ver == 4:
        i &= t.mask4
        while True:
            e4 = &t.addrs4[i]
            if not (e4.flags & PA_USED):
                return False
            if e4.a4 == a4:
                identity[0] = e4.identity
                endpoint[0] = e4.endpoint
                return True
            i = (i + 1) & t.mask4
    i &= t.mask6
    while True:
        e6 = &t.addrs6[i]
        if not (e6.flags & PA_USED):
            return False
        if memcmp(e6.a6, a6, 16) == 0:
            identity[0] = e6.identity
            endpoint[0] = e6.endpoint
            return True
        i = (i + 1) & t.mask6


cdef inline uint64_t _be64(const uint8_t* a) noexcept nogil:
    cdef uint64_t v = 0
    cdef int k
    for k in range(8):
        v = (v << 8) | a[k]
    return v


cdef inline uint32_t _prefix_identity(PolicyTables pt, uint8_t ver, uint32_t a4, const uint8_t* a6) noexcept nogil:
    cdef uint32_t v
    if ver == 4:
        v = pt.lpm4.lookup_one(a4)
    else:
        v = pt.lpm6.lookup_one(_be64(a6), _be64(a6 + 8))
    return 0 if v == KDP_LPM_MISS else v     # the compile always covers /0: never a miss


cdef inline uint32_t _map_of(const pol_tables_t* t, uint32_t profile, uint32_t identity) noexcept nogil:
    cdef uint64_t key = (<uint64_t>profile << 32) | identity
    cdef uint32_t i = <uint32_t>mix64(key) & t.entry_mask
    cdef const pol_entry_t* e
    if t.entries != NULL:
        while True:
            e = &t.entries[i]
            if e.key == key:
                return e.map
            if e.key == POL_EMPTY_KEY:
                break
            i = (i + 1) & t.entry_mask
    return t.prof_default[profile]


cdef inline uint16_t _map_decision(const pol_tables_t* t, uint32_t m, uint32_t key) noexcept nogil:
    # the last segment starting at or below key (seg_start[off] == 0)
    cdef uint32_t lo = t.maps[m].off, hi = lo + t.maps[m].n, mid
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if t.seg_start[mid] <= key:
            lo = mid
        else:
            hi = mid
    return t.seg_dec[lo]


cdef uint16_t _decide(PolicyTables pt, uint8_t ver, uint32_t s4, const uint8_t* s6, uint32_t d4,
                      const uint8_t* d6, uint8_t proto, uint16_t dport, bint via_service,
                      bint from_host, uint16_t* eg, uint16_t* ing) noexcept nogil:
    """Both directions of one new flow; returns 0 or the drop reason."""
    cdef const pol_tables_t* t = &pt.t
    cdef uint32_t s_ident = NO_ID, d_ident = NO_ID, s_ep = NO_ID, d_ep = NO_ID, prof, m, key
    cdef int fam = 1 if ver == 6 else 0
    cdef uint16_t dec
    eg[0] = 0
    ing[0] = 0
    if ver != 4 and ver != 6:
        return 0
    # an identity left NO_ID (no exact address) is looked up in the LPM only if needed
    if from_host:
        s_ident = t.host_identity
    else:
        _addr_find(t, ver, s4, s6, &s_ident, &s_ep)
    _addr_find(t, ver, d4, d6, &d_ident, &d_ep)
    if s_ep != NO_ID and s_ep == d_ep and not via_service:
        return 0                        # a pod to its own address: never leaves the pod
    key = port_key(proto, dport)
    if s_ep != NO_ID:
        prof = t.eps[s_ep].profile[POL_EGRESS]
        if prof != NO_ID:
            if s_ep == d_ep:
                m = t.eps[d_ep].self_map[fam][POL_EGRESS]
            else:
                if d_ident == NO_ID:
                    d_ident = _prefix_identity(pt, ver, d4, d6)
                m = _map_of(t, prof, d_ident)
            dec = _map_decision(t, m, key)
            eg[0] = dec
            if not t.dec_allow[dec]:
                return R_POLICY_DENIED_EGRESS
    if d_ep != NO_ID:
        prof = t.eps[d_ep].profile[POL_INGRESS]
        if prof != NO_ID:
            if s_ep == d_ep:
                m = t.eps[d_ep].self_map[fam][POL_INGRESS]
            else:
                if s_ident == NO_ID:
                    s_ident = _prefix_identity(pt, ver, s4, s6)
                m = _map_of(t, prof, s_ident)
            dec = _map_decision(t, m, key)
            ing[0] = dec
            if not t.dec_allow[dec]:
                return R_POLICY_DENIED_INGRESS
    return 0


cdef uint16_t pol_decide(PolicyTables pt, pkt_meta_t* p, const nat_spec_t* spec) noexcept nogil:
    cdef bint via = spec != NULL and (spec.flags & NAT_DNAT) != 0
    if p.ip_ver == 6 and p.proto == P_ICMPV6 and 133 <= p.icmp_type <= 137:
        return 0        # neighbour discovery: the link's housekeeping, as ARP is (CNIs exempt it)
    if via:
        return _decide(pt, p.ip_ver, p.src4, p.src6, spec.dnat4, spec.dnat6, p.proto,
                       spec.dnat_port, True, p.in_port == HOST_PORT, &p.pol_egress, &p.pol_ingress)
    return _decide(pt, p.ip_ver, p.src4, p.src6, p.dst4, p.dst6, p.proto, p.dport, False,
                   p.in_port == HOST_PORT, &p.pol_egress, &p.pol_ingress)


cdef void pol_flow_created(PolicyTables pt, FlowPolicy fp, uint32_t fid, bint from_host) noexcept nogil:
    # pt None: created while no policy applied (any later tables judge the flow again)
    cdef uint32_t gen = 0 if pt is None else pt.generation
    if fid < fp.capacity:
        fp.state[fid] = (gen << ST_GEN_SHIFT) | (ST_FROM_HOST if from_host else 0)


cdef void pol_recheck_batch(PolicyTables pt, FlowPolicy fp, Conntrack ct, Batch b) noexcept nogil:
    cdef Py_ssize_t i
    cdef pkt_meta_t* p
    cdef uint32_t fid, st, gen = pt.generation
    cdef const ct_flow_t* f
    cdef uint16_t reason, eg, ing
    cdef uint8_t s6[16]
    cdef uint8_t d6[16]
    for i in range(b.count):
        p = &b.m[i]
        fid = p.flow_id
        if p.verdict != V_PENDING or fid == NO_ID or p.ct_state == CT_NEW or fid >= fp.capacity:
            continue
        st = fp.state[fid]
        if (st >> ST_GEN_SHIFT) != gen:
            f = &ct.t.flows[fid]
            if f.ip_ver == 6:
                memcpy(s6, &f.a6[0], 16)            # original source
                memcpy(d6, &f.a6[8], 16)            # reply source: the (post-DNAT) destination
            reason = _decide(pt, f.ip_ver, f.a4[0], s6, f.a4[2], d6, f.proto, f.port[2],
                             (f.flags & FL_DNAT) != 0, (st & ST_FROM_HOST) != 0, &eg, &ing)
            st = (gen << ST_GEN_SHIFT) | (st & ST_FROM_HOST)
            if reason == R_POLICY_DENIED_EGRESS:
                st |= 1
            elif reason == R_POLICY_DENIED_INGRESS:
                st |= 2
            fp.state[fid] = st
        if st & ST_DENIED_MASK:
            drop(p, ST_POLICY, R_POLICY_DENIED_EGRESS if (st & ST_DENIED_MASK) == 1
                 else R_POLICY_DENIED_INGRESS)


# ---------------------------------------------------------------- tables

def _pow2(n):
    size = 8
    while size < n:
        size <<= 1
    return size


cdef class PolicyTables:
    """One compiled, immutable set of policy tables (see policy.pxd for the layout).

    Built by kdp.control.policy_compile from numpy arrays: `addrs` (ADDR_DTYPE,
    one per exact address; hashed here), `endpoints` (ENDPOINT_DTYPE), per
    profile its default map, the (profile, identity) -> map entries, the maps
    (MAP_DTYPE) with their segments, the allow flag of every decision, and the
    prefix -> identity rules of each family. Indices are checked here, so the
    decision never reads outside the tables.
    """

    def __init__(self, addrs, endpoints, prof_default, entry_keys, entry_maps, maps,
                 seg_start, seg_dec, dec_allow, prefixes4, lengths4, idents4,
                 prefixes6, lengths6, idents6, uint32_t host_identity, uint32_t n_identities):
        global _generation
        cdef Py_ssize_t i, n
        cdef uint32_t k, slot
        cdef pol_addr4_t* tab4
        cdef pol_addr6_t* tab6
        cdef const pol_addr_t* src
        cdef uint32_t ident, ep
        cdef pol_entry_t* ent
        cdef const uint64_t* ek
        cdef const uint32_t* em
        a = np.ascontiguousarray(addrs, dtype=ADDR_DTYPE)
        eps = np.array(endpoints, dtype=ENDPOINT_DTYPE, copy=True)     # its self maps are filled here
        pdef = np.ascontiguousarray(prof_default, dtype=np.uint32)
        ekeys = np.ascontiguousarray(entry_keys, dtype=np.uint64)
        emaps = np.ascontiguousarray(entry_maps, dtype=np.uint32)
        mp = np.ascontiguousarray(maps, dtype=MAP_DTYPE)
        ss = np.ascontiguousarray(seg_start, dtype=np.uint32)
        sd = np.ascontiguousarray(seg_dec, dtype=np.uint16)
        da = np.ascontiguousarray(dec_allow, dtype=np.uint8)
        n_maps, n_prof, n_dec = mp.shape[0], pdef.shape[0], da.shape[0]
        # every index the decision follows must land inside its table
        if n_dec < 1 or n_maps < 1:
            raise ValueError("policy tables need at least one decision and one map")
        if ss.shape[0] != sd.shape[0]:
            raise ValueError("seg_start and seg_dec differ in length")
        if (mp["n"] == 0).any() or int((mp["off"].astype(np.uint64) + mp["n"]).max()) > ss.shape[0]:
            raise ValueError("a map's segments lie outside the segment arrays")
        if ss.shape[0] and (ss[mp["off"]] != 0).any():
            raise ValueError("every map's first segment must start at key 0")
        if int(sd.max(initial=0)) >= n_dec:
            raise ValueError("a segment names a decision that does not exist")
        if int(pdef.max(initial=0)) >= n_maps or int(emaps.max(initial=0)) >= n_maps:
            raise ValueError("a profile or entry names a map that does not exist")
        prof = eps["profile"]
        if ((prof != NO_ID_VALUE) & (prof >= n_prof)).any():
            raise ValueError("an endpoint names a profile that does not exist")
        if a.shape[0]:
            local = a["endpoint"] != NO_ID_VALUE
            if (a["endpoint"][local] >= eps.shape[0]).any() or \
                    (a["self_map"][local] >= n_maps).any() or \
                    not np.isin(a["ip_ver"], (4, 6)).all():
                raise ValueError("an address names an endpoint or map that does not exist")
        if ekeys.shape[0] != emaps.shape[0] or (ekeys.shape[0] and
                                                 ((ekeys >> np.uint64(32)) >= n_prof).any()):
            raise ValueError("entries must name existing profiles, one map each")
        if (ekeys == POL_EMPTY_KEY).any():
            raise ValueError("an entry key equals the empty-slot marker")
        for x in (idents4, idents6):
            if len(x) and int(np.max(x)) >= n_identities:
                raise ValueError("a prefix names an identity that does not exist")
        if host_identity >= n_identities or (a.shape[0] and int(a["identity"].max()) >= n_identities):
            raise ValueError("an identity is out of range")
        # exact addresses: a compact hash per family, open addressing at load <= 2/3;
        # the self maps of local pods' addresses go to their endpoints
        n = a.shape[0]
        n4 = int((a["ip_ver"] == 4).sum())
        tab4_a = np.zeros(_pow2(3 * n4 // 2 + 1), dtype=ADDR4_DTYPE)
        tab6_a = np.zeros(_pow2(3 * (n - n4) // 2 + 1), dtype=ADDR6_DTYPE)
        tab4 = <pol_addr4_t*>cnp.PyArray_DATA(tab4_a)
        tab6 = <pol_addr6_t*>cnp.PyArray_DATA(tab6_a)
        src = <const pol_addr_t*>cnp.PyArray_DATA(a)
        self.t.addrs4, self.t.mask4 = tab4, <uint32_t>(tab4_a.shape[0] - 1)
        self.t.addrs6, self.t.mask6 = tab6, <uint32_t>(tab6_a.shape[0] - 1)
        eps["self_map"] = 0
        for i in range(n):
            if _addr_find(&self.t, src[i].ip_ver, src[i].a4, src[i].a6, &ident, &ep):
                raise ValueError(f"address {i} appears twice")
            slot = <uint32_t>_addr_hash(src[i].ip_ver, src[i].a4, src[i].a6)
            if src[i].ip_ver == 4:
                slot &= self.t.mask4
                while tab4[slot].flags & PA_USED:
                    slot = (slot + 1) & self.t.mask4
                tab4[slot].a4 = src[i].a4
                tab4[slot].identity = src[i].identity
                tab4[slot].endpoint = src[i].endpoint
                tab4[slot].flags = PA_USED | src[i].flags
            else:
                slot &= self.t.mask6
                while tab6[slot].flags & PA_USED:
                    slot = (slot + 1) & self.t.mask6
                memcpy(tab6[slot].a6, src[i].a6, 16)
                tab6[slot].identity = src[i].identity
                tab6[slot].endpoint = src[i].endpoint
                tab6[slot].flags = PA_USED | src[i].flags
            if src[i].endpoint != NO_ID:
                eps["self_map"][src[i].endpoint, 0 if src[i].ip_ver == 4 else 1] = \
                    (src[i].self_map[0], src[i].self_map[1])
        # (profile, identity) entries
        n = ekeys.shape[0]
        ent_buf = np.full((_pow2(2 * n) if n else 1) * sizeof(pol_entry_t), 0xFF, dtype=np.uint8)
        ent = <pol_entry_t*>cnp.PyArray_DATA(ent_buf)
        self.t.entries = ent if n else NULL
        self.t.entry_mask = <uint32_t>((_pow2(2 * n) if n else 1) - 1)
        ek = <const uint64_t*>cnp.PyArray_DATA(ekeys)
        em = <const uint32_t*>cnp.PyArray_DATA(emaps)
        for i in range(n):
            slot = <uint32_t>mix64(ek[i]) & self.t.entry_mask
            while ent[slot].key != POL_EMPTY_KEY:
                if ent[slot].key == ek[i]:
                    raise ValueError("duplicate (profile, identity) entry")
                slot = (slot + 1) & self.t.entry_mask
            ent[slot].key = ek[i]
            ent[slot].map = em[i]
        self.t.n_eps = <uint32_t>eps.shape[0]
        self.t.eps = <pol_endpoint_t*>cnp.PyArray_DATA(eps)
        self.t.n_profiles = <uint32_t>n_prof
        self.t.n_maps = <uint32_t>n_maps
        self.t.prof_default = <uint32_t*>cnp.PyArray_DATA(pdef)
        self.t.maps = <pol_map_t*>cnp.PyArray_DATA(mp)
        self.t.seg_start = <uint32_t*>cnp.PyArray_DATA(ss)
        self.t.seg_dec = <uint16_t*>cnp.PyArray_DATA(sd)
        self.t.dec_allow = <uint8_t*>cnp.PyArray_DATA(da)
        self.t.host_identity = host_identity
        self.t.n_identities = n_identities
        from kdp._fast.lpm import Lpm4 as _L4
        from kdp._fast.lpm6 import Lpm6 as _L6
        self.lpm4 = _L4.build(np.asarray(prefixes4, dtype=np.uint32), np.asarray(lengths4, dtype=np.uint8),
                              np.asarray(idents4, dtype=np.uint32))
        p6 = np.asarray(prefixes6, dtype=np.uint8).reshape(-1, 16)
        self.lpm6 = _L6.build(p6, np.asarray(lengths6, dtype=np.uint8), np.asarray(idents6, dtype=np.uint32))
        self._arrays = (tab4_a, tab6_a, ent_buf, eps, pdef, mp, ss, sd, da)
        _generation += 1
        self.generation = _generation
        self.t.generation = _generation

    @property
    def n_identities(self):
        return self.t.n_identities

    def memory(self):
        """Bytes of the compiled tables: {part: bytes}, and "total"."""
        names = ("IPv4 addresses", "IPv6 addresses", "entries", "endpoints", "profiles", "maps",
                 "segment starts", "segment decisions", "decisions")
        out = {name: int(arr.nbytes) for name, arr in zip(names, self._arrays)}
        out["prefixes (LPM)"] = int(self.lpm4.memory()["total"] + self.lpm6.memory()["total"])
        out["total"] = sum(out.values())
        return out

    def decide(self, src, dst, proto, port=0, via_service=False, from_host=False):
        """(reason, egress decision, ingress decision) for one new flow: addresses as
        strings or ipaddress objects (dst after DNAT), reason 0 when allowed."""
        import ipaddress
        s = ipaddress.ip_address(src)
        d = ipaddress.ip_address(dst)
        if s.version != d.version:
            raise ValueError("source and destination differ in IP version")
        cdef uint8_t s6[16]
        cdef uint8_t d6[16]
        cdef uint16_t eg = 0, ing = 0, reason
        cdef uint32_t s4 = 0, d4 = 0
        memset(s6, 0, 16)
        memset(d6, 0, 16)
        if s.version == 4:
            s4, d4 = int(s), int(d)
        else:
            memcpy(s6, <const char*>s.packed, 16)
            memcpy(d6, <const char*>d.packed, 16)
        reason = _decide(self, s.version, s4, s6, d4, d6, <uint8_t>proto, <uint16_t>port,
                         bool(via_service), bool(from_host), &eg, &ing)
        return reason, eg, ing

    def decide_many(self, ip_ver, src4, dst4, src6, dst6, proto, port, via_service, from_host):
        """Bulk decide over numpy columns (src6/dst6: (n, 16) uint8). Returns
        (reason uint16[n], egress uint16[n], ingress uint16[n])."""
        cdef Py_ssize_t i, n = len(ip_ver)
        cdef const uint8_t[::1] v = np.ascontiguousarray(ip_ver, dtype=np.uint8)
        cdef const uint32_t[::1] s4 = np.ascontiguousarray(src4, dtype=np.uint32)
        cdef const uint32_t[::1] d4 = np.ascontiguousarray(dst4, dtype=np.uint32)
        cdef const uint8_t[:, ::1] s6 = np.ascontiguousarray(src6, dtype=np.uint8).reshape(n, 16)
        cdef const uint8_t[:, ::1] d6 = np.ascontiguousarray(dst6, dtype=np.uint8).reshape(n, 16)
        cdef const uint8_t[::1] pr = np.ascontiguousarray(proto, dtype=np.uint8)
        cdef const uint16_t[::1] pt = np.ascontiguousarray(port, dtype=np.uint16)
        cdef const uint8_t[::1] via = np.ascontiguousarray(via_service, dtype=np.uint8)
        cdef const uint8_t[::1] host = np.ascontiguousarray(from_host, dtype=np.uint8)
        if not (s4.shape[0] == d4.shape[0] == pr.shape[0] == pt.shape[0] == via.shape[0]
                == host.shape[0] == n):
            raise ValueError("every column needs one value per flow")
        reason = np.zeros(n, dtype=np.uint16)
        eg = np.zeros(n, dtype=np.uint16)
        ing = np.zeros(n, dtype=np.uint16)
        cdef uint16_t[::1] r = reason
        cdef uint16_t[::1] e = eg
        cdef uint16_t[::1] g = ing
        if n == 0:
            return reason, eg, ing
        with nogil:
            for i in range(n):
                r[i] = _decide(self, v[i], s4[i], &s6[i, 0], d4[i], &d6[i, 0], pr[i], pt[i],
                               via[i] != 0, host[i] != 0, &e[i], &g[i])
        return reason, eg, ing


cdef class FlowPolicy:
    """The policy verdict of every flow id (see policy.pxd), for re-checking
    established flows when the tables change."""

    def __init__(self, uint32_t capacity):
        self._array = np.zeros(max(capacity, 1), dtype=np.uint32)
        self.state = <uint32_t*>cnp.PyArray_DATA(self._array)
        self.capacity = capacity

    def state_of(self, uint32_t fid):
        """(generation, from_host, denied: 0 / 1 egress / 2 ingress) of flow fid."""
        if fid >= self.capacity:
            raise IndexError(fid)
        st = int(self.state[fid])
        return st >> ST_GEN_SHIFT, bool(st & ST_FROM_HOST), st & ST_DENIED_MASK
