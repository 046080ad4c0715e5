"""Differential test: the compiled C decision against a slow, obvious Python
reference that reads the validated model directly (no compiled tables)."""
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdp._fast import service as fast
from kdp.control import Cluster, compile
from kdp.control import addr
from kdp.reasons import Reason

from kdptest import NODE, base_docs, decide


def ref_decide(c, proto, src, dst, dport):
    """(result, reason, service-port name, set of allowed backend (ip, port), masquerade)."""
    cfg = c.config
    src_ip, dst_ip = addr.parse_ip(src), addr.parse_ip(dst)
    fam = src_ip[0]
    nft = cfg.proxy_mode == "nftables"
    local_cidrs = cfg.pod_cidrs if cfg.local_traffic_detection == "NodeCIDR" else cfg.cluster_cidrs
    primary = {}
    for ip in cfg.node_addresses:
        primary.setdefault(ip[0], ip)
    setting = cfg.node_port_addresses or (["primary"] if nft else ["all"])
    np_addrs = set()
    for item in setting:
        if item == "primary":
            np_addrs |= set(primary.values())
        elif item == "all":
            np_addrs |= set(cfg.node_addresses)
        else:
            np_addrs |= {ip for ip in cfg.node_addresses if addr.prefix_contains(item, ip)}

    match = None
    live_vips = set()
    for key, svc in sorted(c.services.items()):
        if svc.type == "ExternalName" or svc.headless:
            continue
        live_vips |= set(svc.cluster_ips)
        for cip in svc.cluster_ips:
            if cip[0] != fam:
                continue
            for sp in svc.ports:
                if sp.protocol != proto:
                    continue
                kinds = []
                if dst_ip == cip and dport == sp.port:
                    kinds.append("cluster")
                if dst_ip in svc.external_ips and dport == sp.port:
                    kinds.append("external")
                if svc.type == "LoadBalancer" and dport == sp.port and \
                        (dst_ip, "VIP") in svc.lb_ingress:
                    kinds.append("lb")
                if svc.type in ("NodePort", "LoadBalancer") and sp.node_port == dport and dst_ip in np_addrs:
                    kinds.append("nodeport")
                if kinds:
                    match = (svc, sp, kinds[0])
    if match is None:                  # any protocol, as nftables' cluster-ips set
        if nft and dst_ip in live_vips:
            return fast.SVC_REJECT, Reason.SVC_PORT_NOT_EXPOSED, None, set(), False
        if nft and any(addr.prefix_contains(p, dst_ip) for p in cfg.service_cidrs):
            return fast.SVC_DROP, Reason.SVC_UNALLOCATED_IP, None, set(), False
        return fast.SVC_MISS, 0, None, set(), False
    svc, sp, kind = match
    name = f"{svc.namespace}/{svc.name}:{sp.name}"
    if kind == "lb" and svc.lb_source_ranges:
        ranges = [p for p in svc.lb_source_ranges if p[0] == fam]
        if any(addr.prefix_contains(p, ip) for p in ranges for ip in cfg.node_addresses):
            ranges += [addr.host_prefix(ip) for ip, m in svc.lb_ingress if m == "VIP" and ip[0] == fam]
        if not any(addr.prefix_contains(p, src_ip) for p in ranges):
            return fast.SVC_DROP, Reason.SVC_SOURCE_RANGE, name, set(), False
    # endpoints of this port and family
    all_ready, all_term, loc_ready, loc_term = set(), set(), set(), set()
    local_pod_ips = {ip for p in c.pods.values() if p.node_name == c.node and not p.host_network for ip in p.ips}
    for sl in c.slices_for((svc.namespace, svc.name)):
        if sl.address_type != fam:
            continue
        ports = [pn for (nm, pr, pn) in sl.ports if pr == sp.protocol and nm == sp.name]
        if not ports and isinstance(sp.target_port, str):
            ports = [pn for (nm, pr, pn) in sl.ports if pr == sp.protocol and nm == sp.target_port]
        if not ports:
            continue
        for ep in sl.endpoints:
            e = (ep.addresses[0], ports[0])
            is_local = (ep.node_name == c.node) if ep.node_name else ep.addresses[0] in local_pod_ips
            if ep.ready:
                all_ready.add(e)
                if is_local:
                    loc_ready.add(e)
            elif ep.serving and ep.terminating:
                all_term.add(e)
                if is_local:
                    loc_term.add(e)
    cluster_set = all_ready or all_term
    local_set = loc_ready or loc_term
    if not cluster_set and not local_set:
        return fast.SVC_REJECT, Reason.SVC_NO_ENDPOINTS, name, set(), False
    from_pod = any(addr.prefix_contains(p, src_ip) for p in local_cidrs)
    from_node = src_ip in cfg.node_addresses
    masq, use_local = False, False
    if kind == "cluster":
        use_local = svc.internal_policy_local
        masq = cfg.masquerade_all or not from_pod
    elif not svc.external_policy_local:
        masq = True
    elif from_pod:
        pass
    elif from_node:
        masq = True
    else:
        use_local = True
    chosen = local_set if use_local else cluster_set
    if not chosen:
        if use_local:
            return fast.SVC_DROP, Reason.SVC_NO_LOCAL_ENDPOINTS, name, set(), False
        return fast.SVC_REJECT, Reason.SVC_NO_ENDPOINTS, name, set(), False
    hairpin = {e for e in chosen if e[0] == src_ip}
    return fast.SVC_HIT, 0, name, chosen, (masq, hairpin)


SOURCES = ["10.244.1.50", "10.244.1.10", "10.244.2.99", "192.168.56.11", "10.0.0.11", "192.0.2.7",
           "198.51.100.9", "203.0.113.10", "fd00:244:1::50", "fd00:244:1::10", "2001:db8::1", "fd00::11"]
DESTS = ["10.96.0.10", "10.96.0.20", "10.96.0.30", "10.96.0.31", "10.96.0.40", "10.96.0.50", "10.96.0.60",
         "10.96.0.70", "10.96.0.80", "10.96.0.90", "10.96.0.99", "10.96.1.1", "10.97.0.1", "198.18.0.40",
         "203.0.113.10", "203.0.113.11", "203.0.113.12", "192.168.56.11", "10.0.0.11", "192.168.56.12",
         "10.244.2.10", "fd00:96::10", "fd00:96::99", "fd00::11", "2001:db8::2"]
PORTS = [80, 81, 443, 8080, 30080, 30443, 30444, 30099, 53]
FRONTENDS = [("10.96.0.10", 80), ("10.96.0.20", 80), ("10.96.0.30", 443), ("10.96.0.31", 443),
             ("10.96.0.40", 80), ("10.96.0.50", 80), ("10.96.0.60", 80), ("10.96.0.70", 80),
             ("10.96.0.80", 80), ("10.96.0.90", 80), ("198.18.0.40", 80), ("203.0.113.10", 443),
             ("203.0.113.12", 443), ("192.168.56.11", 30080), ("192.168.56.11", 30443),
             ("192.168.56.11", 30444), ("10.0.0.11", 30080), ("fd00:96::10", 80)]
CONFIGS = [{}, {"proxyMode": "iptables"}, {"masquerade": {"masqueradeAll": True}},
           {"localTrafficDetection": "NodeCIDR"}, {"nodePortAddresses": ["all"]},
           {"nodePortAddresses": ["10.0.0.0/8"]}]


@pytest.fixture(scope="module")
def worlds():
    out = []
    for cfg in CONFIGS:
        c = Cluster.from_documents(base_docs(**cfg), node=NODE)
        out.append((c, compile(c)))
    return out


@settings(max_examples=400, deadline=None)
@given(world=st.integers(0, len(CONFIGS) - 1), src=st.sampled_from(SOURCES),
       target=st.one_of(st.sampled_from(FRONTENDS), st.tuples(st.sampled_from(DESTS), st.sampled_from(PORTS))),
       proto=st.sampled_from([6, 6, 6, 17, 132, 1]), h=st.integers(0, 2**64 - 1))
def test_compiled_decision_matches_reference(worlds, world, src, target, proto, h):
    """Random packets over the test snapshot's addresses, under six NodeConfigs.
    (An exhaustive run over SOURCES x DESTS x PORTS x {TCP, UDP, ICMP} x CONFIGS,
    29,808 cases, agreed too when this test was written.)"""
    dst, dport = target
    if ipaddress.ip_address(src).version != ipaddress.ip_address(dst).version:
        return
    c, t = worlds[world]
    t.service.clear_affinity()
    exp_result, exp_reason, exp_name, allowed, masq = ref_decide(c, proto, src, dst, dport)
    got = decide(t, src, dst, dport, proto=proto, h=h)
    assert got["result"] == exp_result, (src, dst, dport, proto, got)
    if exp_result in (fast.SVC_DROP, fast.SVC_REJECT):
        assert got["reason"] == exp_reason
    if exp_result == fast.SVC_HIT:
        assert t.records[got["svc"]].name == exp_name
        backend = (addr.parse_ip(got["dnat"]), got["dport"])
        assert backend in allowed
        base_masq, hairpin = masq
        assert bool(got["flags"] & 2) == (base_masq or backend in hairpin)
