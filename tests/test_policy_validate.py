"""Validation of the policy kinds: every problem names the file, the object and the
field, all problems of a snapshot are reported together, and a snapshot that fails
changes nothing (the running data plane keeps its policy)."""
import pytest
import yaml

from kdp.control import Cluster
from kdp.errors import ConfigError

NODECONFIG = {"apiVersion": "kdp.dev/v1alpha1", "kind": "NodeConfig", "metadata": {"name": "n1"},
              "spec": {"nodeAddresses": ["192.168.0.1"], "podCIDRs": ["10.1.1.0/24"]}}


def np_(spec, name="p", ns="shop"):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def cnp(spec, name="c"):
    return {"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": name}, "spec": spec}


def anp(spec, name="a"):
    return {"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
            "metadata": {"name": name}, "spec": spec}


def errors_of(tmp_path, *objs):
    path = tmp_path / "snap.yaml"
    path.write_text(yaml.safe_dump_all([NODECONFIG, *objs]))
    with pytest.raises(ConfigError) as e:
        Cluster.load([str(path)], node="n1")
    return str(e.value)


def loads(*objs):
    return Cluster.from_documents([NODECONFIG, *objs], node="n1")


@pytest.mark.parametrize("spec, field, words", [
    ({"podSelector": {"matchLabel": {"a": "b"}}}, "spec.podSelector.matchLabel", "unknown field"),
    ({"podSelector": {"matchLabels": {"a b": "c"}}}, "spec.podSelector.matchLabels[a b]", "label key"),
    ({"podSelector": {"matchLabels": {"app": "-x"}}}, "spec.podSelector.matchLabels[app]", "label value"),
    ({"podSelector": {"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["x"]}]}},
     "spec.podSelector.matchExpressions[0].operator", "In, NotIn, Exists, DoesNotExist"),
    ({"podSelector": {"matchExpressions": [{"key": "app", "operator": "In"}]}},
     "spec.podSelector.matchExpressions[0].values", "non-empty"),
    ({"podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["x"]}]}},
     "spec.podSelector.matchExpressions[0].values", "must be empty"),
    ({"podSelector": {}, "policyTypes": ["Ingress", "Sideways"]}, "spec.policyTypes[1]", "Ingress or Egress"),
    ({"podSelector": {}, "policyTypes": ["Ingress", "Ingress"]}, "spec.policyTypes[1]", "duplicate"),
    ({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]},
     "spec.ingress[0].from[0].ipBlock.cidr", "not a CIDR"),
    ({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24"]}}]}]},
     "spec.ingress[0].from[0].ipBlock.except[0]", "strict subset"),
    ({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.0.0/16"]}}]}]},
     "spec.ingress[0].from[0].ipBlock.except[0]", "strict subset"),
    ({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["fd00::/8"]}}]}]},
     "spec.egress[0].to[0].ipBlock.except[0]", "strict subset"),
    ({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]},
     "spec.ingress[0].from[0]", "both ipBlock and another peer"),
    ({"podSelector": {}, "ingress": [{"from": [{}]}]}, "spec.ingress[0].from[0]", "must specify a peer"),
    ({"podSelector": {}, "ingress": [{"ports": [{"port": 0}]}]}, "spec.ingress[0].ports[0].port", "1..65535"),
    ({"podSelector": {}, "ingress": [{"ports": [{"port": 70000}]}]}, "spec.ingress[0].ports[0].port", "1..65535"),
    ({"podSelector": {}, "ingress": [{"ports": [{"port": "Not_A_Name"}]}]}, "spec.ingress[0].ports[0].port", "port name"),
    ({"podSelector": {}, "ingress": [{"ports": [{"protocol": "ICMP", "port": 1}]}]},
     "spec.ingress[0].ports[0].protocol", "TCP, UDP, SCTP"),
    ({"podSelector": {}, "ingress": [{"ports": [{"endPort": 90}]}]}, "spec.ingress[0].ports[0].endPort",
     "when port is not specified"),
    ({"podSelector": {}, "ingress": [{"ports": [{"port": 100, "endPort": 90}]}]}, "spec.ingress[0].ports[0].endPort",
     "greater than or equal to port"),
    ({"podSelector": {}, "ingress": [{"ports": [{"port": "http", "endPort": 90}]}]},
     "spec.ingress[0].ports[0].endPort", "named port"),
    ({"podSelector": {}, "ingress": [{"ports": [{"port": 80, "endPort": 65536}]}]},
     "spec.ingress[0].ports[0].endPort", "1..65535"),
    ({"podSelector": {}, "ingres": []}, "spec.ingres", "unknown field"),
])
def test_networkpolicy_problem_names_file_object_and_field(tmp_path, spec, field, words):
    text = errors_of(tmp_path, np_(spec))
    assert "snap.yaml#1: NetworkPolicy shop/p: " + field + ":" in text, text
    assert words in text


@pytest.mark.parametrize("obj, field, words", [
    (cnp({"tier": "Middle", "priority": 1, "subject": {"namespaces": {}}}), "spec.tier", "Admin or Baseline"),
    (cnp({"tier": "Admin", "priority": 1001, "subject": {"namespaces": {}}}), "spec.priority", "0..1000"),
    (cnp({"tier": "Admin", "subject": {"namespaces": {}}}), "spec.priority", "is required"),
    (cnp({"tier": "Admin", "priority": 1, "subject": {"namespaces": {}, "pods": {"podSelector": {}}}}),
     "spec.subject", "exactly one of namespaces, pods"),
    (cnp({"tier": "Admin", "priority": 1, "subject": {"pods": {"namespaceSelector": {}}}}),
     "spec.subject.pods.podSelector", "is required"),
    (cnp({"tier": "Admin", "priority": 1, "subject": {"namespaces": {}},
          "ingress": [{"action": "Allow", "from": [{"namespaces": {}}]}]}),
     "spec.ingress[0].action", "Accept, Deny, Pass"),
    (cnp({"tier": "Admin", "priority": 1, "subject": {"namespaces": {}}, "ingress": [{"action": "Deny"}]}),
     "spec.ingress[0].from", "is required"),
    (cnp({"tier": "Admin", "priority": 1, "subject": {"namespaces": {}},
          "ingress": [{"action": "Deny", "from": [{"networks": ["10.0.0.0/8"]}]}]}),
     "spec.ingress[0].from[0].networks", "unknown field"),
    (cnp({"tier": "Admin", "priority": 1, "subject": {"namespaces": {}},
          "egress": [{"action": "Deny", "to": [{"networks": ["10.0.0.300/8"]}]}]}),
     "spec.egress[0].to[0].networks[0]", "not a CIDR"),
    (cnp({"tier": "Admin", "priority": 1, "subject": {"namespaces": {}},
          "egress": [{"action": "Deny", "to": [{"networks": ["10.0.0.0/8"]}],
                      "protocols": [{"destinationNamedPort": "http"}]}]}),
     "spec.egress[0].protocols", "named ports cannot be used with networks or nodes"),
    (cnp({"tier": "Admin", "priority": 1, "subject": {"namespaces": {}},
          "ingress": [{"action": "Deny", "from": [{"namespaces": {}}],
                       "protocols": [{"tcp": {"destinationPort": {"range": {"start": 90, "end": 80}}}}]}]}),
     "spec.ingress[0].protocols[0].tcp.destinationPort.range", "start must be less than end"),
    (cnp({"tier": "Admin", "priority": 1, "subject": {"namespaces": {}},
          "ingress": [{"action": "Deny", "from": [{"namespaces": {}}],
                       "protocols": [{"tcp": {"destinationPort": {"number": 0}}}]}]}),
     "spec.ingress[0].protocols[0].tcp.destinationPort.number", "1..65535"),
    (cnp({"tier": "Admin", "priority": 1, "subject": {"namespaces": {}},
          "ingress": [{"action": "Deny", "from": [{"namespaces": {}}], "protocols": [{"tcp": {}, "udp": {}}]}]}),
     "spec.ingress[0].protocols[0]", "exactly one of tcp, udp, sctp, destinationNamedPort"),
    (cnp({"tier": "Admin", "priority": 1, "subject": {"namespaces": {}},
          "ingress": [{"action": "Deny", "from": [{}]}]}), "spec.ingress[0].from[0]", "exactly one of"),
    (anp({"priority": 1, "subject": {"namespaces": {}},
          "egress": [{"action": "Accept", "to": [{"namespaces": {}}]}]}),
     "spec.egress[0].action", "Allow, Deny, Pass"),
    (anp({"priority": 1, "subject": {"namespaces": {}},
          "ingress": [{"action": "Deny", "from": [{"namespaces": {}}],
                       "ports": [{"portRange": {"protocol": "TCP", "start": 80, "end": 80}}]}]}),
     "spec.ingress[0].ports[0].portRange", "start must be less than end"),
    (anp({"priority": 1, "subject": {"namespaces": {}},
          "ingress": [{"action": "Deny", "from": [{"namespaces": {}}],
                       "ports": [{"portNumber": {"protocol": "TCP", "port": 80}, "namedPort": "x"}]}]}),
     "spec.ingress[0].ports[0]", "exactly one of portNumber, namedPort, portRange"),
    (anp({"priority": 1, "subject": {"namespaces": {"namespaceSelector": {}, "sameLabels": ["t"]}}}),
     "spec.subject.namespaces.sameLabels", "removed"),
    ({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
      "metadata": {"name": "other"}, "spec": {"subject": {"namespaces": {}}}}, "metadata.name", "singleton"),
    ({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
      "metadata": {"name": "default"}, "spec": {"subject": {"namespaces": {}},
                                                "ingress": [{"action": "Pass", "from": [{"namespaces": {}}]}]}},
     "spec.ingress[0].action", "Allow, Deny"),
    ({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "ClusterNetworkPolicy",
      "metadata": {"name": "x"}, "spec": {}}, "apiVersion", "policy.networking.k8s.io/v1alpha2"),
])
def test_cluster_policy_problem_names_file_object_and_field(tmp_path, obj, field, words):
    text = errors_of(tmp_path, obj)
    ref = f"{obj['kind']} {obj['metadata']['name']}"
    assert f"snap.yaml#1: {ref}: {field}:" in text, text
    assert words in text


def test_every_problem_of_a_snapshot_is_reported_at_once(tmp_path):
    text = errors_of(tmp_path, np_({"podSelector": {}, "policyTypes": ["Up"],
                                    "ingress": [{"ports": [{"port": 0}]}]}),
                     cnp({"tier": "Admin", "priority": -1, "subject": {"namespaces": {}}}))
    assert "(3 problems)" in text


def test_named_container_port_with_a_bad_name_is_an_error(tmp_path):
    p = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "namespace": "shop"},
         "spec": {"containers": [{"name": "c", "ports": [{"name": "HTTP", "containerPort": 80}]}]}}
    text = errors_of(tmp_path, p)
    assert "Pod shop/x: spec.containers[0].ports[0].name:" in text


def test_policy_defaults_as_the_api_server_sets_them():
    c = loads(np_({"podSelector": None, "egress": []}, name="a"),
              np_({"podSelector": {}, "egress": [{}]}, name="b"),
              np_({"podSelector": {}, "policyTypes": ["Egress"]}, name="c"))
    a, b, cc = (c.policies[("shop", n)] for n in "abc")
    assert (a.ingress, a.egress) == ([], None)                  # Ingress only
    assert b.ingress == [] and len(b.egress) == 1               # egress rules: Egress too
    assert (cc.ingress, cc.egress) == (None, [])
    assert a.subject_pods.empty                                 # null podSelector: every pod
    assert b.egress[0].peers is None and b.egress[0].ports is None
    ns = loads({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}).namespaces["shop"]
    assert ns.labels["kubernetes.io/metadata.name"] == "shop"


def test_unknown_peer_fails_closed_with_a_notice():
    c = loads(cnp({"tier": "Admin", "priority": 1, "subject": {"namespaces": {}},
                   "egress": [{"action": "Deny", "to": [{"services": {"name": "x"}}]},
                              {"action": "Accept", "to": [{"domainNames": ["example.com"]}]}]}))
    pol = c.cluster_policies[("ClusterNetworkPolicy", "c")]
    assert [p.kind for r in pol.egress for p in r.peers] == ["none", "none"]
    assert any("fails closed" in n for n in c.notices)
    assert any("domain-name peers are not supported" in n for n in c.notices)


def test_an_invalid_reload_keeps_the_running_policy(tmp_path):
    from kdptest import Harness, base_objects
    from scapy.all import IP, TCP
    from kdp.reasons import Reason
    deny = np_({"podSelector": {}, "policyTypes": ["Ingress"]}, name="deny")
    h = Harness(tmp_path, base_objects() + [deny])
    pkt = IP(src="10.244.2.10", dst="10.244.1.50") / TCP(sport=1234, dport=80, flags="S")
    assert h.send(pkt).reason == Reason.POLICY_DENIED_INGRESS
    with pytest.raises(ConfigError, match="spec.policyTypes"):
        h.reload(base_objects() + [np_({"podSelector": {}, "policyTypes": ["Nope"]}, name="deny")])
    assert h.send(IP(src="10.244.2.10", dst="10.244.1.50") / TCP(sport=1235, dport=80, flags="S")).reason == \
        Reason.POLICY_DENIED_INGRESS
