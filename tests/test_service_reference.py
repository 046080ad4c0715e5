"""Differential test: the compiled C decision against the plain reference model
(kdp.reference.service), which reads the validated model directly (no compiled tables)."""
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdp._fast import service as fast
from kdp.control import Cluster, addr, compile
from kdp.reference import service as reference

from kdptest import NODE, TOPOLOGY, base_docs, decide, topology_docs

RESULTS = {fast.SVC_MISS: reference.MISS, fast.SVC_HIT: reference.HIT,
           fast.SVC_DROP: reference.DROP, fast.SVC_REJECT: reference.REJECT}


SOURCES = ["127.0.0.1", "10.244.1.50", "10.244.1.10", "10.244.2.99", "192.168.56.11", "10.0.0.11", "192.0.2.7",
           "198.51.100.9", "203.0.113.10", "fd00:244:1::50", "fd00:244:1::10", "2001:db8::1", "fd00::11"]
DESTS = ["10.96.0.10", "10.96.0.20", "10.96.0.30", "10.96.0.31", "10.96.0.40", "10.96.0.50", "10.96.0.60",
         "10.96.0.70", "10.96.0.80", "10.96.0.90", "10.96.0.99", "10.96.1.1", "10.97.0.1", "198.18.0.40",
         "203.0.113.10", "203.0.113.11", "203.0.113.12", "192.168.56.11", "10.0.0.11", "192.168.56.12",
         "10.244.2.10", "127.0.0.1", "127.0.0.2", "fd00:96::10", "fd00:96::99", "fd00::11", "2001:db8::2"]
PORTS = [80, 81, 443, 8080, 30080, 30443, 30444, 30099, 53]
FRONTENDS = [("10.96.0.10", 80), ("10.96.0.20", 80), ("10.96.0.30", 443), ("10.96.0.31", 443),
             ("10.96.0.40", 80), ("10.96.0.50", 80), ("10.96.0.60", 80), ("10.96.0.70", 80),
             ("10.96.0.80", 80), ("10.96.0.90", 80), ("198.18.0.40", 80), ("203.0.113.10", 443),
             ("203.0.113.12", 443), ("192.168.56.11", 30080), ("192.168.56.11", 30443),
             ("192.168.56.11", 30444), ("10.0.0.11", 30080), ("127.0.0.1", 30080), ("fd00:96::10", 80)]
CONFIGS = [{}, {"proxyMode": "iptables"}, {"masquerade": {"masqueradeAll": True}},
           {"localTrafficDetection": "NodeCIDR"}, {"nodePortAddresses": ["all"]},
           {"nodePortAddresses": ["10.0.0.0/8"]},
           {"localTrafficDetection": "None"}, {"clusterCIDRs": []},
           {"localTrafficDetection": "InterfaceNamePrefix"}, {"localTrafficDetection": "BridgeInterface"},
           {"proxyMode": "iptables", "localhostNodePorts": False},
           {"proxyMode": "iptables", "nodePortAddresses": ["127.0.0.0/8", "192.168.56.0/24"]},
           {"proxyMode": "iptables", "nodePortAddresses": ["primary"]},
           {"proxyMode": "iptables", "nodePortAddresses": ["0.0.0.0/0"]},
           {"proxyMode": "iptables", "nodePortAddresses": ["fd00::/64"]},
           {"clusterCIDRs": ["10.244.0.0/16"]}, {"clusterCIDRs": ["fd00:244::/32"]},
           {"localTrafficDetection": "NodeCIDR", "podCIDRs": ["fd00:244:1::/64"]}]
POD_PORT = 5        # the port id a local pod's packets arrive on (the interface modes)
ZONES = ["zone-a"] * len(CONFIGS) + [""]   # node-1's zone label per world ("": none)
CONFIGS.append({})                        # the default NodeConfig on a node without a zone label
FRONTENDS += [(ip, 80) for ip in TOPOLOGY]  # Services with topology hints (kdptest.TOPOLOGY)


@pytest.fixture(scope="module")
def worlds():
    out = []
    for cfg, zone in zip(CONFIGS, ZONES):
        c = Cluster.from_documents(base_docs(**cfg) + topology_docs(zone), node=NODE)
        t = compile(c)
        t.service.set_pod_ports([POD_PORT])     # node assembly's job (kdp.control.node)
        out.append((c, t))
    return out


@settings(max_examples=1500, deadline=None)
@given(world=st.integers(0, len(CONFIGS) - 1), src=st.sampled_from(SOURCES),
       target=st.one_of(st.sampled_from(FRONTENDS), st.tuples(st.sampled_from(DESTS), st.sampled_from(PORTS))),
       proto=st.sampled_from([6, 6, 6, 17, 132, 1]), h=st.integers(0, 2**64 - 1), pod_port=st.booleans())
def test_compiled_decision_matches_reference(worlds, world, src, target, proto, h, pod_port):
    """Random packets over the test snapshot's addresses, under the NodeConfigs above,
    arriving on the uplink or on a local pod's port.
    (An exhaustive run over SOURCES x DESTS x PORTS x {TCP, UDP, ICMP} x CONFIGS,
    29,808 cases, agreed too when this test was written with six configurations.)"""
    dst, dport = target
    if ipaddress.ip_address(src).version != ipaddress.ip_address(dst).version:
        return
    c, t = worlds[world]
    t.service.clear_affinity()
    want = reference.decide(c, proto, src, dst, dport, from_pod_port=pod_port)
    got = decide(t, src, dst, dport, proto=proto, h=h, in_port=POD_PORT if pod_port else 0)
    assert RESULTS[got["result"]] == want.result, (src, dst, dport, proto, got)
    if want.result in (reference.DROP, reference.REJECT):
        assert got["reason"] == want.reason
    if want.result == reference.HIT:
        assert t.records[got["svc"]].name == want.service_port
        backend = (addr.parse_ip(got["dnat"]), got["dport"])
        assert backend in want.backends
        assert bool(got["flags"] & 2) == want.masquerades(backend)
