# cython: boundscheck=False, wraparound=False
"""Runs one batch through the stages, in order, and counts the outcome.

  parse -> neighbour learning -> decap (tunnels to this node) -> ingress classification
        and martian checks -> DNS (queries to the cluster DNS addresses answered in place)
        -> conntrack lookup (fast path) -> [policy re-check of established flows, when asked]
        -> new flows (slow path: service match, backend, masquerade, reject; policy;
           natOutgoing; conntrack create) -> NAT -> route (TTL, MTU, ICMP answers)
        -> encap (tunnels, Ethernet addresses; fragments and TCP segments into `extra`)
        -> account -> bounded expiry

Every stage skips packets that already have a verdict. `account` adds each
packet once to counters[stage, reason] and verdicts[verdict], so the counters of
a run add up to the packets that came in.

Policy (kdp/_fast/policy.pyx) is decided once per flow in the slow path, after
the service stage chose the backend (ingress is judged on the backend pod and
port, egress on the post-DNAT destination) and before natOutgoing and conntrack
create the flow: a denied first packet creates no flow. Established, reply and
related packets pay nothing, unless `flow_policy` is set (NodeConfig
networkPolicy.establishedFlows: Recheck): then flows judged by older tables are
judged again at their next packet. Untracked IP packets (ct state none) are judged
one by one. DNS queries the DNS stage answers are the node's own service (as
NodeLocal DNSCache): they never reach a pod, and policy does not judge them.

IPv4 fragmentation makes packets the input did not have: the fragments after the
first of each split packet go to `extra` (a second batch, emptied at the start of
every run); the first stays in the packet's place and carries its verdict. They are
not input, so they are not in the counters: `fragments` counts them. TCP super-frames
from a TAP with TSO (kdp attach) bound for a tunnel are cut into segments the same way
(segment.pyx; `segments` counts the ones in `extra`). Whoever writes the batch's
transmitted packets writes `extra`'s after them.

Time: with packet_clock (replay) conntrack ages flows by each packet's own
timestamp, never running backwards, so a replay is reproducible; otherwise by
the caller's monotonic clock passed to run(). `clock_ns` is the newest time seen
(expiry runs on it between batches).

Tables are swapped whole between batches (`swap`): a batch never sees half of
a configuration change. Conntrack is not swapped: established flows keep their
translation across reloads.
"""
import numpy as np
cimport numpy as cnp
from libc.string cimport memset
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from kdp._fast.packet cimport (Batch, pkt_meta_t, drop, V_PENDING, V_REJECT, N_STAGES, N_REASONS, N_VERDICTS,
                               ST_TX, ST_SERVICE, ST_POLICY, R_NO_ROUTE, R_SVC_NO_ENDPOINTS, NO_ID, CT_NEW, CT_NONE, FRAG_LATER)
from kdp._fast.parse cimport parse_batch, DEFAULT_VXLAN_PORT
from kdp._fast.route cimport RouteTable
from kdp._fast.conntrack cimport (Conntrack, ct_key_t, ct_lookup_batch, ct_create, ct_expire,
                                  CT_PACKET_CLOCK,
                                  ct_find, ct_pkt_key, K_FLOW)
from kdp._fast.nat cimport nat_batch
from kdp._fast.service cimport (ServiceTables, svc_tables_t, aff_entry_t, svc_is_node_address, svc_match, svc_choose, svc_prefetch, SF_AFFINITY,
                                SVC_HIT, SVC_DROP, SVC_REJECT, SVC_MISS)
from kdp._fast.flow cimport nat_spec_t
from kdp._fast.reject cimport reject_port_unreachable
from kdp._fast.decap cimport TunnelEndpoints, parse_decap_batch
from kdp._fast.neigh cimport Neighbours, neigh_note_batch
from kdp._fast.encap cimport encap_batch, egress_one
from kdp._fast.frag cimport fragment_batch
from kdp._fast.segment cimport segment_batch
from kdp._fast.natout cimport NatOutgoing, natout_apply
from kdp._fast.decap cimport TunnelEndpoints, decap_batch
from kdp._fast.dns cimport DnsTable, dns_batch, dns_note_t, dns_q_t, N_DNS_COUNTERS
from kdp._fast.dns import NOTE_DTYPE
from kdp._fast.policy cimport PolicyTables, FlowPolicy, pol_decide, pol_flow_created, pol_recheck_batch
from kdp._fast.shard cimport (ShardPlan, shard_key, start_view, SHARD_FIRST, V_ELSEWHERE, U_REPLY_SHARD,
                              U_AFFINITY)
from kdp._fast.ct_table cimport ct_flow_t

cnp.import_array()

#: columns of Pipeline.service_counters
SERVICE_COUNTER_NAMES = ("packets", "new_flows", "rejects")

cdef enum:
    SC_PACKETS = 0          # packets of the service-port's flows (or that it rejected), both ways
    SC_NEW_FLOWS = 1        # flows it created
    SC_REJECTS = 2          # packets it rejected (no endpoints: ICMP port unreachable / TCP RST)
    N_SC = 3
    EXPIRE_WORK = 512       # flow records the expiry hand examines per batch
    HOST_PORT = 1           # kdp.ports.HOST: packets the node itself sends


cdef class Pipeline:
    def __init__(self, RouteTable routes not None, ServiceTables services=None,
                 Conntrack conntrack=None, uint16_t vxlan_port=DEFAULT_VXLAN_PORT,
                 bint packet_clock=True, TunnelEndpoints tunnels=None, DnsTable dns=None,
                 NatOutgoing natout=None, PolicyTables policy=None, bint recheck=False):
        if policy is not None and conntrack is None:
            raise ValueError("network policy is decided per flow: it needs conntrack")
        self.counters = np.zeros((N_STAGES, N_REASONS), dtype=np.uint64)
        self.verdicts = np.zeros(N_VERDICTS, dtype=np.uint64)
        self.ctr = <uint64_t*>cnp.PyArray_DATA(self.counters)
        self.vctr = <uint64_t*>cnp.PyArray_DATA(self.verdicts)
        self.vxlan_port = vxlan_port
        self.routes = routes
        self.services = services
        self._new_service_counters()
        self.conntrack = conntrack
        self.tunnels = tunnels
        self.natout = natout
        self.policy = policy
        self.flow_policy = None
        self.set_recheck(recheck)
        self.neighbours = Neighbours()
        self.extra = Batch(1)
        self.fragments = 0
        self.segments = 0
        self.packet_clock = packet_clock
        self.packets = 0
        self.clock_ns = 0
        self.nf_scratch = np.zeros(0, dtype=np.uint8)
        self.nf = NULL
        self.dns = dns
        self.dns_counters = np.zeros(N_DNS_COUNTERS, dtype=np.uint64)
        self.dns_notes = np.zeros(0, dtype=NOTE_DTYPE)
        self.dns_scratch = np.zeros(0, dtype=np.uint8)
        self.natout_flows = 0
        self.expire_work = EXPIRE_WORK
        self.shard = None

    def set_shard(self, ShardPlan plan, int me):
        """Process only the packets of worker `me` of `plan` (kdp/shards.py): the others
        are parsed (their neighbour notes are learned) and then left alone, uncounted."""
        if plan is not None and not 0 <= me < plan.workers:
            raise ValueError(f"worker {me} of {plan.workers}")
        self.shard = plan
        self.shard_me = me
        # the expiry hand's work a batch, shared out: each worker holds a share of the flows
        # (what it finds changes no outcome: expired flows are gone to every lookup, and a
        # replay ends with Conntrack.expire_all)
        self.expire_work = EXPIRE_WORK // plan.workers if plan is not None else EXPIRE_WORK
        self._own_affinity()

    def _own_affinity(self):
        # a sharded worker's affinity entries are its own: the shared table stays empty
        self.aff_own = None
        if self.shard is None or self.services is None:
            return
        self.st_own = self.services.t
        self.aff_own = np.zeros((self.st_own.aff_mask + 1) * sizeof(aff_entry_t), dtype=np.uint8)
        self.st_own.aff = <aff_entry_t*>cnp.PyArray_DATA(self.aff_own)

    def _ensure_scratch(self, Py_ssize_t n):
        if self.nf_scratch.shape[0] < n * <Py_ssize_t>sizeof(new_flow_t):
            self.nf_scratch = np.zeros(n * sizeof(new_flow_t), dtype=np.uint8)
        self.nf = <new_flow_t*>cnp.PyArray_DATA(self.nf_scratch)
        if self.dns is not None and self.dns_notes.shape[0] < n:
            self.dns_notes = np.zeros(n, dtype=NOTE_DTYPE)
            self.dns_scratch = np.zeros(n * sizeof(dns_q_t), dtype=np.uint8)

    def swap(self, RouteTable routes not None, ServiceTables services=None,
             TunnelEndpoints tunnels=None, DnsTable dns=None, NatOutgoing natout=None,
             PolicyTables policy=None):
        """Swap in newly compiled tables (between batches). Conntrack and the
        learned neighbours stay: new flows see the new policy at once, established
        ones as set_recheck decided."""
        if policy is not None and self.conntrack is None:
            raise ValueError("network policy is decided per flow: it needs conntrack")
        self.routes = routes
        self.services = services
        self._new_service_counters()
        self.tunnels = tunnels
        self.dns = dns
        self.natout = natout
        self.policy = policy
        self._own_affinity()

    def _new_service_counters(self):
        """Zeroed per-service-port counters for the service tables in use (their ids are
        the tables': a swap numbers them anew, so whoever swaps reads the old ones first)."""
        cdef uint32_t n = self.services.t.n_svc if self.services is not None else 0
        self.service_counters = np.zeros((max(n, 1), N_SC), dtype=np.uint64)
        self.sctr = <uint64_t*>cnp.PyArray_DATA(self.service_counters)
        self.n_sctr = n

    def set_recheck(self, bint recheck):
        """Re-check established flows against newer policy tables at their next
        packet (True), or let them continue (False, the default, as Calico and Cilium)."""
        if not recheck:
            self.flow_policy = None
        elif self.flow_policy is None and self.conntrack is not None:
            # flows that exist already have no verdict yet: the next tables judge them
            self.flow_policy = FlowPolicy(self.conntrack.capacity)

    def swap_dns(self, DnsTable dns):
        """Swap in a new DNS zone alone (an endpoint update), between batches."""
        self.dns = dns

    cdef void new_flows(self, Batch b, PolicyTables pt, FlowPolicy fp) noexcept nogil:
        """The slow path, in packet order, for packets the fast path did not know.

        In order, so that a flow created by one packet is found by the next one of
        the same batch (ct_create looks up again before it inserts). Frontends are
        matched for the whole batch first, and the backend choice's memory is
        prefetched stage by stage, so its cache misses overlap. pt, fp: the
        pipeline's policy tables and flow verdicts (None: none), read with the GIL.
        """
        cdef Py_ssize_t i
        cdef pkt_meta_t* p
        cdef nat_spec_t spec
        cdef uint16_t reason = 0
        cdef int res, step
        cdef bint created = False, use_spec
        cdef svc_tables_t* st = NULL
        cdef new_flow_t* nf = self.nf
        cdef uint32_t fid
        if self.services is not None:
            # (sharded: this worker's affinity table; the other tables are the shared ones)
            st = &self.st_own if self.shard is not None else &self.services.t
            for i in range(b.count):
                p = &b.m[i]
                nf[i].res = SVC_MISS
                if (p.verdict == V_PENDING and p.ct_state == CT_NEW and p.frag != FRAG_LATER
                        and (p.proto == 6 or p.proto == 17 or p.proto == 132)):
                    nf[i].res = svc_match(st, p, &nf[i].svc, &nf[i].kind, &nf[i].reason)
                    if nf[i].res == SVC_HIT:
                        svc_prefetch(st, nf[i].svc, p, 0)
            for step in range(1, 4):
                for i in range(b.count):
                    if nf[i].res == SVC_HIT:
                        svc_prefetch(st, nf[i].svc, &b.m[i], step)
        for i in range(b.count):
            p = &b.m[i]
            if p.verdict != V_PENDING:
                continue
            if p.ct_state == CT_NONE:
                if p.quote_off != 0 and created:
                    # an ICMP error about a flow an earlier packet of this batch created:
                    # the fast path looked before the flow existed; ct_create looks again
                    # (it never creates a flow for an error)
                    ct_create(self.conntrack, b, i, NULL, self.ct_now)
                if pt is not None and p.ct_state == CT_NONE and p.verdict == V_PENDING:
                    # untracked (no flow to remember a verdict in): judged packet by packet
                    reason = pol_decide(pt, p, NULL)
                    if reason != 0:
                        drop(p, ST_POLICY, reason)
                continue
            if p.ct_state != CT_NEW:
                continue
            if created and self._known_now(b, p):
                # a reply (or repeat) of a flow an earlier packet of this batch created:
                # conntrack decides it, never the service frontends
                ct_create(self.conntrack, b, i, NULL, self.ct_now)
                continue
            res = SVC_MISS
            if st != NULL:
                res = nf[i].res
                reason = nf[i].reason
                if res == SVC_HIT and self.shard is not None and st.svc[nf[i].svc].flags & SF_AFFINITY \
                        and (not self.shard.affinity_split or svc_is_node_address(st, p.ip_ver, p.src4, p.src6)):
                    # an affinity table too small to give each shard its own buckets, or the
                    # node as the client (its flows are keyed by port: its entry would be
                    # every worker's): the replay starts again on one worker (this run's
                    # outcome is thrown away)
                    self.shard_unsafe |= U_AFFINITY
                    drop(p, ST_SERVICE, R_SVC_NO_ENDPOINTS)
                    continue
                if res == SVC_HIT:
                    p.svc_port = nf[i].svc          # the log and the counters name it, whatever it decides
                    res = svc_choose(st, nf[i].svc, nf[i].kind, p, &spec, &reason)
            if res == SVC_DROP:
                drop(p, ST_SERVICE, reason)
                continue
            if res == SVC_REJECT:
                reject_port_unreachable(b, p, ST_SERVICE, reason)
                continue
            if res == SVC_HIT:
                p.svc_port = spec.svc_port
            if pt is not None:
                # after the backend choice (judged on the backend), before the flow exists
                reason = pol_decide(pt, p, &spec if res == SVC_HIT else NULL)
                if reason != 0:
                    drop(p, ST_POLICY, reason)
                    continue
            use_spec = res == SVC_HIT
            if self.natout is not None and self.conntrack is not None:
                # Calico's natOutgoing, after kube-proxy's decision (POSTROUTING)
                if natout_apply(self.natout, p, &spec, use_spec):
                    use_spec = True
                    self.natout_flows += 1
            if self.conntrack is not None:
                fid = ct_create(self.conntrack, b, i, &spec if use_spec else NULL, self.ct_now)
                if fid != NO_ID:
                    created = True
                    if self.shard is not None:
                        self.shard_check_flow(i, fid)
                    if fp is not None:
                        pol_flow_created(pt, fp, fid, p.in_port == HOST_PORT)

    cdef bint _known_now(self, Batch b, pkt_meta_t* p) noexcept nogil:
        cdef ct_key_t k
        cdef int direction
        if ct_pkt_key(p, b.buf + p.off, &k) != K_FLOW:
            return False
        return ct_find(&self.conntrack.t, &k, &direction) != NO_ID

    cdef void shard_mark(self, Batch b) noexcept nogil:
        """Which packets of the view are this worker's (its virtual shards: run_view's
        view_vshards);
        the others (the ARP and ND every worker learns from) get V_ELSEWHERE (every stage
        skips a packet with a verdict) and are not counted here. (The replay's thread
        checked fragments and the clock when it keyed the batch: shard.assign.)"""
        cdef Py_ssize_t i
        cdef pkt_meta_t* p
        cdef uint8_t v
        for i in range(b.count):
            p = &b.m[i]
            v = self.vs[i]
            self.mine[i] = (self.shard.owner[v] if v < SHARD_FIRST else 0) == self.shard_me
            if not self.mine[i] and p.verdict == V_PENDING:
                p.verdict = V_ELSEWHERE

    cdef void shard_check_flow(self, Py_ssize_t i, uint32_t fid) noexcept nogil:
        """A flow packet i created must have its answers in the same shard."""
        cdef const ct_flow_t* f = &self.conntrack.t.flows[fid]
        cdef const uint8_t* a6 = <const uint8_t*>f.a6
        if shard_key(self.shard, f.ip_ver, f.proto, f.a4[2], a6 + 32, f.a4[3], a6 + 48,
                     f.port[2], f.port[3]) != self.vs[i]:
            self.shard_unsafe |= U_REPLY_SHARD

    cdef void account(self, Batch b) noexcept nogil:
        cdef Py_ssize_t i
        cdef pkt_meta_t* p
        cdef uint64_t* c
        cdef bint sharded = self.shard is not None
        cdef Py_ssize_t n = 0
        for i in range(b.count):
            if sharded and not self.mine[i]:
                continue
            n += 1
            p = &b.m[i]
            if p.verdict == V_PENDING:
                # no stage decided: nothing may leave undecided, so it is dropped here
                drop(p, ST_TX, R_NO_ROUTE)
            self.ctr[p.stage * N_REASONS + p.reason] += 1
            self.vctr[p.verdict] += 1
            if p.svc_port < self.n_sctr:            # (NO_ID never is)
                c = self.sctr + <Py_ssize_t>p.svc_port * N_SC
                c[SC_PACKETS] += 1
                if p.ct_state == CT_NEW and p.flow_id != NO_ID:
                    c[SC_NEW_FLOWS] += 1
                if p.verdict == V_REJECT:
                    c[SC_REJECTS] += 1
        self.packets += n

    def parse(self, Batch b not None):
        """The parse stage alone (with the tunnels' decapsulation): for `run(b, parsed=True)`
        in other pipelines (kdp/shards.py parses a batch once, before its workers write
        any packet's bytes)."""
        with nogil:
            self._parse(b)

    cdef void _parse(self, Batch b) noexcept nogil:
        if self.tunnels is not None:
            parse_decap_batch(b, self.vxlan_port, self.tunnels)     # parse and decap, one pass
        else:
            parse_batch(b, self.vxlan_port)

    cdef void _advance_clock(self, Batch b, uint64_t now_ns) noexcept nogil:
        """The clock conntrack gets for this batch: in a replay (packet_clock) each
        packet's own timestamp, expiry at the newest seen; live, the caller's now_ns."""
        cdef Py_ssize_t i
        if self.packet_clock:
            self.ct_now = CT_PACKET_CLOCK
            for i in range(b.count):
                if b.m[i].ts_ns > self.clock_ns:
                    self.clock_ns = b.m[i].ts_ns
        else:
            if now_ns > self.clock_ns:
                self.clock_ns = now_ns
            self.ct_now = self.clock_ns

    cdef Py_ssize_t _stages(self, Batch b, uint64_t* dns_ctr, dns_note_t* notes, dns_q_t* dq,
                            object trace) except -1 nogil:
        """The stages after ingress, in order: DNS, conntrack (and policy's recheck of
        established flows), new flows (Service, policy, NAT choice), NAT, route and
        encapsulation. One place for run and run_view, so that a sharded replay's worker
        runs exactly what one pipeline runs. `trace` (None: untraced) is shown the batch
        after each stage (an exception it raises ends the run). Returns the packets
        fragmentation and segmentation will add."""
        cdef uint32_t need = 0
        cdef bint tracing = trace is not None
        if self.dns is not None:
            dns_batch(self.dns, b, dns_ctr, notes, dq)
            if tracing:
                with gil:
                    trace.snap("dns", b)
        if self.conntrack is not None:
            ct_lookup_batch(self.conntrack, b, self.ct_now)
            if self.flow_policy is not None and self.policy is not None:
                pol_recheck_batch(self.policy, self.flow_policy, self.conntrack, b)
            if tracing:
                with gil:
                    trace.snap("conntrack", b)
        self.new_flows(b, self.policy, self.flow_policy)
        if tracing:
            with gil:
                trace.snap("new flow", b)
        if self.conntrack is not None:
            nat_batch(self.conntrack, b)
            if tracing:
                with gil:
                    trace.snap("nat", b)
        if self.routes.route_batch(b, self.neighbours, egress_one):
            need = encap_batch(self.routes, self.neighbours, b, True)
        if tracing:
            with gil:
                trace.snap("route", b)
        return need

    def run_view(self, Batch view not None, Batch base not None, who, vshards, index, view_vshards,
                 mine, notes):
        """A sharded replay's worker, one batch (kdp/shards.py): shard.start_view (this
        worker's packets of `base`, the batch the replay's thread read, parsed and keyed,
        into `view`; their input places into `index`, their virtual shards into
        `view_vshards`), then what run(view, parsed=True) does, with the GIL released
        once for both rather than at each step (a worker that takes the GIL back often
        waits for the replay's thread, and wakes it). `mine` (uint8 per view packet) gets
        which packets this worker processed, `notes` (dns.NOTE_DTYPE per
        packet; None without a DNS stage) the DNS stage's notes. The stages are run's
        (Pipeline._stages: one place for both), untraced and without a log (the sharding
        tests compare them, 1 worker against 2 and 3, byte for byte). Returns the view's
        count."""
        cdef RouteTable routes = self.routes
        cdef Conntrack ct = self.conntrack
        cdef Neighbours neigh = self.neighbours
        cdef DnsTable dns = self.dns
        cdef Py_ssize_t n, made = 0
        cdef uint32_t need = 0
        cdef uint64_t* dns_ctr = <uint64_t*>cnp.PyArray_DATA(self.dns_counters)
        cdef dns_note_t* note_p = NULL
        cdef dns_q_t* dq = NULL
        if self.shard is None:
            raise ValueError("run_view is for a sharded pipeline (set_shard)")
        if view.buf != base.buf or view.capacity < base.count:
            raise ValueError("the view does not share the batch's buffer, or holds fewer packets")
        for arr, itemsize in ((who, 1), (vshards, 1), (index, 4), (view_vshards, 1), (mine, 1)):
            if not isinstance(arr, np.ndarray) or not arr.flags.c_contiguous or arr.itemsize != itemsize \
                    or arr.shape[0] < view.capacity:
                raise ValueError("who, vshards, index, view_vshards and mine: contiguous arrays of the view's capacity")
        routes._ensure_scratch(view.capacity)
        self._ensure_scratch(view.capacity)
        neigh.ensure_notes(view.capacity)
        self.extra.clear()
        self.vs = <uint8_t*>cnp.PyArray_DATA(view_vshards)
        self.mine = <uint8_t*>cnp.PyArray_DATA(mine)
        if dns is not None:
            if notes is None or notes.dtype != NOTE_DTYPE or notes.shape[0] < view.capacity \
                    or not notes.flags.c_contiguous:
                raise ValueError("a DNS stage's notes: a contiguous NOTE_DTYPE array of the view's capacity")
            note_p = <dns_note_t*>cnp.PyArray_DATA(notes)
            dq = <dns_q_t*>cnp.PyArray_DATA(self.dns_scratch)
        cdef const uint8_t* who_p = <const uint8_t*>cnp.PyArray_DATA(who)
        cdef const uint8_t* vs_p = <const uint8_t*>cnp.PyArray_DATA(vshards)
        cdef uint32_t* index_p = <uint32_t*>cnp.PyArray_DATA(index)
        with nogil:
            n = start_view(view, base, self.shard_me, self.shard.workers, who_p, vs_p, index_p, self.vs)
            neigh_note_batch(neigh, view)
            self.shard_mark(view)
            routes.classify_ingress(view)
            self._advance_clock(view, 0)
            need = self._stages(view, dns_ctr, note_p, dq, None)
            if need == 0:
                self.account(view)
                if ct is not None:
                    ct_expire(ct, self.clock_ns, self.expire_work)
        if need:
            if self.extra.capacity < need:
                self.extra = Batch(max(<Py_ssize_t>need, 2 * self.extra.capacity))
            with nogil:
                made = fragment_batch(routes, neigh, view, self.extra)
                self.segments += segment_batch(routes, neigh, view, self.extra)
                self.account(view)
                if ct is not None:
                    ct_expire(ct, self.clock_ns, self.expire_work)
            self.fragments += made
        return n

    def run(self, Batch b not None, log=None, uint64_t now_ns=0, trace=None, bint parsed=False):
        """Process one batch in place (`parsed`: parse ran already, Pipeline.parse).

        `log`, when given, is handed the tuples as received (before NAT).
        `now_ns` is the clock when packet_clock is False (attached mode).
        `trace` (kdp.trace.Tracer), when given, is shown the batch after every stage
        (trace.snap(stage name, batch)); without it the stages run as one (a test a stage).
        (run_view runs the same stages, Pipeline._stages, for a sharded replay's worker.)
        """
        cdef RouteTable routes = self.routes
        cdef Conntrack ct = self.conntrack
        cdef Neighbours neigh = self.neighbours
        cdef DnsTable dns = self.dns
        cdef Py_ssize_t made = 0
        cdef uint32_t need
        cdef uint64_t* dns_ctr = <uint64_t*>cnp.PyArray_DATA(self.dns_counters)
        cdef dns_note_t* notes = NULL
        cdef dns_q_t* dq = NULL
        cdef bint tracing = trace is not None
        if self.shard is not None:
            raise ValueError("a sharded pipeline runs its views with run_view")
        routes._ensure_scratch(b.capacity)
        self._ensure_scratch(b.capacity)
        neigh.ensure_notes(b.capacity)
        self.extra.clear()
        if dns is not None:
            notes = <dns_note_t*>cnp.PyArray_DATA(self.dns_notes)
            dq = <dns_q_t*>cnp.PyArray_DATA(self.dns_scratch)
        if tracing:
            trace.snap("rx", b)
        with nogil:
            if not parsed:
                self._parse(b)
            if tracing:
                with gil:
                    trace.snap("parse", b)
            neigh_note_batch(neigh, b)           # learned as route reaches each packet
            routes.classify_ingress(b)
            if tracing:
                with gil:
                    trace.snap("ingress", b)
            self._advance_clock(b, now_ns)
        if log is not None:
            log.capture_orig(b)
            log.capture_dns(self.dns_notes if dns is not None else None)
        with nogil:
            need = self._stages(b, dns_ctr, notes, dq, trace)
        if need:
            if self.extra.capacity < need:
                self.extra = Batch(max(<Py_ssize_t>need, 2 * self.extra.capacity))
            with nogil:
                made = fragment_batch(routes, neigh, b, self.extra)
                self.segments += segment_batch(routes, neigh, b, self.extra)
            self.fragments += made
        with nogil:
            self.account(b)
            if ct is not None:
                ct_expire(ct, self.clock_ns, self.expire_work)
        if tracing:
            trace.snap("tx", b)
