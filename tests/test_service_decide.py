"""The service decision on hand-built packet metadata: one test per kube-proxy rule."""
import numpy as np
import pytest

from kdp._fast import service as fast
from kdp.reasons import Reason

from kdptest import base_docs, decide, slice_doc, svc_doc, tables_for


@pytest.fixture(scope="module")
def tables():
    return tables_for(base_docs())


SNAT = 2 | 4
DNAT = 1


def hit(d):
    return d["result"] == fast.SVC_HIT


def masqueraded(d):
    return d["flags"] & SNAT == SNAT


def spread(tables, src, dst, dport, n=64, **kw):
    """The set of backends n flow hashes reach."""
    return {decide(tables, src, dst, dport, h=h * 0x9E3779B97F4A7C15 % 2**64, **kw)["dnat"]
            for h in range(1, n + 1)}


# ------------------------------------------------------------------ ClusterIP

def test_cluster_ip_is_dnated_to_a_backend_target_port(tables):
    d = decide(tables, "10.244.1.50", "10.96.0.10", 80)
    assert hit(d) and d["flags"] & DNAT
    assert d["dnat"] in {"10.244.1.10", "10.244.2.10"} and d["dport"] == 8080
    assert tables.records[d["svc"]].name == "shop/web:p"
    assert spread(tables, "10.244.1.50", "10.96.0.10", 80) == {"10.244.1.10", "10.244.2.10"}


def test_pod_to_cluster_ip_inside_cluster_cidr_is_not_masqueraded(tables):
    d = decide(tables, "10.244.2.99", "10.96.0.10", 80)
    assert hit(d) and not masqueraded(d)


def test_cluster_ip_from_outside_cluster_cidr_is_masqueraded_to_node_address(tables):
    d = decide(tables, "192.0.2.7", "10.96.0.10", 80)
    assert hit(d) and masqueraded(d)
    assert d["snat"] == "192.168.56.11" and (d["snat_lo"], d["snat_hi"]) == (32768, 60999)


def test_masquerade_all_snats_pod_traffic_too():
    t = tables_for(base_docs(masquerade={"masqueradeAll": True}))
    d = decide(t, "10.244.2.99", "10.96.0.10", 80)
    assert hit(d) and masqueraded(d)


def test_node_cidr_detection_treats_other_nodes_pods_as_outside():
    t = tables_for(base_docs(localTrafficDetection="NodeCIDR"))
    assert not masqueraded(decide(t, "10.244.1.99", "10.96.0.10", 80))
    assert masqueraded(decide(t, "10.244.2.99", "10.96.0.10", 80))


def test_hairpin_pod_reaching_itself_through_its_service_is_masqueraded(tables):
    for h in range(1, 200):
        d = decide(tables, "10.244.1.10", "10.96.0.10", 80, h=h * 7919)
        if d["dnat"] == "10.244.1.10":
            assert masqueraded(d)
            break
    else:
        pytest.fail("no hash chose the source pod")
    other = next(decide(tables, "10.244.1.10", "10.96.0.10", 80, h=h * 7919)
                 for h in range(1, 200)
                 if decide(tables, "10.244.1.10", "10.96.0.10", 80, h=h * 7919)["dnat"] != "10.244.1.10")
    assert not masqueraded(other)


def test_dual_stack_ipv6_cluster_ip_reaches_ipv6_backend(tables):
    d = decide(tables, "fd00:244:1::50", "fd00:96::10", 80)
    assert hit(d) and d["dnat"] == "fd00:244:1::10" and d["dport"] == 8080
    assert not masqueraded(d)
    out = decide(tables, "2001:db8::1", "fd00:96::10", 80)
    assert masqueraded(out) and out["snat"] == "fd00::11"


def test_named_target_port_resolves_through_slice_port_name(tables):
    d = decide(tables, "10.244.1.50", "10.96.0.80", 80)
    assert hit(d) and d["dnat"] == "10.244.2.80" and d["dport"] == 8081


def test_wrong_protocol_on_cluster_ip_is_not_exposed(tables):
    d = decide(tables, "10.244.1.50", "10.96.0.10", 80, proto=17)
    assert d["result"] == fast.SVC_REJECT and d["reason"] == Reason.SVC_PORT_NOT_EXPOSED


# ------------------------------------------------------------------ nftables-only rules

def test_live_cluster_ip_on_unexposed_port_is_rejected(tables):
    d = decide(tables, "10.244.1.50", "10.96.0.10", 81)
    assert d["result"] == fast.SVC_REJECT and d["reason"] == Reason.SVC_PORT_NOT_EXPOSED
    icmp = decide(tables, "10.244.1.50", "10.96.0.10", 0, proto=1)
    assert icmp["result"] == fast.SVC_REJECT


def test_unallocated_service_cidr_address_is_dropped(tables):
    d = decide(tables, "10.244.1.50", "10.96.0.99", 80)
    assert d["result"] == fast.SVC_DROP and d["reason"] == Reason.SVC_UNALLOCATED_IP
    v6 = decide(tables, "fd00:244:1::50", "fd00:96::99", 80)
    assert v6["result"] == fast.SVC_DROP and v6["reason"] == Reason.SVC_UNALLOCATED_IP


def test_address_outside_service_cidrs_is_a_miss(tables):
    assert decide(tables, "10.244.1.50", "10.97.0.10", 80)["result"] == fast.SVC_MISS
    assert decide(tables, "10.244.1.50", "10.244.2.10", 8080)["result"] == fast.SVC_MISS


def test_iptables_mode_lets_unexposed_and_unallocated_fall_through():
    t = tables_for(base_docs(proxyMode="iptables"))
    assert decide(t, "10.244.1.50", "10.96.0.10", 81)["result"] == fast.SVC_MISS
    assert decide(t, "10.244.1.50", "10.96.0.99", 80)["result"] == fast.SVC_MISS
    assert hit(decide(t, "10.244.1.50", "10.96.0.10", 80))


# ------------------------------------------------------------------ NodePort

def test_node_port_on_primary_node_address_only_in_nftables_mode(tables):
    d = decide(tables, "192.0.2.7", "192.168.56.11", 30080)
    assert hit(d) and d["dnat"] == "10.244.2.20" and d["dport"] == 8080
    assert decide(tables, "192.0.2.7", "10.0.0.11", 30080)["result"] == fast.SVC_MISS
    assert decide(tables, "192.0.2.7", "192.168.56.12", 30080)["result"] == fast.SVC_MISS


def test_node_port_on_every_node_address_in_iptables_mode():
    t = tables_for(base_docs(proxyMode="iptables"))
    assert hit(decide(t, "192.0.2.7", "10.0.0.11", 30080))
    assert hit(decide(t, "192.0.2.7", "192.168.56.11", 30080))


def test_node_port_addresses_cidr_setting_selects_addresses():
    t = tables_for(base_docs(nodePortAddresses=["10.0.0.0/8"]))
    assert hit(decide(t, "192.0.2.7", "10.0.0.11", 30080))
    assert decide(t, "192.0.2.7", "192.168.56.11", 30080)["result"] == fast.SVC_MISS


@pytest.mark.parametrize("setting, v4, v6", [
    (["10.0.0.0/8"], {"10.0.0.11"}, {"fd00::11"}),              # no IPv6 CIDR: IPv6 matches all
    (["fd00::/64"], {"192.168.56.11", "10.0.0.11"}, {"fd00::11"}),
    (["10.0.0.0/8", "2001:db8::/32"], {"10.0.0.11"}, set()),
    (["primary"], {"192.168.56.11"}, {"fd00::11"}),
])
def test_node_port_addresses_apply_per_family_as_kube_proxy(setting, v4, v6):
    # kube-proxy reads --nodeport-addresses per family and adds 0.0.0.0/0 or ::/0 for a
    # family none of its CIDRs is of
    from kdp.control import Cluster
    from kdp.reference import service as reference
    docs = base_docs(nodePortAddresses=setting) + [
        svc_doc("np6", ["10.96.0.21", "fd00:96::21"], type="NodePort", nodePort=30081,
                ipFamilyPolicy="PreferDualStack"),
        slice_doc("np6", [("10.244.2.21", "node-2")]),
        slice_doc("np6", [("fd00:244:2::21", "node-2")], fam="IPv6")]
    c = Cluster.from_documents(docs, node="node-1")
    t = tables_for(docs)
    for dst, src, want in [(a, "192.0.2.7", v4) for a in ("192.168.56.11", "10.0.0.11")] + \
            [("fd00::11", "2001:db8::1", v6)]:
        assert hit(decide(t, src, dst, 30081)) == (dst in want), dst
        assert (reference.decide(c, 6, src, dst, 30081).result == reference.HIT) == (dst in want), dst


def test_node_port_with_cluster_policy_is_always_masqueraded(tables):
    assert masqueraded(decide(tables, "192.0.2.7", "192.168.56.11", 30080))
    assert masqueraded(decide(tables, "10.244.1.50", "192.168.56.11", 30080))


def test_unused_node_port_is_a_miss(tables):
    assert decide(tables, "192.0.2.7", "192.168.56.11", 30099)["result"] == fast.SVC_MISS


# ------------------------------------------------------------------ LoadBalancer / externalIPs

def test_load_balancer_ip_from_allowed_source_keeps_client_address_with_local_policy(tables):
    d = decide(tables, "198.51.100.9", "203.0.113.10", 443)
    assert hit(d) and d["dnat"] == "10.244.1.30" and d["dport"] == 8443
    assert not masqueraded(d)
    assert spread(tables, "198.51.100.9", "203.0.113.10", 443) == {"10.244.1.30"}


def test_load_balancer_source_ranges_drop_other_sources(tables):
    d = decide(tables, "192.0.2.7", "203.0.113.10", 443)
    assert d["result"] == fast.SVC_DROP and d["reason"] == Reason.SVC_SOURCE_RANGE


def test_source_ranges_do_not_guard_the_node_port(tables):
    d = decide(tables, "192.0.2.7", "192.168.56.11", 30443)
    assert hit(d) and d["dnat"] == "10.244.1.30" and not masqueraded(d)


def test_proxy_mode_load_balancer_ip_is_not_captured(tables):
    assert decide(tables, "198.51.100.9", "203.0.113.11", 443)["result"] == fast.SVC_MISS


def test_local_policy_pod_traffic_short_circuits_to_all_endpoints(tables):
    seen = spread(tables, "10.244.1.50", "192.168.56.11", 30443)
    assert seen == {"10.244.1.30", "10.244.2.30"}
    assert not masqueraded(decide(tables, "10.244.1.50", "192.168.56.11", 30443))


def test_local_policy_host_traffic_is_masqueraded_to_all_endpoints(tables):
    d = decide(tables, "192.168.56.11", "192.168.56.11", 30443)
    assert hit(d) and masqueraded(d)
    assert spread(tables, "192.168.56.11", "192.168.56.11", 30443) == {"10.244.1.30", "10.244.2.30"}


def test_local_policy_without_local_endpoints_drops_external_traffic(tables):
    d = decide(tables, "192.0.2.7", "203.0.113.12", 443)
    assert d["result"] == fast.SVC_DROP and d["reason"] == Reason.SVC_NO_LOCAL_ENDPOINTS
    n = decide(tables, "192.0.2.7", "192.168.56.11", 30444)
    assert n["result"] == fast.SVC_DROP and n["reason"] == Reason.SVC_NO_LOCAL_ENDPOINTS
    from_pod = decide(tables, "10.244.1.50", "203.0.113.12", 443)
    assert hit(from_pod) and from_pod["dnat"] == "10.244.2.31"


def test_external_ip_is_captured_and_masqueraded_under_cluster_policy(tables):
    d = decide(tables, "192.0.2.7", "198.18.0.40", 80)
    assert hit(d) and d["dnat"] == "10.244.2.40" and masqueraded(d)
    assert decide(tables, "192.0.2.7", "198.18.0.40", 81)["result"] == fast.SVC_MISS


# ------------------------------------------------------------------ endpoints

def test_service_without_endpoints_rejects(tables):
    d = decide(tables, "10.244.1.50", "10.96.0.50", 80)
    assert d["result"] == fast.SVC_REJECT and d["reason"] == Reason.SVC_NO_ENDPOINTS


def test_internal_local_policy_without_local_endpoints_drops(tables):
    d = decide(tables, "10.244.1.50", "10.96.0.60", 80)
    assert d["result"] == fast.SVC_DROP and d["reason"] == Reason.SVC_NO_LOCAL_ENDPOINTS


def test_serving_terminating_endpoints_serve_when_none_is_ready(tables):
    assert spread(tables, "10.244.1.50", "10.96.0.90", 80) == {"10.244.2.91"}


def test_ready_endpoint_replaces_terminating_fallback():
    docs = base_docs()
    t = tables_for(docs)
    t.update_endpoints(slice_doc("term", [("10.244.2.90", "node-2", False, False, False),
                                       ("10.244.2.91", "node-2", False, True, True),
                                       ("10.244.2.92", "node-2")]))
    assert spread(t, "10.244.1.50", "10.96.0.90", 80) == {"10.244.2.92"}


def test_headless_and_external_name_services_have_no_records(tables):
    names = {r.name for r in tables.records}
    assert "shop/headless:p" not in names and not any(n.startswith("shop/extname") for n in names)
    assert "shop/web:p" in names


# ------------------------------------------------------------------ session affinity

def test_client_ip_affinity_keeps_a_client_on_one_backend(tables):
    tables.service.clear_affinity()
    got = {decide(tables, "10.244.1.50", "10.96.0.70", 80, sport=1000 + h, h=h * 0x9E3779B1, ts=10**9)["dnat"]
           for h in range(50)}
    assert len(got) == 1
    clients = {decide(tables, f"10.244.1.{k}", "10.96.0.70", 80, h=k * 0x9E3779B1, ts=10**9)["dnat"]
               for k in range(60, 120)}
    assert len(clients) > 1


def test_affinity_expires_after_timeout(tables):
    tables.service.clear_affinity()
    first = decide(tables, "10.244.1.51", "10.96.0.70", 80, h=1, ts=0)["dnat"]
    later = {decide(tables, "10.244.1.51", "10.96.0.70", 80, h=h * 0x9E3779B1, ts=31 * 10**9 * (h + 1))["dnat"]
             for h in range(40)}
    assert later - {first}, "after the 30 s timeout a fresh choice must be possible"
    within = {decide(tables, "10.244.1.52", "10.96.0.70", 80, h=h * 0x9E3779B1, ts=10**9 + h)["dnat"]
              for h in range(40)}
    assert len(within) == 1


def test_affinity_reselects_when_its_backend_is_removed():
    t = tables_for(base_docs())
    first = decide(t, "10.244.1.53", "10.96.0.70", 80, h=5, ts=1)["dnat"]
    eps = [(f"10.244.2.{70 + k}", "node-2") for k in range(5) if f"10.244.2.{70 + k}" != first]
    removed = t.update_endpoints(slice_doc("aff", eps))
    assert sum(len(v) for v in removed.values()) == 1
    after = decide(t, "10.244.1.53", "10.96.0.70", 80, h=5, ts=2)["dnat"]
    assert after != first and after in {e[0] for e in eps}
    again = {decide(t, "10.244.1.53", "10.96.0.70", 80, h=h, ts=3)["dnat"] for h in range(1, 30)}
    assert again == {after}


def test_decide_rejects_wrong_dtype(tables):
    with pytest.raises(TypeError):
        tables.decide(np.zeros(3, dtype=np.uint8))


def test_affinity_table_is_bounded_and_keeps_working_when_full():
    t = tables_for(base_docs(sessionAffinityMaxEntries=16))
    for k in range(500):
        d = decide(t, f"10.244.{1 + k // 250}.{k % 250}", "10.96.0.70", 80, h=k, ts=10**9)
        assert hit(d)
    live = t.service.affinity_entries(now_ns=10**9)
    assert 0 < len(live) <= 16
    again = decide(t, "10.244.2.249", "10.96.0.70", 80, h=999999, ts=10**9 + 1)
    first = decide(t, "10.244.2.249", "10.96.0.70", 80, h=1, ts=10**9 + 2)
    assert again["dnat"] == first["dnat"]          # the latest client is remembered


def test_ipv6_node_port_on_the_primary_ipv6_address():
    docs = base_docs() + [
        svc_doc("np6", ["fd00:96::20"], type="NodePort", nodePort=30086),
        slice_doc("np6", [("fd00:244:2::20", "node-2")], fam="IPv6")]
    t = tables_for(docs)
    d = decide(t, "2001:db8::1", "fd00::11", 30086)
    assert hit(d) and d["dnat"] == "fd00:244:2::20" and masqueraded(d) and d["snat"] == "fd00::11"
    assert decide(t, "192.0.2.7", "192.168.56.11", 30086)["result"] == fast.SVC_MISS
