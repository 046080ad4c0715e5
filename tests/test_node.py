"""Node assembly (kdp.control.node): one NodeTables holds everything a node's pipeline
runs on, compiled from one Cluster, and the Dataplane swaps it in by keyword."""
import dataclasses
import ipaddress

from scapy.all import IP, UDP

from kdp._fast.route import RouteKind
from kdp.control import Cluster
from kdp.control.node import PipelineTables, compile_node, plain_router
from kdp.ports import UPLINK, PortTable

from kdptest import (CLIENT, NODE1, NODE2, WEB1, WEB2, Harness, base_objects, endpoint,
                     endpoint_slice, port, service)

ENCAP = {"encapsulation": {"mode": "VXLAN", "vxlanPort": 8472},
         "conntrack": {"maxFlows": 4096, "udpTimeout": "45s", "dropInvalid": True}}


def dns(*endpoints):
    return base_objects(**ENCAP) + [service("dns", [port("dns", 53, 53, "UDP")]),
                                     endpoint_slice("dns", [("dns", "UDP", 53)], list(endpoints))]


def node_tables(objects, previous=None):
    return compile_node(Cluster.from_documents(objects, node="node-1"), PortTable(), previous=previous)


def test_compile_node_compiles_every_table_of_the_node_from_one_cluster():
    node = node_tables(dns(endpoint(WEB1, "node-1")))
    assert node.node == "node-1"
    assert [r.name for r in node.services.records] == ["shop/dns:dns"]
    assert node.pipeline.services is node.services.service
    # one route stage entry per NodeRoute, in order; the other node's block goes via its address
    entries = node.pipeline.routes.routes
    assert [e.note for e in entries] == [f"{r.kind} {r.target}" for r in node.services.routes]
    remote = [e for e in entries if e.kind == RouteKind.RT_REMOTE_NODE]
    assert {str(e.via) for e in remote if e.prefix.version == 4} == {NODE2}
    # node-2 has no IPv6 address: its IPv6 block has no next hop (never an IPv4 one)
    assert [e.via for e in remote if e.prefix.version == 6] == [None]
    # tunnels: this node's addresses, peers the other node's
    tunnels = node.pipeline.tunnels
    assert tunnels.check_peers
    assert list(tunnels.peers4) == [int(ipaddress.IPv4Address(NODE2))]
    assert list(tunnels.local4) == [int(ipaddress.IPv4Address(NODE1))]
    assert node.vxlan_port == 8472
    assert node.conntrack.max_flows == 4096 and node.conntrack.drop_invalid
    assert node.conntrack.timeouts["udp_timeout"] == 45


def test_pipeline_tables_are_the_pipelines_keywords_at_build_and_swap():
    """Every PipelineTables field reaches the pipeline under its own name, so a new
    table added there is handed over by the Dataplane without other changes."""
    old = node_tables(dns(endpoint(WEB1, "node-1")))
    pipeline = old.new_pipeline()
    for f in dataclasses.fields(PipelineTables):
        assert getattr(pipeline, f.name) is getattr(old.pipeline, f.name), f.name
    assert pipeline.vxlan_port == 8472
    assert pipeline.conntrack.capacity >= 4096 and pipeline.conntrack.settings["drop_invalid"]
    new = node_tables(dns(endpoint(WEB2, "node-2")), previous=old)
    ct = pipeline.conntrack
    pipeline.swap(**new.pipeline.as_kwargs())
    for f in dataclasses.fields(PipelineTables):
        assert getattr(pipeline, f.name) is getattr(new.pipeline, f.name), f.name
    assert pipeline.conntrack is ct


def test_plain_router_sends_everything_to_the_uplink_without_conntrack():
    node = plain_router()
    assert node.services is None and node.conntrack is None and node.notices == []
    pipeline = node.new_pipeline()
    assert pipeline.conntrack is None and pipeline.services is None and pipeline.tunnels is None
    for address in ("10.1.2.3", "2001:db8::1"):
        route = pipeline.routes.lookup(address)
        assert (route.kind, route.port) == (RouteKind.RT_UPLINK, UPLINK)


def test_reload_change_names_the_udp_backend_that_left():
    old = node_tables(dns(endpoint(WEB1, "node-1"), endpoint(WEB2, "node-2")))
    new = node_tables(dns(endpoint(WEB2, "node-2")), previous=old)
    change = new.changes_from(old)
    assert change.flush == {(17, WEB1, 53)}
    assert list(change.renumber) == [0]
    assert plain_router().changes_from(old).flush == set()


def test_dataplane_runs_on_the_node_tables_it_swapped_in(tmp_path):
    h = Harness(tmp_path, dns(endpoint(WEB1, "node-1")))
    first = h.dp.node
    assert h.dp.pipeline.routes is first.pipeline.routes and h.dp.tables is first.services
    h.reload(dns(endpoint(WEB2, "node-2")))
    assert h.dp.node is not first and h.dp.pipeline.routes is h.dp.node.pipeline.routes
    out = h.send(IP(src=CLIENT, dst="10.96.0.10") / UDP(sport=5353, dport=53))
    assert out.dst == (WEB2, 53)
    assert h.dp.update_endpoints(endpoint_slice("dns", [("dns", "UDP", 53)], [endpoint(WEB1, "node-1")])) == 1
