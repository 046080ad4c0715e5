"""Cluster DNS through a whole node: the DNS stage in the pipeline (before conntrack),
what it passes on reaching the DNS pods as before, reloads and endpoint updates
swapping the zone, the verdict log's dns fields, the replay summary, `kdp show dns`,
and NodeConfig `dns` validation."""
import io
import json

import dns.message
import dns.rcode
import pytest
from scapy.all import IP, UDP, Ether, raw

from kdp._fast.dns import DnsOutcome as O, note_json
from kdp._fast.packet import Batch
from kdp.cli import main
from kdp.control import Cluster
from kdp.errors import ConfigError
from kdp.reasons import CtState, Reason, Stage, Verdict

from dnstest import COREDNS, DNS_IP, cluster_objects, ep, frame, make_query
from kdptest import CLIENT, Harness, endpoint_slice, port, service, write_snapshot

Z = "cluster.local."


def answer_of(sent):
    return dns.message.from_wire(bytes(sent.packet[UDP].payload))


def q(name, qtype="A", **kw):
    fkw = {k: kw.pop(k) for k in ("dst", "sport", "dport", "tcp") if k in kw}
    return frame(make_query(name, qtype, **kw), **fkw)[IP]


@pytest.fixture
def node(tmp_path):
    return Harness(tmp_path, cluster_objects())


def test_a_query_to_kube_dns_is_answered_in_place_and_creates_no_flow(node):
    s = node.send(q("web.shop.svc.cluster.local"))
    assert (s.verdict, s.reason, s.out_port) == (Verdict.REPLY, Reason.DNS_ANSWERED, "shop/client")
    assert s.ct == CtState.NONE and s.service is None
    assert (s.packet[IP].src, s.packet[IP].dst, s.packet[UDP].sport) == (DNS_IP, CLIENT, 53)
    assert [r.to_text() for r in answer_of(s).answer] == [f"web.shop.svc.{Z} 5 IN A 10.96.0.10"]
    assert node.dp.conntrack.counters()["flows"] == 0
    assert node.dp.counters[Stage.DNS, Reason.DNS_ANSWERED] == 1
    assert node.dp.verdicts[Verdict.REPLY] == 1 and node.dp.dns_counters[O.DNS_ANSWER] == 1


def test_queries_kdp_does_not_answer_reach_the_dns_pods_as_before(node):
    for pkt, outcome in ((q("www.example.com", sport=40001), O.DNS_PASS_OUT_OF_ZONE),
                         (q("ext.shop.svc.cluster.local", sport=40002), O.DNS_PASS_EXTERNAL),
                         (q("web.shop.svc.cluster.local", sport=40003, tcp=True), O.DNS_PASS_TCP)):
        before = int(node.dp.dns_counters[outcome])
        s = node.send(pkt)
        assert s.verdict == Verdict.FORWARD and s.ct == CtState.NEW
        assert s.service.startswith("kube-system/kube-dns:") and s.dst == (COREDNS, 53)
        assert node.dp.dns_counters[outcome] == before + 1


def test_counters_add_up_with_answered_passed_and_dropped_queries(node):
    node.send(q("web.shop.svc.cluster.local"), q("nope.shop.svc.cluster.local"), q("example.org"),
              IP(src=CLIENT, dst=DNS_IP) / UDP(sport=9, dport=53) / b"\x00\x01")
    c = node.dp.counters
    assert int(c.sum()) == 4 == int(node.dp.verdicts.sum())
    assert (c[Stage.DNS, Reason.DNS_ANSWERED], c[Stage.DNS, Reason.DNS_MALFORMED]) == (2, 1)


def test_a_reload_swaps_the_zone_whole(node, tmp_path):
    objs = cluster_objects() + [service("new", [port("http", 80, 80)], cluster_ips=("10.96.0.77",))]
    assert answer_of(node.send(q("new.shop.svc.cluster.local"))).rcode() == dns.rcode.NXDOMAIN
    node.reload(objs)
    s = node.send(q("new.shop.svc.cluster.local"))
    assert [r.to_text() for r in answer_of(s).answer] == [f"new.shop.svc.{Z} 5 IN A 10.96.0.77"]
    # a snapshot that fails validation changes nothing
    bad = objs + [service("broken", [port("x", 99999, 1)], cluster_ips=("10.96.0.78",))]
    with pytest.raises(ConfigError):
        node.reload(bad)
    assert answer_of(node.send(q("new.shop.svc.cluster.local"))).answer


def test_an_endpoint_update_changes_headless_answers_and_ptrs(node):
    s = node.send(q("db.shop.svc.cluster.local"))
    assert len(answer_of(s).answer[0]) == 3
    node.dp.update_endpoints(endpoint_slice("db", [("pg", "TCP", 5432)], [ep("10.244.1.99", hostname="db-9")]))
    s = node.send(q("db.shop.svc.cluster.local"))
    assert [r.to_text() for r in answer_of(s).answer] == [f"db.shop.svc.{Z} 5 IN A 10.244.1.99"]
    assert answer_of(node.send(q("db-9.db.shop.svc.cluster.local"))).answer
    assert answer_of(node.send(q("db-1.db.shop.svc.cluster.local"))).rcode() == dns.rcode.NXDOMAIN
    s = node.send(q("99.1.244.10.in-addr.arpa", "PTR"))
    assert [r.to_text() for r in answer_of(s).answer] == [
        f"99.1.244.10.in-addr.arpa. 5 IN PTR db-9.db.shop.svc.{Z}"]
    assert node.send(q("21.2.244.10.in-addr.arpa", "PTR")).verdict == Verdict.FORWARD   # gone: passed on


def test_dns_disabled_or_without_an_address_leaves_queries_to_the_dns_pods(tmp_path):
    for objs in (cluster_objects(dns={"enabled": False}),
                 [o for o in cluster_objects() if o["metadata"].get("name") != "kube-dns"]):
        h = Harness(tmp_path / str(len(objs)), objs)
        assert h.dp.dns_zone is None and h.dp.pipeline.dns is None
        s = h.send(q("web.shop.svc.cluster.local"))
        assert s.verdict in (Verdict.FORWARD, Verdict.REJECT, Verdict.DROP) and s.verdict != Verdict.REPLY


def test_the_verdict_log_names_the_query_type_and_rcode(node):
    b = Batch(4)
    for pkt in (q("WEB.shop.svc.cluster.local", "AAAA"), q("nope.shop.svc.cluster.local", "SRV"),
                q("example.org", "HTTPS"), q("x", "TYPE999")):
        b.append(raw(Ether() / pkt))
    out = io.BytesIO()
    log = node.dp.verdict_log(out, 4)
    node.dp.process(b, log)
    log.write(b)
    lines = [json.loads(l) for l in out.getvalue().decode().splitlines()]
    assert [l["dns"] for l in lines] == [
        {"name": "web.shop.svc.cluster.local.", "type": "AAAA", "rcode": "NOERROR", "outcome": "nodata"},
        {"name": "nope.shop.svc.cluster.local.", "type": "SRV", "rcode": "NXDOMAIN", "outcome": "nxdomain"},
        {"name": "example.org.", "type": "HTTPS", "rcode": None, "outcome": "out_of_zone"},
        {"name": "x.", "type": "TYPE999", "rcode": None, "outcome": "out_of_zone"}]
    assert [l["verdict"] for l in lines] == ["reply", "reply", "forward", "forward"]


def test_log_names_with_any_bytes_are_escaped_into_valid_json():
    note = {"outcome": 3, "rcode": 3, "qtype": 1, "tc": 0, "name": b"\x04a.b\"\x03\\\x00\x20\x00"}
    wire = note["name"]
    rec = (note["outcome"], note["rcode"], note["qtype"], len(wire), note["tc"], (0, 0),
           list(wire) + [0] * (256 - len(wire)))
    got = json.loads(note_json(rec))
    assert got["name"] == "a\\.b\\\".\\\\\\000\\032."
    assert got["rcode"] == "NXDOMAIN" and got["type"] == "A"


def test_replay_summary_counts_dns_outcomes(tmp_path):
    from scapy.all import wrpcap
    pcap = tmp_path / "dns.pcap"
    wrpcap(str(pcap), [Ether() / q("web.shop.svc.cluster.local"), Ether() / q("nope.shop.svc.cluster.local"),
                       Ether() / q("example.org")])
    snap = write_snapshot(tmp_path / "snap", cluster_objects())
    from kdp.replay import replay
    result = replay(str(pcap), str(tmp_path / "o.pcap"), cluster=[str(snap)], node="node-1")
    assert result.dns == {"answer": 1, "nxdomain": 1, "out_of_zone": 1}
    assert result.by_verdict()["reply"] == 2 and result.packets_out == 3
    assert result.to_json()["dns"] == result.dns


def test_kdp_show_dns_lists_the_names_with_their_records(capsys, tmp_path):
    snap = write_snapshot(tmp_path / "s", cluster_objects())
    assert main(["show", "dns", "--cluster", str(snap), "--node", "node-1"]) == 0
    out = capsys.readouterr().out
    assert "zone cluster.local. answered at 10.96.0.53:53, fd00:96::53:53" in out
    assert any(l.split()[:4] == ["web.shop.svc.cluster.local.", "5", "A", "10.96.0.10"] for l in out.splitlines())
    assert "https.tcp.web" not in out                  # spelling aliases: said once in the header
    assert main(["show", "dns", "--json", "--cluster", str(snap), "--node", "node-1"]) == 0
    view = json.loads(capsys.readouterr().out)["dns"]
    rows = {r["name"]: r for r in view["names"]}
    assert rows["ext.shop.svc.cluster.local."]["passed_on"] == ["A", "AAAA"]
    assert rows["https.tcp.web.shop.svc.cluster.local."]["alias_of"] == "_https._tcp.web.shop.svc.cluster.local."
    assert {"type": "PTR", "ttl": 5, "name": "10.0.96.10.in-addr.arpa.",
            "data": "web.shop.svc.cluster.local."} in rows["10.0.96.10.in-addr.arpa."]["records"]
    snap2 = write_snapshot(tmp_path / "s2", cluster_objects(dns={"enabled": False}))
    assert main(["show", "dns", "--cluster", str(snap2), "--node", "node-1"]) == 0
    assert "not answered by kdp (dns.enabled is false)" in capsys.readouterr().out


@pytest.mark.parametrize("dns_spec, field", [
    ({"ttl": 4000}, "spec.dns.ttl"),
    ({"ttl": "5s"}, "spec.dns.ttl"),
    ({"listen": ["10.96.0.300"]}, "spec.dns.listen[0]"),
    ({"listen": ["[fd00::1]:0"]}, "spec.dns.listen[0]"),
    ({"clusterDomain": "bad..domain"}, "spec.dns.clusterDomain"),
    ({"clusterDomain": "10.in-addr.arpa"}, "spec.dns.clusterDomain"),
    ({"pods": "verified"}, "spec.dns.pods"),
    ({"enabled": "yes"}, "spec.dns.enabled"),
    ({"upstream": "8.8.8.8"}, "spec.dns.upstream"),
])
def test_bad_dns_settings_are_errors_naming_the_field(dns_spec, field):
    with pytest.raises(ConfigError) as exc:
        Cluster.from_documents(cluster_objects(dns=dns_spec), node="node-1")
    assert f"NodeConfig node-1: {field}:" in str(exc.value)


def test_bad_endpoint_hostnames_and_external_names_are_errors():
    objs = cluster_objects() + [endpoint_slice("h", [], [ep("10.244.1.5", hostname="Not_A_Label")])]
    with pytest.raises(ConfigError, match=r"EndpointSlice shop/h-a: endpoints\[0\].hostname"):
        Cluster.from_documents(objs, node="node-1")
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "shop", "name": "e"},
           "spec": {"type": "ExternalName", "externalName": "not a name"}}
    with pytest.raises(ConfigError, match=r"Service shop/e: spec.externalName"):
        Cluster.from_documents(cluster_objects() + [bad], node="node-1")


def test_dns_settings_are_read():
    c = Cluster.from_documents(cluster_objects(dns={"clusterDomain": "Corp.Example.", "ttl": 0,
                                                    "listen": ["169.254.20.10", "[fd00::10]:5353"],
                                                    "pods": "disabled"}), node="node-1")
    d = c.config.dns
    assert (d.enabled, d.cluster_domain, d.ttl, d.pods) == (True, "corp.example", 0, "disabled")
    assert [(ip[0], port) for ip, port in d.listen] == [(4, 53), (6, 5353)]


def test_a_query_from_another_node_through_ipip_is_answered_back_through_the_tunnel(tmp_path):
    from kdptest import NODE1, NODE2
    h = Harness(tmp_path, [o if o.get("kind") != "NodeConfig" else
                           {**o, "spec": {**o["spec"], "encapsulation": {"mode": "IPIP"}}}
                           for o in cluster_objects()])
    inner = IP(src="10.244.2.77", dst=DNS_IP) / UDP(sport=5555, dport=53) / make_query("web.shop.svc.cluster.local")
    s = h.send(IP(src=NODE2, dst=NODE1) / inner, in_port="uplink")
    assert (s.verdict, s.reason, s.out_port) == (Verdict.REPLY, Reason.DNS_ANSWERED, "uplink")
    # the answer is routed to the asking pod: IP-in-IP back to its node
    assert (s.outer.src, s.outer.dst, s.outer.proto) == (NODE1, NODE2, 4)
    assert (s.ip.src, s.ip.dst, s.ip[UDP].dport) == (DNS_IP, "10.244.2.77", 5555)
    assert [r.to_text() for r in answer_of(s).answer] == [f"web.shop.svc.{Z} 5 IN A 10.96.0.10"]
