"""Network policy in the pipeline: decided once per flow, stateful, counted, reloaded.

Packets are built with scapy and sent through a Dataplane (tests/kdptest.py); the
cluster is kdptest's (client 10.244.1.50 and web-1 10.244.1.10 on node-1, web-2 on
node-2) with labels and named ports added.
"""
import pytest
from scapy.all import ICMP, IP, TCP, UDP, ICMPv6EchoRequest, IPv6

from kdptest import (CLIENT, CLIENT6, NODE1, OUTSIDE, WEB1, WEB1_6, WEB2, Harness, base_objects,
                     endpoint, endpoint_slice, node_config, port, service)
from kdp.reasons import CtState, Reason, Stage, Verdict


def objects(*policies, established="Continue"):
    objs = base_objects()
    objs[0] = node_config(networkPolicy={"establishedFlows": established})
    objs[4]["metadata"]["labels"] = {"app": "client"}
    for o in objs[5:7]:
        o["metadata"]["labels"] = {"app": "web"}
        o["spec"]["containers"] = [{"name": "main", "ports": [{"name": "http", "containerPort": 8080}]}]
    objs += [service("web", [port("http", 80, "http")]),
             endpoint_slice("web", [("http", "TCP", 8080)], [endpoint(WEB1, "node-1")])]
    return objs + list(policies)


def np_(name, spec):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": "shop", "name": name}, "spec": spec}


WEB_FROM_CLIENT = np_("web", {"podSelector": {"matchLabels": {"app": "web"}},
                              "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                                           "ports": [{"port": "http"}]}]})
CLIENT_ISOLATED = np_("client", {"podSelector": {"matchLabels": {"app": "client"}},
                                 "policyTypes": ["Ingress", "Egress"],
                                 "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "web"}}}]}]})
DENY_ALL = np_("deny-all", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})


def syn(src, dst, dport, sport=40000):
    return IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="S", seq=1000)


def synack(src, dst, sport, dport=40000):
    return IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="SA", seq=5000, ack=1001)


def ack(src, dst, dport, sport=40000):
    return IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="A", seq=1001, ack=5001)


def test_reply_of_an_allowed_flow_passes_though_the_reverse_direction_is_denied(tmp_path):
    h = Harness(tmp_path, objects(WEB_FROM_CLIENT, CLIENT_ISOLATED))
    out = h.send(syn(CLIENT, WEB1, 8080))
    assert (out.verdict, out.ct) == (Verdict.FORWARD, CtState.NEW)
    reply = h.send(synack(WEB1, CLIENT, 8080))
    assert (reply.verdict, reply.ct) == (Verdict.FORWARD, CtState.REPLY)
    assert h.send(ack(CLIENT, WEB1, 8080)).verdict == Verdict.FORWARD
    # the same direction as the reply, as a new flow: the client's ingress denies it
    new = h.send(syn(WEB1, CLIENT, 9999, sport=41000))
    assert (new.verdict, new.reason, new.ct) == (Verdict.DROP, Reason.POLICY_DENIED_INGRESS, CtState.NEW)


def test_related_icmp_error_of_an_allowed_flow_passes(tmp_path):
    udp_web = np_("web-udp", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [{"protocol": "UDP"}]}]})
    h = Harness(tmp_path, objects(udp_web, CLIENT_ISOLATED))
    first = h.send(IP(src=CLIENT, dst=WEB1) / UDP(sport=5000, dport=7) / b"x")
    assert first.verdict == Verdict.FORWARD
    quote = IP(src=CLIENT, dst=WEB1) / UDP(sport=5000, dport=7) / b"x"
    err = h.send(IP(src=WEB1, dst=CLIENT) / ICMP(type=3, code=3) / quote)
    assert (err.verdict, err.ct) == (Verdict.FORWARD, CtState.RELATED)
    # the same error about no flow is a packet like any other: the client's ingress refuses it
    stray = IP(src=CLIENT, dst=WEB1) / UDP(sport=5001, dport=7) / b"x"
    err = h.send(IP(src=WEB1, dst=CLIENT) / ICMP(type=3, code=3) / stray)
    assert (err.verdict, err.reason, err.ct) == (Verdict.DROP, Reason.POLICY_DENIED_INGRESS, CtState.NONE)


def test_denied_first_packet_creates_no_flow(tmp_path):
    h = Harness(tmp_path, objects(WEB_FROM_CLIENT, CLIENT_ISOLATED))
    out = h.send(syn(WEB2, WEB1, 8080))            # web-2 is not a client: web-1's ingress denies
    assert (out.verdict, out.reason, out.ct) == (Verdict.DROP, Reason.POLICY_DENIED_INGRESS, CtState.NEW)
    assert len(h.dp.conntrack) == 0
    # web-1's answer is therefore no reply: a new flow, which web-2 (not local) cannot refuse,
    # but the retransmitted SYN is judged and dropped again
    again = h.send(syn(WEB2, WEB1, 8080))
    assert (again.ct, again.reason) == (CtState.NEW, Reason.POLICY_DENIED_INGRESS)
    assert len(h.dp.conntrack) == 0


def test_policy_drops_are_counted_once_under_the_policy_stage(tmp_path):
    h = Harness(tmp_path, objects(WEB_FROM_CLIENT, CLIENT_ISOLATED))
    outs = h.send(syn(WEB2, WEB1, 8080), syn(CLIENT, WEB1, 8080, sport=40001),
                  syn(CLIENT, "8.8.8.8", 53, sport=40002), syn(OUTSIDE, CLIENT, 22, sport=40003))
    assert [o.reason for o in outs] == [Reason.POLICY_DENIED_INGRESS, Reason.FORWARDED,
                                        Reason.POLICY_DENIED_EGRESS, Reason.POLICY_DENIED_INGRESS]
    c = h.dp.counters
    assert c[Stage.POLICY, Reason.POLICY_DENIED_INGRESS] == 2
    assert c[Stage.POLICY, Reason.POLICY_DENIED_EGRESS] == 1
    assert int(c.sum()) == 4


def test_untracked_packets_are_judged_one_by_one(tmp_path):
    # an ICMP timestamp request is no flow conntrack tracks (ct state none)
    ts = IP(src=WEB2, dst=WEB1) / ICMP(type=13)
    h = Harness(tmp_path, objects(WEB_FROM_CLIENT))
    out = h.send(ts)
    assert (out.verdict, out.reason, out.ct) == (Verdict.DROP, Reason.POLICY_DENIED_INGRESS, CtState.NONE)
    open_all = np_("web-open", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{}]})
    h2 = Harness(tmp_path / "b", objects(WEB_FROM_CLIENT, open_all))
    assert h2.send(ts).verdict == Verdict.FORWARD


def test_ipv6_neighbour_discovery_of_an_isolated_pod_is_not_judged(tmp_path):
    from scapy.all import ICMPv6ND_NS
    h = Harness(tmp_path, objects(DENY_ALL))
    out = h.send(IPv6(src=CLIENT6, dst="ff02::1:ff00:1", hlim=255) / ICMPv6ND_NS(tgt="fe80::1"))
    assert out.reason not in (Reason.POLICY_DENIED_EGRESS, Reason.POLICY_DENIED_INGRESS)
    ping = h.send(IPv6(src=CLIENT6, dst=WEB1_6) / ICMPv6EchoRequest())
    assert ping.reason == Reason.POLICY_DENIED_EGRESS


def test_pod_without_policy_pays_nothing_and_logs_no_decision(tmp_path):
    h = Harness(tmp_path, objects(WEB_FROM_CLIENT))
    b = h.send(syn(CLIENT, WEB2, 8080))              # client: no policy; web-2: remote
    assert b.verdict == Verdict.FORWARD
    from kdp._fast.packet import Batch
    from scapy.all import Ether, raw
    batch = Batch(1)
    batch.append(raw(Ether() / syn(CLIENT, WEB2, 8080, sport=41234)), ts_ns=h.clock + 10**6)
    h.dp.process(batch)
    assert (batch.meta[0]["pol_egress"], batch.meta[0]["pol_ingress"]) == (0, 0)


def test_service_flow_is_judged_on_the_backend_and_its_target_port(tmp_path):
    h = Harness(tmp_path, objects(WEB_FROM_CLIENT))
    out = h.send(syn(CLIENT, "10.96.0.10", 80))
    assert out.verdict == Verdict.FORWARD and out.dst == (WEB1, 8080)
    only80 = np_("web", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [{"port": 80}]}]})
    h2 = Harness(tmp_path / "b", objects(only80))
    out = h2.send(syn(CLIENT, "10.96.0.10", 80))
    assert (out.verdict, out.reason) == (Verdict.DROP, Reason.POLICY_DENIED_INGRESS)


# ---------------------------------------------------------------- reloads

def _established(h, dst=WEB1, dport=8080, sport=40000):
    assert h.send(syn(CLIENT, dst, dport, sport)).verdict == Verdict.FORWARD
    assert h.send(synack(dst, CLIENT, dport, sport)).verdict == Verdict.FORWARD
    assert h.send(ack(CLIENT, dst, dport, sport)).verdict == Verdict.FORWARD


def test_reload_new_flows_see_the_new_policy_established_flows_continue(tmp_path):
    h = Harness(tmp_path, objects(WEB_FROM_CLIENT))
    _established(h)
    h.reload(objects(WEB_FROM_CLIENT, DENY_ALL))
    cont = h.send(ack(CLIENT, WEB1, 8080))
    assert (cont.verdict, cont.ct) == (Verdict.FORWARD, CtState.ESTABLISHED)
    assert h.send(synack(WEB1, CLIENT, 8080)).verdict == Verdict.FORWARD
    new = h.send(syn(CLIENT, WEB1, 8080, sport=40100))
    assert (new.verdict, new.reason) == (Verdict.DROP, Reason.POLICY_DENIED_EGRESS)


def test_reload_with_recheck_drops_the_next_packet_of_a_flow_now_denied(tmp_path):
    h = Harness(tmp_path, objects(WEB_FROM_CLIENT, established="Recheck"))
    _established(h)
    _established(h, sport=40001)
    h.reload(objects(np_("web", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": []}),
                     established="Recheck"))
    out = h.send(ack(CLIENT, WEB1, 8080))
    assert (out.verdict, out.reason, out.ct) == (Verdict.DROP, Reason.POLICY_DENIED_INGRESS, CtState.ESTABLISHED)
    back = h.send(synack(WEB1, CLIENT, 8080))           # its replies too
    assert (back.verdict, back.reason) == (Verdict.DROP, Reason.POLICY_DENIED_INGRESS)
    # allowed again by the next reload: the flow continues
    h.reload(objects(WEB_FROM_CLIENT, established="Recheck"))
    assert h.send(ack(CLIENT, WEB1, 8080, sport=40001)).verdict == Verdict.FORWARD
    fid, _dir = h.dp.conntrack.lookup(6, CLIENT, WEB1, 40001, 8080)
    gen, _host, denied = h.dp.pipeline.flow_policy.state_of(fid)
    assert gen == h.dp.pipeline.policy.generation and denied == 0


def test_recheck_judges_a_service_flow_on_its_backend_port(tmp_path):
    h = Harness(tmp_path, objects(WEB_FROM_CLIENT, established="Recheck"))
    assert h.send(syn(CLIENT, "10.96.0.10", 80)).verdict == Verdict.FORWARD
    assert h.send(synack(WEB1, CLIENT, 8080)).verdict == Verdict.FORWARD
    # allows 8080 (the backend port) only: the flow stays
    only8080 = np_("web", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [{"port": 8080}]}]})
    h.reload(objects(only8080, established="Recheck"))
    assert h.send(ack(CLIENT, "10.96.0.10", 80)).verdict == Verdict.FORWARD
    only80 = np_("web", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [{"port": 80}]}]})
    h.reload(objects(only80, established="Recheck"))
    out = h.send(ack(CLIENT, "10.96.0.10", 80))
    assert (out.verdict, out.reason) == (Verdict.DROP, Reason.POLICY_DENIED_INGRESS)


def test_recheck_reads_ipv6_flows(tmp_path):
    h = Harness(tmp_path, objects(established="Recheck"))
    assert h.send(IPv6(src=CLIENT6, dst=WEB1_6) / TCP(sport=40000, dport=8080, flags="S")).verdict == Verdict.FORWARD
    assert h.send(IPv6(src=WEB1_6, dst=CLIENT6) / TCP(sport=8080, dport=40000, flags="SA")).verdict == Verdict.FORWARD
    v6only = np_("web", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [
        {"from": [{"ipBlock": {"cidr": "fd00:244:1::/64"}}]}]})
    h.reload(objects(v6only, established="Recheck"))
    assert h.send(IPv6(src=CLIENT6, dst=WEB1_6) / TCP(sport=40000, dport=8080, flags="A")).verdict == Verdict.FORWARD
    other = np_("web", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [
        {"from": [{"ipBlock": {"cidr": "fd00:244:2::/64"}}]}]})
    h.reload(objects(other, established="Recheck"))
    out = h.send(IPv6(src=CLIENT6, dst=WEB1_6) / TCP(sport=40000, dport=8080, flags="A"))
    assert (out.verdict, out.reason) == (Verdict.DROP, Reason.POLICY_DENIED_INGRESS)


def test_recheck_keeps_the_nodes_own_flows(tmp_path):
    h = Harness(tmp_path, objects(established="Recheck"))
    assert h.send(syn(NODE1, WEB1, 8080), in_port="host").verdict == Verdict.FORWARD
    assert h.send(synack(WEB1, NODE1, 8080)).verdict == Verdict.LOCAL
    h.reload(objects(DENY_ALL, established="Recheck"))
    out = h.send(ack(NODE1, WEB1, 8080), in_port="host")
    assert (out.verdict, out.ct) == (Verdict.FORWARD, CtState.ESTABLISHED)


def test_switching_to_recheck_judges_flows_made_before(tmp_path):
    h = Harness(tmp_path, objects(WEB_FROM_CLIENT))
    _established(h)
    assert h.dp.pipeline.flow_policy is None
    h.reload(objects(DENY_ALL, established="Recheck"))
    out = h.send(ack(CLIENT, WEB1, 8080))
    assert (out.verdict, out.reason) == (Verdict.DROP, Reason.POLICY_DENIED_EGRESS)
    h.reload(objects(DENY_ALL))                    # back to Continue: nothing is judged again
    assert h.dp.pipeline.flow_policy is None


def test_policies_removed_by_a_reload_stop_applying(tmp_path):
    h = Harness(tmp_path, objects(DENY_ALL))
    assert h.send(syn(CLIENT, WEB1, 8080)).reason == Reason.POLICY_DENIED_EGRESS
    h.reload(objects())
    assert h.dp.pipeline.policy is None
    assert h.send(syn(CLIENT, WEB1, 8080, sport=40001)).verdict == Verdict.FORWARD


def test_pipeline_refuses_policy_without_conntrack():
    from kdp._fast.pipeline import Pipeline
    from kdp._fast.route import RouteTable
    from kdp.control import Cluster
    from kdp.control.policy_compile import compile_policy
    cp = compile_policy(Cluster.from_documents(objects(DENY_ALL), node="node-1"))
    with pytest.raises(ValueError, match="conntrack"):
        Pipeline(RouteTable([]), policy=cp.tables)


def test_dns_queries_kdp_answers_itself_are_the_nodes_and_not_judged(tmp_path):
    # the DNS stage answers cluster names in place (as NodeLocal DNSCache on the node):
    # an egress-isolated pod still gets its answers; the names kdp passes on to the DNS
    # pods are packets like any other, judged by policy
    from dnstest import cluster_objects, frame, make_query
    lockdown = np_("lockdown", {"podSelector": {}, "policyTypes": ["Egress"]})
    h = Harness(tmp_path, cluster_objects() + [lockdown])
    answered = h.send(frame(make_query("web.shop.svc.cluster.local", "A"))[IP])
    assert (answered.verdict, answered.reason) == (Verdict.REPLY, Reason.DNS_ANSWERED)
    passed_on = h.send(frame(make_query("www.example.com", "A"), sport=5301)[IP])
    assert (passed_on.verdict, passed_on.reason) == (Verdict.DROP, Reason.POLICY_DENIED_EGRESS)
