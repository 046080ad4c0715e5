"""Network policy, the slow and obvious way: every question answered from the model.

`decide(cluster, src, dst, proto, port)` walks the policies of a validated
Cluster for one flow as the APIs define them, with no tables, no identities and
no precomputation; tests check the compiled tables (kdp._fast.policy) against
it, and it against an independent analyzer (nca).

A flow is judged where this node can judge it: the egress of its source when
the source is a pod on this node, the ingress of its (post-DNAT) destination
when that is a pod on this node. Each direction goes through the tiers:

1. admin (AdminNetworkPolicy, ClusterNetworkPolicy tier Admin) by priority:
   the first rule that matches decides: Allow / Deny, or Pass (on to 2);
2. NetworkPolicy: if any selects the pod for this direction, the flow is
   allowed when one of their rules matches, or when it is the node's own
   traffic or the pod's traffic to itself (NetworkPolicy cannot block those),
   and denied otherwise;
3. baseline (BaselineAdminNetworkPolicy, ClusterNetworkPolicy tier Baseline):
   the first rule that matches decides (Pass: on to 4);
4. allowed, no policy decided.
A pod connecting to its own address without a Service is not subject to any
policy (it never leaves the pod); through a Service it is (network-policy-api,
"hairpin" in its API overview), and NetworkPolicy still lets it through.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

from kdp.control import addr
from kdp.control.policy import (LABEL_NODE, LABEL_SELF, TIER_ADMIN, TIER_BASELINE, TIER_NP,
                                all_policies, isolation_decision, live_pods, namespace_labels,
                                node_addresses, rule_decision)

L4 = (6, 17, 132)


class Decision(NamedTuple):
    allowed: bool
    egress: Optional[str]       # what decided the egress of the source pod (None: nothing)
    ingress: Optional[str]


class _Side(NamedTuple):
    pod: object                 # the local pod whose policies apply
    peer_addr: tuple            # the address of the other end, as this side sees it
    peer_pod: object            # the pod owning peer_addr (None: not a pod)
    peer_node: bool             # the other end is this node
    self_traffic: bool          # the pod talks to itself
    dst_ports: list             # container ports of the destination (named ports)


def _selects(cluster, policy, pod):
    if policy.tier == TIER_NP:
        return policy.namespace == pod.namespace and policy.subject_pods.matches(pod.labels)
    return (policy.subject_namespaces.matches(namespace_labels(cluster, pod.namespace))
            and policy.subject_pods.matches(pod.labels))


def _peer_matches(cluster, peer, side):
    if peer.kind == "pods":
        p = side.peer_pod
        if p is None:
            return False
        if peer.namespaces is None:
            in_ns = p.namespace == peer.namespace
        else:
            in_ns = peer.namespaces.matches(namespace_labels(cluster, p.namespace))
        return in_ns and peer.pods.matches(p.labels)
    if peer.kind == "cidr":
        a = side.peer_addr
        return addr.prefix_contains(peer.cidr, a) and not any(addr.prefix_contains(e, a) for e in peer.excepts)
    if peer.kind == "nodes":
        for name, ips in node_addresses(cluster).items():
            if side.peer_addr in ips and peer.nodes.matches(cluster.nodes[name].labels):
                return True
        return False
    return False


def _port_matches(pm, proto, port, dst_ports):
    if proto not in L4:
        return False
    if pm.name is not None:
        return any(n == pm.name and pr == proto and num == port and pm.protocol in (None, pr)
                   for n, pr, num in dst_ports)
    return pm.protocol == proto and pm.lo <= port <= pm.hi


def _rule_matches(cluster, rule, side, proto, port):
    if rule.peers is not None:
        if any(p.kind == "none" for p in rule.peers) and rule.action != "Allow":
            return True         # fails closed: a Deny / Pass rule with a peer kdp cannot read
        if not any(_peer_matches(cluster, p, side) for p in rule.peers):
            return False
    if rule.ports is None:
        return True
    return any(_port_matches(pm, proto, port, side.dst_ports) for pm in rule.ports)


def _judge(cluster, side, direction, proto, port):
    """(allowed, label) for one direction of a flow at one local pod."""
    pols = [p for p in all_policies(cluster) if p.rules(direction) is not None and _selects(cluster, p, side.pod)]
    for tier in (TIER_ADMIN, TIER_NP, TIER_BASELINE):
        here = sorted((p for p in pols if p.tier == tier), key=lambda p: p.order())
        if tier == TIER_NP:
            if not here:
                continue
            if side.peer_node:
                return True, LABEL_NODE
            if side.self_traffic:
                return True, LABEL_SELF
            for p in here:
                for rule in p.rules(direction):
                    if _rule_matches(cluster, rule, side, proto, port):
                        return True, rule_decision(p, direction, rule)
            return False, isolation_decision(here)
        passed = False
        for p in here:
            for rule in p.rules(direction):
                if _rule_matches(cluster, rule, side, proto, port):
                    if rule.action == "Pass":
                        passed = True
                        break
                    return rule.action == "Allow", rule_decision(p, direction, rule)
            if passed:
                break
    return True, None


class Reference:
    """The reference evaluator over one Cluster (its address owners found once)."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.owner = {}
        for p in live_pods(cluster):
            for ip in p.ips:
                self.owner.setdefault(ip, p)
        self.node_ips = set(cluster.config.node_addresses)

    def decide(self, src, dst, proto, port=0, via_service=False, from_host=False):
        """The policy decision for a new flow at cluster.node.

        src, dst: IPs (version, int) or address strings; dst is the post-DNAT
        destination (a Service's backend). port: the destination port (TCP, UDP,
        SCTP). via_service: the flow was DNATed. from_host: it comes from the
        node itself (the host port), whatever its source address."""
        cluster = self.cluster
        if isinstance(src, str):
            src = addr.parse_ip(src)
        if isinstance(dst, str):
            dst = addr.parse_ip(dst)
        here = cluster.node
        src_pod = None if from_host else self.owner.get(src)
        dst_pod = self.owner.get(dst)
        src_node = from_host or src in self.node_ips
        dst_node = dst in self.node_ips
        if src_pod is not None and src_pod is dst_pod and not via_service:
            return Decision(True, None, None)       # never leaves the pod: no policy sees it
        eg = ing = None
        if src_pod is not None and src_pod.node_name == here:
            side = _Side(src_pod, dst, dst_pod, dst_node, src_pod is dst_pod,
                         dst_pod.ports if dst_pod is not None else [])
            allowed, eg = _judge(cluster, side, "egress", proto, port)
            if not allowed:
                return Decision(False, eg, None)
        if dst_pod is not None and dst_pod.node_name == here:
            side = _Side(dst_pod, src, src_pod, src_node, src_pod is dst_pod, dst_pod.ports)
            allowed, ing = _judge(cluster, side, "ingress", proto, port)
            if not allowed:
                return Decision(False, eg, ing)
        return Decision(True, eg, ing)


def decide(cluster, src, dst, proto, port=0, via_service=False, from_host=False):
    """Reference(cluster).decide(...) for one flow."""
    return Reference(cluster).decide(src, dst, proto, port, via_service, from_host)
