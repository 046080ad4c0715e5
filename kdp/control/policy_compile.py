"""Compiling network policies into the tables of kdp._fast.policy.

The per-packet cost must not depend on the number of policies, so everything
that does is done here, once per snapshot:

1. Subjects: which policies apply to each local pod, per direction and tier
   (label selectors evaluated in bulk, kdp.control.selectors.LabelIndex).
   The ordered rule list of a pod and direction is its *profile*; pods with the
   same rules (and, for ingress with named ports, the same container ports)
   share one.
2. Identities: every peer of those rules is a predicate on addresses (pods by
   namespace and pod labels, CIDRs with exceptions, node addresses). Addresses
   that every predicate answers alike form one identity (as Cilium's security
   identities, but derived from what the policies ask, so never finer than
   needed). Exact addresses (pods, nodes) are hashed; every other address gets
   the identity of its longest matching prefix among the CIDRs and exceptions
   the rules name (plus /0), which decides every CIDR predicate for it.
   The identity also carries whether the address is this node's and, for
   egress named ports, the container ports of the pod behind it.
3. Decision maps: for each (profile, identity) the tiers are evaluated over
   the whole (protocol, port) key space into segments of equal decision;
   identities with the same matching rules share a map, the commonest map of
   a profile is its default and only the others are stored.

The decisions are labels for the verdict log ("allow: NetworkPolicy shop/web
ingress[0]"); kdp.reference.policy is the plain definition this compile must
agree with (tests compare them flow by flow).
"""
from __future__ import annotations

import time

import numpy as np

from kdp._fast import policy as fast
from kdp.control import addr
from kdp.control.policy import (LABEL_NODE, LABEL_SELF, TIER_ADMIN, TIER_BASELINE, TIER_NP,
                                all_policies, isolation_decision, live_pods, namespace_labels,
                                node_addresses, rule_decision)
from kdp.control.selectors import LabelIndex
from kdp.errors import ConfigError

NO_ID = fast.NO_ID_VALUE
KEY_LIMIT = int(fast.KEY_LIMIT)
_CLASS = fast.PROTOCOL_CLASS
DIRECTIONS = ("egress", "ingress")
_DIR_INDEX = {"egress": fast.EGRESS, "ingress": fast.INGRESS}
MAX_DECISIONS = 0xFFFF


class CompiledPolicy:
    """The policy tables of one node and what they were made from.

    `tables` (kdp._fast.policy.PolicyTables) is what the pipeline uses;
    `decisions[i]` is the label of decision i (None: no policy decided);
    `endpoints` the local pods in endpoint order; `views[(endpoint, direction)]`
    the tiers that apply there (kdp show policy)."""

    def __init__(self, tables, decisions, allow, endpoints, views, stats):
        self.tables = tables
        self.decisions = decisions
        self.allow = allow
        self.endpoints = endpoints
        self.views = views
        self.stats = stats

    def decide(self, src, dst, proto, port=0, via_service=False, from_host=False):
        """(allowed, egress label, ingress label) for one new flow (dst after DNAT)."""
        reason, eg, ing = self.tables.decide(src, dst, proto, port, via_service, from_host)
        return reason == 0, self.decisions[eg], self.decisions[ing]

    def view(self, pod=None):
        """Per local pod ("namespace/name"; `pod` picks one): for each direction whether
        NetworkPolicy isolates it, every rule that applies, tier by tier in evaluation
        order, and what happens to a flow no rule decides (kdp show policy)."""
        out = []
        for j, p in enumerate(self.endpoints):
            name = f"{p.namespace}/{p.name}"
            if pod is not None and name != pod:
                continue
            entry = {"pod": name, "addresses": [addr.format_ip(ip) for ip in p.ips]}
            for d in DIRECTIONS:
                pols = self.views.get((j, d), [])
                isolating = [q for q in pols if q.tier == TIER_NP]
                rules = []
                for q in pols:
                    for r in q.rules(d):
                        rules.append({
                            "tier": q.tier, "policy": q.ref, "priority": q.priority if q.tier != TIER_NP else None,
                            "rule": r.index, "name": r.name or None, "action": r.action,
                            "peers": None if r.peers is None else [x.describe() for x in r.peers],
                            "ports": None if r.ports is None else [_port_text(x, d, p) for x in r.ports]})
                entry[d] = {"isolated": bool(isolating),
                            "isolatedBy": [q.ref for q in isolating],
                            "rules": rules,
                            "otherwise": "deny" if isolating else "allow"}
            out.append(entry)
        return out


def _port_text(pm, direction, pod):
    """A port of a rule; an ingress named port with the number it has on `pod`."""
    text = pm.describe()
    if pm.name is not None and direction == "ingress":
        nums = [num for n, proto, num in pod.ports if n == pm.name and pm.protocol in (None, proto)]
        text += f" ({', '.join(map(str, nums))})" if nums else " (not on this pod)"
    return text


class _Decisions:
    def __init__(self):
        self.labels = [None]
        self.allow = [1]
        self._ids = {None: 0}

    def id(self, label, allow):
        i = self._ids.get(label)
        if i is None:
            i = len(self.labels)
            if i > MAX_DECISIONS - 1:
                raise ConfigError(f"network policies: more than {MAX_DECISIONS - 1:,} distinct decisions "
                                  "(rules and isolating sets) apply on this node")
            self._ids[label] = i
            self.labels.append(label)
            self.allow.append(1 if allow else 0)
        return i


def _v6_halves(ints):
    ints = list(ints)
    hi = np.array([v >> 64 for v in ints], dtype=np.uint64)
    lo = np.array([v & 0xFFFFFFFFFFFFFFFF for v in ints], dtype=np.uint64)
    return hi, lo


def _contains(prefix, v4, v6hi, v6lo):
    """bool over the addresses (v4: uint32 array of the IPv4 ones; v6: halves): in prefix?"""
    ver, net, plen = prefix
    if ver == 4:
        mask = np.uint32(((1 << 32) - 1) ^ ((1 << (32 - plen)) - 1)) if plen else np.uint32(0)
        return (v4 & mask) == np.uint32(net & int(mask)), None
    m = ((1 << 128) - 1) ^ ((1 << (128 - plen)) - 1)
    mh, ml = np.uint64(m >> 64), np.uint64(m & 0xFFFFFFFFFFFFFFFF)
    nh, nl = np.uint64((net & m) >> 64), np.uint64(net & m & 0xFFFFFFFFFFFFFFFF)
    return None, ((v6hi & mh) == nh) & ((v6lo & ml) == nl)


def _prefix_inside(inner, outer):
    return inner[0] == outer[0] and inner[2] >= outer[2] and addr.prefix_contains(outer, (inner[0], inner[1]))


class _Compiler:
    def __init__(self, cluster):
        self.cluster = cluster
        self.pols = all_policies(cluster)
        self.pods = live_pods(cluster)
        self.owner = {}
        for i, p in enumerate(self.pods):
            for ip in p.ips:
                self.owner.setdefault(ip, i)
        names = {p.namespace for p in self.pods} | set(cluster.namespaces)
        self.ns_names = sorted(names)
        self.ns_id = {n: i for i, n in enumerate(self.ns_names)}
        self.ns_index = LabelIndex([namespace_labels(cluster, n) for n in self.ns_names])
        self.pod_ns = np.array([self.ns_id[p.namespace] for p in self.pods], dtype=np.intp)
        self.pod_index = LabelIndex([p.labels for p in self.pods])
        self.local = [i for i, p in enumerate(self.pods) if p.node_name == cluster.node]
        self.decisions = _Decisions()

    # ---------------------------------------------------------- selection

    def _ns_mask(self, sel):
        return self.ns_index.match(sel)[self.pod_ns] if len(self.pods) else np.zeros(0, bool)

    def _subject_mask(self, pol, idx):
        pods = self.pod_index.match(pol.subject_pods)[idx]
        if pol.tier == TIER_NP:
            return pods & (self.pod_ns[idx] == self.ns_id.get(pol.namespace, -1))
        return pods & self.ns_index.match(pol.subject_namespaces)[self.pod_ns[idx]]

    def _peer_pods(self, peer):
        pods = self.pod_index.match(peer.pods)
        if peer.namespaces is None:
            return pods & (self.pod_ns == self.ns_id.get(peer.namespace, -1))
        return pods & self._ns_mask(peer.namespaces)

    # ---------------------------------------------------------- profiles

    def profiles(self):
        """Per direction: endpoint -> profile id, and the profiles' rule lists."""
        local = np.asarray(self.local, dtype=np.intp)
        tier_rank = {TIER_ADMIN: 0, TIER_NP: 1, TIER_BASELINE: 2}
        pols = sorted(self.pols, key=lambda p: (tier_rank[p.tier], p.order()))
        self.ep_profile = {d: [NO_ID] * len(self.local) for d in DIRECTIONS}
        self.profile_list = []          # [(direction, [(tier, policy, rule)], isolating, ports)]
        self.views = {}
        keys = {}
        for d in DIRECTIONS:
            applying = [p for p in pols if p.rules(d) is not None]
            if not applying or not len(local):
                continue
            masks = np.stack([self._subject_mask(p, local) for p in applying])
            for j in range(len(self.local)):
                sel = [applying[k] for k in np.nonzero(masks[:, j])[0]]
                if not sel:
                    continue
                pod = self.pods[self.local[j]]
                rules = [(p.tier, p, r) for p in sel for r in p.rules(d)]
                isolating = [p for p in sel if p.tier == TIER_NP]
                named = d == "ingress" and any(pm.name for _t, _p, r in rules for pm in (r.ports or ()))
                ports = tuple(sorted(pod.ports)) if named else ()
                key = (d, tuple(p.key for p in sel), ports)
                pid = keys.get(key)
                if pid is None:
                    pid = keys[key] = len(self.profile_list)
                    self.profile_list.append((d, rules, isolating, ports))
                self.ep_profile[d][j] = pid
                self.views[(j, d)] = sel

    # ---------------------------------------------------------- identities

    def identities(self):
        cluster = self.cluster
        peers = {}
        egress_names = set()
        for d, rules, _iso, _ports in self.profile_list:
            for _t, _p, r in rules:
                for peer in r.peers or ():
                    if peer.kind != "none":
                        peers.setdefault(peer, len(peers))
                if d == "egress":
                    egress_names.update(pm.name for pm in (r.ports or ()) if pm.name)
        pod_peers = [p for p in peers if p.kind == "pods"]
        cidr_peers = [p for p in peers if p.kind == "cidr"]
        node_peers = [p for p in peers if p.kind == "nodes"]
        self.peers = pod_peers + cidr_peers + node_peers        # the identity columns, in order
        self.peer_col = {p: k for k, p in enumerate(self.peers)}

        # exact addresses: pods (their owners), then node addresses
        local_node = set(cluster.config.node_addresses)
        entries = [(ip, i) for ip, i in self.owner.items()]
        nodes_of = {}
        for name, ips in node_addresses(cluster).items():
            for ip in ips:
                nodes_of.setdefault(ip, []).append(name)
        for ip in sorted(set(nodes_of) | local_node):
            if ip not in self.owner:
                entries.append((ip, None))
        self.exact = entries
        n = len(entries)
        vers = np.array([ip[0] for ip, _ in entries], dtype=np.uint8)
        is4 = vers == 4
        v4 = np.array([ip[1] for ip, _ in entries if ip[0] == 4], dtype=np.uint32)
        v6hi, v6lo = _v6_halves(ip[1] for ip, _ in entries if ip[0] == 6)
        pod_of = np.array([-1 if i is None else i for _ip, i in entries], dtype=np.intp)
        has_pod = pod_of >= 0

        cols = []
        for peer in pod_peers:
            m = np.zeros(n, dtype=bool)
            if len(self.pods):
                m[has_pod] = self._peer_pods(peer)[pod_of[has_pod]]
            cols.append(m)
        for peer in cidr_peers:
            m4, _ = _contains(peer.cidr, v4, None, None) if peer.cidr[0] == 4 else (None, None)
            _, m6 = _contains(peer.cidr, None, v6hi, v6lo) if peer.cidr[0] == 6 else (None, None)
            for e in peer.excepts:
                if e[0] == 4 and m4 is not None:
                    m4 = m4 & ~_contains(e, v4, None, None)[0]
                elif e[0] == 6 and m6 is not None:
                    m6 = m6 & ~_contains(e, None, v6hi, v6lo)[1]
            m = np.zeros(n, dtype=bool)
            if m4 is not None:
                m[is4] = m4
            if m6 is not None:
                m[~is4] = m6
            cols.append(m)
        node_ips = {}
        for peer in node_peers:
            sel = {name for name, nd in cluster.nodes.items() if peer.nodes.matches(nd.labels)}
            cols.append(np.array([pod_of[k] < 0 and any(nm in sel for nm in nodes_of.get(ip, ()))
                                  for k, (ip, _i) in enumerate(entries)], dtype=bool))
        ncols = len(cols)
        flag = np.array([ip in local_node for ip, _ in entries], dtype=bool)

        # named-port class of each pod (the container ports egress named-port rules look at)
        classes = {(): 0}
        pod_class = np.zeros(len(self.pods), dtype=np.int64)
        if egress_names:
            for i, p in enumerate(self.pods):
                key = tuple(sorted(t for t in p.ports if t[0] in egress_names))
                pod_class[i] = classes.setdefault(key, len(classes))
        self.port_classes = [None] * len(classes)
        for key, c in classes.items():
            self.port_classes[c] = list(key)
        ncls = np.where(has_pod, pod_class[np.maximum(pod_of, 0)] if len(self.pods) else 0, 0)

        # prefix rows: every CIDR and exception the rules name, and /0 of each family
        prefixes = {(4, 0, 0), (6, 0, 0)}
        for peer in cidr_peers:
            prefixes.add(peer.cidr)
            prefixes.update(peer.excepts)
        prefixes = sorted(prefixes)
        pm = np.zeros((len(prefixes), ncols), dtype=bool)
        base = len(pod_peers)
        for k, pre in enumerate(prefixes):
            for c, peer in enumerate(cidr_peers):
                pm[k, base + c] = _prefix_inside(pre, peer.cidr) and \
                    not any(_prefix_inside(pre, e) for e in peer.excepts)

        exact_m = np.stack(cols, axis=1) if ncols else np.zeros((n, 0), dtype=bool)
        allm = np.concatenate([exact_m, pm, np.zeros((1, ncols), dtype=bool)])
        allf = np.concatenate([flag, np.zeros(len(prefixes), bool), [True]])     # last: the host row
        allc = np.concatenate([ncls, np.zeros(len(prefixes) + 1, np.int64)])
        rows = np.concatenate([np.packbits(allm, axis=1) if ncols else np.zeros((len(allf), 0), np.uint8),
                               allf[:, None].astype(np.uint8),
                               allc.astype("<u4").view(np.uint8).reshape(-1, 4)], axis=1)
        rows = np.ascontiguousarray(rows)
        view = rows.view(np.dtype((np.void, rows.shape[1]))).ravel()
        _u, first, inverse = np.unique(view, return_index=True, return_inverse=True)
        self.n_ident = len(first)
        self.ident_cols = allm[first]               # identity -> peer predicate answers
        self.ident_node = allf[first]
        self.ident_class = allc[first]
        self.exact_ident = inverse[:n]
        self.prefixes = prefixes
        self.prefix_ident = inverse[n:n + len(prefixes)]
        self.host_ident = int(inverse[-1])

    # ---------------------------------------------------------- maps

    def _rule_vector(self, rule, cache):
        vec = cache.get(rule.peers)
        if vec is None:
            if rule.peers is None:
                vec = np.ones(self.n_ident, dtype=bool)
            elif any(p.kind == "none" for p in rule.peers) and rule.action != "Allow":
                vec = np.ones(self.n_ident, dtype=bool)          # fails closed
            else:
                vec = np.zeros(self.n_ident, dtype=bool)
                for p in rule.peers:
                    if p.kind != "none":
                        vec |= self.ident_cols[:, self.peer_col[p]]
            cache[rule.peers] = vec
        return vec

    @staticmethod
    def _intervals(rule, dst_ports, fail_closed):
        if rule.ports is None or fail_closed:
            return [(0, KEY_LIMIT - 1)]
        out = []
        for pm in rule.ports:
            if pm.name is None:
                c = _CLASS[pm.protocol] << 16
                out.append((c | pm.lo, c | pm.hi))
            else:
                for name, proto, num in dst_ports:
                    if name == pm.name and pm.protocol in (None, proto):
                        c = _CLASS[proto] << 16
                        out.append((c | num, c | num))
        return out

    def _map(self, profile, matched, node, self_traffic, dst_ports):
        """Segments [(start key, decision)] of one (profile, identity) situation."""
        d, _rules, isolating, _ports = profile
        spans = []
        for tier, pol, rule in matched:
            fc = rule.peers is not None and rule.action != "Allow" and any(p.kind == "none" for p in rule.peers)
            iv = self._intervals(rule, dst_ports, fc)
            if iv:
                spans.append((tier, pol, rule, iv))
        bounds = {0}
        for *_x, iv in spans:
            for lo, hi in iv:
                bounds.add(lo)
                if hi + 1 < KEY_LIMIT:
                    bounds.add(hi + 1)
        segs = []
        for b in sorted(bounds):
            dec = self._evaluate(d, spans, isolating, node, self_traffic, b)
            if not segs or segs[-1][1] != dec:
                segs.append((b, dec))
        return tuple(segs)

    def _evaluate(self, d, spans, isolating, node, self_traffic, key):
        """The decision id of one key: admin tier, NetworkPolicy tier, baseline tier."""
        for tier in (TIER_ADMIN, TIER_BASELINE):
            for t, pol, rule, iv in spans:
                if t != tier or not any(lo <= key <= hi for lo, hi in iv):
                    continue
                if rule.action == "Pass":
                    break                       # skip the rest of this tier
                return self.decisions.id(rule_decision(pol, d, rule), rule.action == "Allow")
            if tier == TIER_ADMIN:
                r = self._np_tier(d, spans, isolating, node, self_traffic, key)
                if r is not None:
                    return r
        return 0

    def _np_tier(self, d, spans, isolating, node, self_traffic, key):
        if not isolating:
            return None
        ids = self.decisions
        if node:
            return ids.id(LABEL_NODE, True)
        if self_traffic:
            return ids.id(LABEL_SELF, True)
        for tier, pol, rule, iv in spans:
            if tier == TIER_NP and any(lo <= key <= hi for lo, hi in iv):
                return ids.id(rule_decision(pol, d, rule), True)
        return ids.id(isolation_decision(isolating), False)

    def maps(self):
        map_ids = {}
        self.map_list = []

        def intern(segs):
            m = map_ids.get(segs)
            if m is None:
                m = map_ids[segs] = len(self.map_list)
                self.map_list.append(segs)
            return m

        intern(((0, 0),))                    # map 0: nothing decided (allowed)
        cache = {}
        self.prof_default = []
        self.entries = []
        self.prof_vectors = []
        for pid, prof in enumerate(self.profile_list):
            d, rules, isolating, ports = prof
            vecs = np.stack([self._rule_vector(r, cache) for _t, _p, r in rules]) if rules else \
                np.zeros((0, self.n_ident), dtype=bool)
            self.prof_vectors.append(vecs)
            named = d == "egress" and any(pm.name for _t, _p, r in rules for pm in (r.ports or ()))
            sig = [np.packbits(vecs, axis=0).T if len(rules) else np.zeros((self.n_ident, 0), np.uint8),
                   self.ident_node[:, None].astype(np.uint8)]
            if named:
                sig.append(self.ident_class.astype("<u4").view(np.uint8).reshape(-1, 4))
            sig = np.ascontiguousarray(np.concatenate(sig, axis=1))
            view = sig.view(np.dtype((np.void, sig.shape[1]))).ravel()
            _u, first, inverse = np.unique(view, return_index=True, return_inverse=True)
            group_map = []
            for rep in first:
                matched = [rules[k] for k in np.nonzero(vecs[:, rep])[0]]
                dst_ports = self.port_classes[self.ident_class[rep]] if d == "egress" else ports
                group_map.append(intern(self._map(prof, matched, bool(self.ident_node[rep]), False,
                                                  dst_ports)))
            per_ident = np.asarray(group_map, dtype=np.int64)[inverse.ravel()]
            default = int(np.bincount(per_ident).argmax())
            self.prof_default.append(default)
            others = np.nonzero(per_ident != default)[0]
            self.entries.extend(((pid << 32) | int(i), int(per_ident[i])) for i in others)

        # the pod's own traffic through a Service: per local address and direction
        self.self_maps = {}
        local_pos = {pi: j for j, pi in enumerate(self.local)}
        for k, (ip, pi) in enumerate(self.exact):
            if pi is None or self.pods[pi].node_name != self.cluster.node:
                continue
            j = local_pos[pi]
            ident = int(self.exact_ident[k])
            maps = [0, 0]
            for d in DIRECTIONS:
                pid = self.ep_profile[d][j]
                if pid == NO_ID:
                    continue
                prof = self.profile_list[pid]
                rules = prof[1]
                matched = [rules[r] for r in np.nonzero(self.prof_vectors[pid][:, ident])[0]] if rules else []
                maps[_DIR_INDEX[d]] = intern(self._map(prof, matched, bool(self.ident_node[ident]), True,
                                                       self.pods[pi].ports))
            self.self_maps[k] = maps

    # ---------------------------------------------------------- tables

    def tables(self):
        n = len(self.exact)
        addrs = np.zeros(n, dtype=fast.ADDR_DTYPE)
        local_index = {pi: j for j, pi in enumerate(self.local)}
        node_ips = set(self.cluster.config.node_addresses)
        ips = [ip for ip, _pi in self.exact]
        vers = np.array([ip[0] for ip in ips], dtype=np.uint8)
        addrs["ip_ver"] = vers
        addrs["flags"] = [fast.LOCAL_NODE if ip in node_ips else 0 for ip in ips]
        addrs["identity"] = self.exact_ident
        addrs["a4"] = [ip[1] if ip[0] == 4 else 0 for ip in ips]
        v6 = np.nonzero(vers == 6)[0]
        if len(v6):
            addrs["a6"][v6] = np.frombuffer(b"".join(ips[k][1].to_bytes(16, "big") for k in v6),
                                            dtype=np.uint8).reshape(-1, 16)
        addrs["endpoint"] = [local_index.get(pi, NO_ID) if pi is not None else NO_ID for _ip, pi in self.exact]
        for k, maps in self.self_maps.items():
            addrs["self_map"][k] = maps
        eps = np.zeros(len(self.local), dtype=fast.ENDPOINT_DTYPE)
        for d in DIRECTIONS:
            eps["profile"][:, _DIR_INDEX[d]] = self.ep_profile[d]
        maps = np.zeros(len(self.map_list), dtype=fast.MAP_DTYPE)
        starts, decs = [], []
        for m, segs in enumerate(self.map_list):
            maps[m] = (len(starts), len(segs))
            starts.extend(s for s, _d in segs)
            decs.extend(d for _s, d in segs)
        p4 = [(p, int(self.prefix_ident[k])) for k, p in enumerate(self.prefixes) if p[0] == 4]
        p6 = [(p, int(self.prefix_ident[k])) for k, p in enumerate(self.prefixes) if p[0] == 6]
        if len({i for _p, i in p4}) > 65279 or len({i for _p, i in p6}) > 65279:
            raise ConfigError("network policies: more than 65,279 distinct CIDR identities")
        return fast.PolicyTables(
            addrs, eps, np.asarray(self.prof_default, dtype=np.uint32),
            np.asarray([k for k, _m in self.entries], dtype=np.uint64),
            np.asarray([m for _k, m in self.entries], dtype=np.uint32), maps,
            np.asarray(starts, dtype=np.uint32), np.asarray(decs, dtype=np.uint16),
            np.asarray(self.decisions.allow, dtype=np.uint8),
            np.asarray([p[1] for p, _i in p4], dtype=np.uint32), np.asarray([p[2] for p, _i in p4], dtype=np.uint8),
            np.asarray([i for _p, i in p4], dtype=np.uint32),
            np.frombuffer(b"".join(p[1].to_bytes(16, "big") for p, _i in p6), dtype=np.uint8).reshape(-1, 16),
            np.asarray([p[2] for p, _i in p6], dtype=np.uint8), np.asarray([i for _p, i in p6], dtype=np.uint32),
            self.host_ident, self.n_ident)


def compile_policy(cluster):
    """CompiledPolicy for cluster.node, or None when the snapshot has no policy."""
    if not all_policies(cluster):
        return None
    t0 = time.perf_counter()
    c = _Compiler(cluster)
    c.profiles()
    c.identities()
    c.maps()
    tables = c.tables()
    stats = {"policies": len(c.pols), "pods": len(c.pods), "local_pods": len(c.local),
             "profiles": len(c.profile_list), "peers": len(c.peers), "identities": c.n_ident,
             "exact_addresses": len(c.exact), "prefixes": len(c.prefixes), "maps": len(c.map_list),
             "entries": len(c.entries), "decisions": len(c.decisions.labels),
             "compile_s": time.perf_counter() - t0}
    return CompiledPolicy(tables, c.decisions.labels, c.decisions.allow,
                          [c.pods[i] for i in c.local], c.views, stats)
