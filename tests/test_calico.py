"""Calico's IPPool and BlockAffinity objects, Calico's and flannel's Node annotations, and
the NodeConfig fields that override them: validation errors, and the routes they make."""
import pytest

from kdp.control import Cluster
from kdp.control.node import compile_node
from kdp.control.routes import node_routes
from kdp.errors import ConfigError
from kdp.ports import PortTable

from kdptest import NODE1, NODE1_V6, NODE2, base_objects, node

CALICO = "crd.projectcalico.org/v1"


def pool(name, cidr, **spec):
    return {"apiVersion": CALICO, "kind": "IPPool", "metadata": {"name": name}, "spec": {"cidr": cidr, **spec}}


def affinity(node_name, cidr, state="confirmed", deleted="false"):
    return {"apiVersion": CALICO, "kind": "BlockAffinity",
            "metadata": {"name": f"{node_name}-{cidr.replace('/', '-').replace(':', '-')}"},
            "spec": {"node": node_name, "cidr": cidr, "state": state, "deleted": deleted}}


def annotated(name, address, cidrs=(), **annotations):
    n = node(name, address, list(cidrs))
    n["metadata"]["annotations"] = annotations
    return n


def load(objects, node_name="node-1"):
    return Cluster.from_documents(objects, node=node_name)


def routes(objects, **config):
    objs = base_objects(**config) + objects
    return {r.cidr: r for r in node_routes(load(objs))}


def errors(objects):
    with pytest.raises(ConfigError) as exc:
        load(base_objects() + objects)
    return str(exc.value)


# ------------------------------------------------------------------ validation

@pytest.mark.parametrize("obj, message", [
    (pool("p", "10.244.0.0/16", ipipMode="Sometimes"), "IPPool p: spec.ipipMode: must be one of Always, CrossSubnet, Never"),
    (pool("p", "10.244.0.0/16", ipipMode="Always", vxlanMode="Always"),
     "IPPool p: spec.vxlanMode: ipipMode and vxlanMode cannot both be enabled"),
    (pool("p", "fd00:244::/48", ipipMode="Always"), "IPPool p: spec.ipipMode: IP-in-IP is not supported on an IPv6 pool"),
    (pool("p", "10.244.0.0/16", blockSize=19), "IPPool p: spec.blockSize: must be an integer in 20..32"),
    (pool("p", "fd00:244::/48", blockSize=64), "IPPool p: spec.blockSize: must be an integer in 116..128"),
    (pool("p", "not-a-cidr"), "IPPool p: spec.cidr: not a CIDR"),
    ({"apiVersion": CALICO, "kind": "IPPool", "metadata": {"name": "p"}, "spec": {}}, "IPPool p: spec.cidr: is required"),
    (pool("p", "10.244.0.0/16", natOutgoing="yes"), "IPPool p: spec.natOutgoing: must be true or false"),
    (affinity("node-2", "10.244.2.0/26", state="gone"), "spec.state: must be one of confirmed, pending, pendingDeletion"),
    (affinity("node-2", "10.244.2.0/26", deleted="maybe"), "spec.deleted: must be \"true\" or \"false\""),
    ({"apiVersion": CALICO, "kind": "BlockAffinity", "metadata": {"name": "b"}, "spec": {"cidr": "10.1.0.0/26"}},
     "BlockAffinity b: spec.node: is required"),
    ({"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "p"}, "spec": {"cidr": "10.0.0.0/8"}},
     "IPPool p: apiVersion: must be crd.projectcalico.org/v1"),
])
def test_invalid_calico_object_is_an_error_naming_the_object_and_field(obj, message):
    assert message in errors([obj])


def test_overlapping_pools_are_refused_as_calico_refuses_them():
    text = errors([pool("a", "10.244.0.0/16"), pool("b", "10.244.128.0/17")])
    assert "IPPool b: spec.cidr: 10.244.128.0/17 overlaps IPPool a (10.244.0.0/16)" in text


@pytest.mark.parametrize("annotation, value", [
    ("projectcalico.org/IPv4Address", "192.168.56.300/24"),
    ("projectcalico.org/IPv4Address", "fd00::1/64"),
    ("projectcalico.org/IPv4IPIPTunnelAddr", "nope"),
    ("projectcalico.org/VXLANTunnelMACAddr", "66:00:00"),
    ("flannel.alpha.coreos.com/backend-data", "{not json"),
    ("flannel.alpha.coreos.com/backend-data", '{"VNI": -1}'),
    ("flannel.alpha.coreos.com/public-ip", "fd00::1"),
])
def test_invalid_annotation_is_an_error_naming_it(annotation, value):
    text = errors([annotated("node-3", "10.0.9.13", **{annotation: value})])
    assert f"Node node-3: metadata.annotations[{annotation}]" in text


@pytest.mark.parametrize("spec, message", [
    ({"uplink": {"mtu": 100}}, "spec.uplink.mtu: must be an integer in 576..65535"),
    ({"uplink": {"mac": "zz:00:00:00:00:00"}}, "spec.uplink.mac: not a MAC address"),
    ({"uplink": {"mtus": 1}}, "spec.uplink.mtus: unknown field"),
    ({"encapsulation": {"vtepMAC": "1:2"}}, "spec.encapsulation.vtepMAC: not a MAC address"),
    ({"encapsulation": {"mtu": 70000}}, "spec.encapsulation.mtu: must be an integer in 576..65535"),
    ({"encapsulation": {"mode": "GRE"}}, "spec.encapsulation.mode: must be one of None, IPIP, VXLAN"),
    ({"encapsulation": {"vni6": 1}}, "spec.encapsulation.vni6: unknown field"),
    ({"ipPools": [{"cidr": "10.244.0.0/16", "vxlanMode": "Always", "ipipMode": "Always"}]},
     "spec.ipPools[0].vxlanMode: ipipMode and vxlanMode cannot both be enabled"),
    ({"blockAffinities": [{"node": "node-2"}]}, "spec.blockAffinities[0].cidr: is required"),
    ({"neighbours": [{"ip": "10.244.1.10"}]}, "spec.neighbours[0].mac: is required"),
    ({"nodeAddresses": ["192.168.56.11/33"]}, "spec.nodeAddresses[0]: not an IP address"),
    ({"ports": [{"name": "web", "pod": "shop/web-1", "mac": "bad"}]}, "spec.ports[0].mac: not a MAC address"),
])
def test_invalid_network_field_of_a_nodeconfig_is_an_error_naming_it(spec, message):
    with pytest.raises(ConfigError) as exc:
        load(base_objects(**spec))
    assert f"NodeConfig node-1: {message}" in str(exc.value)


# ------------------------------------------------------------------ routes from Calico's objects

def test_blocks_of_other_nodes_come_from_confirmed_block_affinities():
    r = routes([pool("p", "10.244.0.0/16", ipipMode="Always"),
                affinity("node-2", "10.244.2.128/26"),
                affinity("node-2", "10.244.7.0/26", state="pending"),
                affinity("node-2", "10.244.8.0/26", deleted="true")])
    assert r["10.244.2.128/26"].kind == "node" and r["10.244.2.128/26"].target == "node-2"
    assert r["10.244.2.128/26"].encap == "IPIP" and r["10.244.2.128/26"].pool == "p"
    assert "10.244.7.0/26" not in r and "10.244.8.0/26" not in r


def test_this_nodes_block_affinities_are_blackholed_and_its_pods_routed():
    r = routes([pool("p", "10.244.0.0/16"), affinity("node-1", "10.244.1.64/26")])
    assert r["10.244.1.64/26"].kind == "local-pods"
    assert r["10.244.1.10/32"].kind == "pod"


@pytest.mark.parametrize("mode, peer_subnet, expect", [
    ("Always", True, "IPIP"), ("Always", False, "IPIP"),
    ("CrossSubnet", True, "None"), ("CrossSubnet", False, "IPIP"),
    ("Never", False, "None"),
])
def test_ipip_modes_as_calico(mode, peer_subnet, expect):
    peer = NODE2 if peer_subnet else "10.0.9.12"
    objs = base_objects(nodeAddresses=[NODE1 + "/24", NODE1_V6])
    objs[2] = node("node-2", peer, ["10.244.2.0/24"])
    r = {x.cidr: x for x in node_routes(load(objs + [pool("p", "10.244.0.0/16", ipipMode=mode)]))}
    route = r["10.244.2.0/24"]
    assert route.encap == expect and route.via[1] == int.from_bytes(bytes(map(int, peer.split("."))), "big")
    assert route.mtu == (1480 if expect == "IPIP" else 1500)


def test_crosssubnet_takes_the_subnet_from_calicos_ipv4address_annotation():
    objs = base_objects()
    objs[1] = annotated("node-1", NODE1, ["10.244.1.0/24"], **{"projectcalico.org/IPv4Address": "192.168.56.11/24"})
    far = annotated("node-3", "10.0.9.13", [], **{"projectcalico.org/IPv4Address": "10.0.9.13/24"})
    r = {x.cidr: x for x in node_routes(load(objs + [far, pool("p", "10.244.0.0/16", vxlanMode="CrossSubnet"),
                                                    affinity("node-3", "10.244.3.0/26")]))}
    assert r["10.244.2.0/24"].encap == "None"              # node-2: 192.168.56.12, same /24
    assert r["10.244.3.0/26"].encap == "VXLAN"             # node-3: another subnet
    assert (r["10.244.3.0/26"].vxlan_port, r["10.244.3.0/26"].vni, r["10.244.3.0/26"].mtu) == (4789, 4096, 1450)
    assert r["192.168.56.0/24"].kind == "subnet" and r["192.168.56.0/24"].onlink


def test_without_a_known_subnet_crosssubnet_encapsulates_to_every_node():
    r = routes([pool("p", "10.244.0.0/16", ipipMode="CrossSubnet")])
    assert r["10.244.2.0/24"].encap == "IPIP"


def test_ipv6_pool_goes_in_vxlan_over_ipv6_on_calicos_v6_port_and_vni():
    objs = base_objects()
    objs[2] = node("node-2", NODE2, ["10.244.2.0/24", "fd00:244:2::/64"])
    objs[2]["status"]["addresses"].append({"type": "InternalIP", "address": "fd00:56::12"})
    r = {x.cidr: x for x in node_routes(load(objs + [pool("p6", "fd00:244::/32", vxlanMode="Always")]))}
    v6 = r["fd00:244:2::/64"]
    assert (v6.encap, v6.vxlan_port, v6.vni, v6.mtu) == ("VXLAN", 4790, 6096, 1430)
    assert v6.via == (6, int.from_bytes(bytes.fromhex("fd000056" + "0" * 22 + "12"), "big"))


def test_pod_mtu_is_the_uplinks_less_the_largest_overhead_and_nodeconfig_overrides():
    r = routes([pool("p", "10.244.0.0/16", vxlanMode="Always")], uplink={"mtu": 9000})
    assert r["10.244.1.10/32"].mtu == 8950 and r["10.244.2.0/24"].mtu == 8950 and r["0.0.0.0/0"].mtu == 9000
    r = routes([pool("p", "10.244.0.0/16", vxlanMode="Always")], encapsulation={"mtu": 1400})
    assert r["10.244.1.10/32"].mtu == 1400 and r["10.244.2.0/24"].mtu == 1400


def test_nodeconfig_ip_pools_override_the_pool_of_the_same_cidr():
    cluster = load(base_objects(ipPools=[{"cidr": "10.244.0.0/16", "vxlanMode": "Always", "natOutgoing": True}]) +
                   [pool("p", "10.244.0.0/16", ipipMode="Always")])
    r = {x.cidr: x for x in node_routes(cluster)}
    assert r["10.244.2.0/24"].encap == "VXLAN"
    node_tables = compile_node(cluster, PortTable())
    assert node_tables.pipeline.natout is not None


def test_nodeconfig_block_affinities_assign_blocks_over_the_objects():
    r = routes([pool("p", "10.244.0.0/16"), affinity("node-2", "10.244.9.0/26")],
               blockAffinities=[{"node": "node-3", "cidr": "10.244.9.0/26"}])
    assert r["10.244.9.0/26"].target == "node-3"


def test_calico_pools_join_the_default_cluster_cidrs():
    objs = base_objects()
    del objs[0]["spec"]["clusterCIDRs"]
    cluster = load(objs + [pool("p", "10.128.0.0/14")])
    assert (4, 0x0A800000, 14) in cluster.config.cluster_cidrs


# ------------------------------------------------------------------ annotations

def test_calico_tunnel_addresses_are_the_nodes_own_and_its_ipv4address_an_endpoint():
    objs = base_objects()
    objs[1] = annotated("node-1", NODE1, ["10.244.1.0/24"], **{
        "projectcalico.org/IPv4Address": "10.0.0.11/24",
        "projectcalico.org/IPv4IPIPTunnelAddr": "10.244.1.1"})
    r = {x.cidr: x for x in node_routes(load(objs))}
    assert r["10.244.1.1/32"].kind == "host" and r["10.0.0.11/32"].kind == "host"
    # no pool in the snapshot: the annotations say IP-in-IP
    assert r["10.244.2.0/24"].encap == "IPIP"


def test_flannel_vxlan_backend_gives_its_port_vni_and_vtep_macs():
    data = '{"VNI":7,"VtepMAC":"5a:00:00:00:00:12"}'
    objs = base_objects()
    objs[1] = annotated("node-1", NODE1, ["10.244.1.0/24"], **{
        "flannel.alpha.coreos.com/backend-type": "vxlan",
        "flannel.alpha.coreos.com/backend-data": '{"VNI":7,"VtepMAC":"5a:00:00:00:00:11"}',
        "flannel.alpha.coreos.com/public-ip": NODE1})
    objs[2] = annotated("node-2", NODE2, ["10.244.2.0/24"], **{
        "flannel.alpha.coreos.com/backend-type": "vxlan",
        "flannel.alpha.coreos.com/backend-data": data,
        "flannel.alpha.coreos.com/public-ip": NODE2})
    del objs[0]["spec"]["nodeAddresses"]
    cluster = load(objs)
    r = {x.cidr: x for x in node_routes(cluster)}
    route = r["10.244.2.0/24"]
    assert (route.encap, route.vxlan_port, route.vni, route.vtep_mac) == ("VXLAN", 8472, 7, bytes.fromhex("5a0000000012"))
    tables = compile_node(cluster, PortTable())
    assert tables.vxlan_port == 8472 and tables.pipeline.tunnels is not None
    assert tables.pipeline.routes.node_vtep_mac == bytes.fromhex("5a0000000011")


def test_flannel_host_gw_routes_natively():
    objs = base_objects()
    objs[2] = annotated("node-2", NODE2, ["10.244.2.0/24"], **{"flannel.alpha.coreos.com/backend-type": "host-gw"})
    assert routes([])["10.244.2.0/24"].encap == "None"
    assert {x.cidr: x for x in node_routes(load(objs))}["10.244.2.0/24"].encap == "None"


def test_nodeconfig_encapsulation_wins_over_annotations():
    objs = base_objects(encapsulation={"mode": "IPIP"})
    objs[2] = annotated("node-2", NODE2, ["10.244.2.0/24"], **{"flannel.alpha.coreos.com/backend-type": "vxlan"})
    assert {x.cidr: x for x in node_routes(load(objs))}["10.244.2.0/24"].encap == "IPIP"


def test_other_nodes_nodeconfig_gives_their_addresses_and_macs():
    other = {"apiVersion": "kdp.dev/v1alpha1", "kind": "NodeConfig", "metadata": {"name": "node-2"},
             "spec": {"nodeAddresses": ["192.168.77.12"], "uplink": {"mac": "02:00:00:77:00:12"},
                      "encapsulation": {"vtepMAC": "66:00:00:77:00:12"}}}
    r = routes([other, pool("p", "10.244.0.0/16", vxlanMode="Always")])
    route = r["10.244.2.0/24"]
    assert route.via == (4, int.from_bytes(bytes([192, 168, 77, 12]), "big"))
    assert route.mac == bytes.fromhex("020000770012") and route.vtep_mac == bytes.fromhex("660000770012")


def test_gateway_and_neighbours_of_the_nodeconfig():
    r = routes([], uplink={"gateway": "192.168.56.1"},
               neighbours=[{"ip": "192.168.56.1", "mac": "02:00:00:00:00:01"},
                           {"ip": "10.244.1.10", "mac": "0a:58:0a:f4:01:0a"}])
    assert r["0.0.0.0/0"].via == (4, 0xC0A83801) and r["0.0.0.0/0"].mac == bytes.fromhex("020000000001")
    assert r["10.244.1.10/32"].mac == bytes.fromhex("0a580af4010a")
    assert r["10.244.1.10/32"].src_mac == b"\xee" * 6         # Calico's host-side veth MAC
