"""Network policy truth tables, through kdp's data planes (Python API and `kdp replay`).

Each scenario is a cluster (two nodes, namespaces with labels, pods with labels and
named ports), policies, and the expected reachability of flows (from, to, protocol
and port), written from the documents named in its `source`:

  [NP]   kubernetes.io/docs/concepts/services-networking/network-policies/ and the
         NetworkPolicy API reference (networking.k8s.io/v1)
  [NPA]  network-policy-api: its conformance tests (conformance/tests/*.go with
         conformance/base/**.yaml: the same pods, policies and pokes, true/false
         copied), its API overview (site-src/api-overview.md) and user stories
         (site-src/user-stories.md, user-story-examples/*.yaml)

A flow is allowed when its first packet reaches the destination: through the
source's node (egress) and, across nodes, the destination's node (ingress).
"""
import pytest

from policytruth import (Judge, Row, Scenario, Step, anp, banp, base, check, cnp, np_, pod,
                         service)

# ------------------------------------------------------------------ the NetworkPolicy world

NS = {"prod": {"team": "a", "env": "prod"}, "dev": {"team": "b", "env": "dev"}, "other": {},
      "kube-system": {}}
PODS = [
    pod("prod", "web-1", "node-1", "10.244.1.10", {"app": "web", "tier": "front"},
        [("http", "TCP", 8080), ("metrics", "TCP", 9090)], ip6="fd00:244:1::10"),
    pod("prod", "web-2", "node-2", "10.244.2.10", {"app": "web", "tier": "front"}, [("http", "TCP", 8081)]),
    pod("prod", "db", "node-1", "10.244.1.20", {"app": "db", "tier": "back"}, [("pg", "TCP", 5432)]),
    pod("prod", "client", "node-1", "10.244.1.30", {"app": "client"}, ip6="fd00:244:1::30"),
    pod("prod", "batch", "node-2", "10.244.2.31", {"app": "batch"}),
    pod("dev", "client", "node-2", "10.244.2.30", {"app": "client"}, ip6="fd00:244:2::30"),
    pod("dev", "web", "node-1", "10.244.1.40", {"app": "web"}, [("http", "TCP", 80)]),
    pod("prod", "bare", "node-2", "10.244.2.32", {}),
    pod("other", "tool", "node-2", "10.244.2.50", {}),
    pod("kube-system", "agent", "node-1", "192.168.56.11", {"app": "agent"}, host_network=True),
]
OUTSIDE, OUTSIDE_FAR = "198.51.100.7", "203.0.113.5"


def world(*extra):
    return base(NS, PODS, *extra)


def R(src, dst, proto, allow, expect=""):
    return Row(src, dst, proto, allow == "allow" if isinstance(allow, str) else allow, expect)


def _replace(kind, name, spec):
    """A step change: replace the spec of one policy."""
    def change(objs):
        for o in objs:
            if o["kind"] == kind and o["metadata"]["name"] == name:
                o["spec"] = spec
        return objs
    return change


def _add(*new):
    def change(objs):
        return objs + list(new)
    return change


def _drop(kind, name):
    def change(objs):
        return [o for o in objs if not (o["kind"] == kind and o["metadata"]["name"] == name)]
    return change


NP_SCENARIOS = [
    Scenario("podSelector selects pods of the policy's own namespace",
             "[NP] The NetworkPolicy resource: podSelector selects the grouping of pods to which "
             "the policy applies (in the policy's namespace); isolated pods reject what no rule allows",
             world(np_("prod", "deny-web", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": []})),
             [Step([R("prod/client", "prod/web-1", "tcp/8080", "deny", "policy_denied_ingress"),
                    R("prod/client", "prod/web-1", "tcp/8080", "deny",
                      "deny: not allowed by NetworkPolicy prod/deny-web"),
                    R("prod/client", "prod/web-2", "tcp/8081", "deny"),     # selected on node-2 too
                    R("prod/client", "dev/web", "tcp/80", "allow"),         # same labels, other namespace
                    R("prod/client", "prod/db", "tcp/5432", "allow"),       # not selected
                    R("prod/web-1", "prod/db", "tcp/5432", "allow")])]),   # egress not isolated
    Scenario("an empty podSelector selects every pod of the namespace (default deny ingress)",
             "[NP] Default policies: Default deny all ingress traffic",
             world(np_("prod", "default-deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]})),
             [Step([R("dev/client", "prod/web-1", "tcp/8080", "deny"),
                    R("dev/client", "prod/db", "tcp/5432", "deny"),
                    R("prod/client", "prod/db", "tcp/5432", "deny"),
                    R("prod/web-1", "dev/web", "tcp/80", "allow"),
                    R(OUTSIDE, "prod/web-1", "tcp/8080", "deny"),
                    R("dev/client", "dev/web", "tcp/80", "allow")])]),
    Scenario("policyTypes default: Ingress always, Egress when the policy has egress rules",
             "[NP API] NetworkPolicySpec.policyTypes: if not specified, policies that contain an egress "
             "section are assumed to affect egress, and all policies are assumed to affect ingress",
             world(np_("prod", "client-empty-egress", {"podSelector": {"matchLabels": {"app": "client"}},
                                                       "egress": []}),
                   np_("prod", "db-egress-web", {"podSelector": {"matchLabels": {"app": "db"}},
                                                 "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "web"}}}]}]}),
                   np_("dev", "egress-only", {"podSelector": {}, "policyTypes": ["Egress"]})),
             [Step([R("prod/client", "dev/web", "tcp/80", "allow"),        # egress: [] -> ingress only
                    R("other/tool", "prod/client", "tcp/80", "deny", "policy_denied_ingress"),
                    R("prod/db", "prod/web-1", "tcp/8080", "allow"),
                    R("prod/db", "dev/web", "tcp/80", "deny", "policy_denied_egress"),
                    R("prod/web-1", "prod/db", "tcp/5432", "deny"),         # db: ingress isolated too
                    R("dev/client", "prod/web-1", "tcp/8080", "deny", "policy_denied_egress"),
                    R("prod/web-1", "dev/web", "tcp/80", "allow")])]),    # dev: ingress not isolated
    Scenario("label selector operators: In, NotIn (also matches pods without the key), Exists, DoesNotExist",
             "[NP API] LabelSelector / LabelSelectorRequirement (meta/v1)",
             world(np_("prod", "expr", {
                 "podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]},
                 "ingress": [{"from": [{"podSelector": {"matchExpressions": [
                     {"key": "app", "operator": "NotIn", "values": ["client"]}]}}]}]})),
             [Step([R("prod/db", "prod/web-1", "tcp/8080", "allow"),
                    R("prod/bare", "prod/web-1", "tcp/8080", "allow"),        # no app label: NotIn holds
                    R("prod/client", "prod/web-1", "tcp/8080", "deny"),
                    R("prod/client", "prod/db", "tcp/5432", "allow")]),
              Step([R("prod/web-1", "prod/client", "tcp/80", "allow"),
                    R("prod/batch", "prod/client", "tcp/80", "deny"),
                    R("prod/client", "prod/web-1", "tcp/8080", "allow")],
                   _replace("NetworkPolicy", "expr", {
                       "podSelector": {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"},
                                                            {"key": "app", "operator": "In", "values": ["client"]}]},
                       "ingress": [{"from": [{"podSelector": {"matchExpressions": [
                           {"key": "tier", "operator": "Exists"}]}}]}]}))]),
    Scenario("policies add up; an empty rule allows everything; no ports: every port and protocol",
             "[NP] Network policies are additive; [NP API] NetworkPolicyIngressRule: from empty -> all "
             "sources, ports empty -> all ports; [NP] Default policies: Allow all ingress traffic",
             world(np_("prod", "db-from-client", {"podSelector": {"matchLabels": {"app": "db"}},
                                                  "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                                                               "ports": [{"port": 5432}]}]}),
                   np_("prod", "db-from-web", {"podSelector": {"matchLabels": {"app": "db"}},
                                               "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}]})),
             [Step([R("prod/client", "prod/db", "tcp/5432", "allow",
                      "allow: NetworkPolicy prod/db-from-client ingress[0]"),
                    R("prod/client", "prod/db", "tcp/5433", "deny",
                      "deny: not allowed by NetworkPolicy prod/db-from-client, prod/db-from-web"),
                    R("prod/web-1", "prod/db", "tcp/1234", "allow", "allow: NetworkPolicy prod/db-from-web ingress[0]"),
                    R("prod/web-2", "prod/db", "udp/53", "allow"),
                    R("prod/web-1", "prod/db", "icmp", "allow"),
                    R("prod/client", "prod/db", "icmp", "deny"),
                    R("prod/batch", "prod/db", "tcp/5432", "deny")]),
              Step([R("dev/client", "prod/db", "udp/53", "allow"), R(OUTSIDE, "prod/db", "icmp", "allow")],
                   _add(np_("prod", "db-open", {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [{}]})))]),
    Scenario("peers: namespaceSelector, kubernetes.io/metadata.name, both in one peer (and), two peers (or)",
             "[NP] Behavior of to and from selectors; Targeting a Namespace by its name",
             world(np_("prod", "db", {"podSelector": {"matchLabels": {"app": "db"}},
                                      "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}]}]})),
             [Step([R("dev/client", "prod/db", "tcp/5432", "allow"),
                    R("dev/web", "prod/db", "tcp/5432", "allow"),
                    R("other/tool", "prod/db", "tcp/5432", "deny"),
                    R("prod/client", "prod/db", "tcp/5432", "deny")]),
              Step([R("other/tool", "prod/db", "tcp/5432", "allow"), R("dev/client", "prod/db", "tcp/5432", "deny")],
                   _replace("NetworkPolicy", "db", {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [
                       {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "other"}}}]}]})),
              Step([R("dev/client", "prod/db", "tcp/5432", "allow"), R("dev/web", "prod/db", "tcp/5432", "deny"),
                    R("prod/client", "prod/db", "tcp/5432", "deny")],
                   _replace("NetworkPolicy", "db", {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [
                       {"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}},
                                  "podSelector": {"matchLabels": {"app": "client"}}}]}]})),
              Step([R("dev/web", "prod/db", "tcp/5432", "allow"), R("prod/client", "prod/db", "tcp/5432", "allow"),
                    R("prod/web-1", "prod/db", "tcp/5432", "deny"), R("other/tool", "prod/db", "tcp/5432", "deny")],
                   _replace("NetworkPolicy", "db", {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [
                       {"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}},
                                 {"podSelector": {"matchLabels": {"app": "client"}}}]}]}))]),
    Scenario("ipBlock with except, on outside addresses and on pod addresses, IPv4 and IPv6",
             "[NP API] IPBlock (cidr, except); [NP] ipBlock; upstream e2e 'should allow ingress access "
             "from pods in a CIDR' relies on ipBlocks matching pod IPs",
             world(np_("prod", "db", {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [
                 {"from": [{"ipBlock": {"cidr": "198.51.100.0/24", "except": ["198.51.100.128/25"]}}]}]})),
             [Step([R(OUTSIDE, "prod/db", "tcp/5432", "allow"), R("198.51.100.200", "prod/db", "tcp/5432", "deny"),
                    R(OUTSIDE_FAR, "prod/db", "tcp/5432", "deny")]),
              Step([R("dev/client", "prod/db", "tcp/5432", "allow"), R("prod/web-2", "prod/db", "tcp/5432", "allow"),
                    R("prod/client", "prod/db", "tcp/5432", "deny")],
                   _replace("NetworkPolicy", "db", {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [
                       {"from": [{"ipBlock": {"cidr": "10.244.2.0/24"}}]}]})),
              Step([R("prod/client", OUTSIDE_FAR, "tcp/443", "allow"), R("prod/client", "dev/web", "tcp/80", "deny"),
                    R("prod/client", "prod/web-2", "tcp/8081", "deny")],
                   _add(np_("prod", "client-out", {"podSelector": {"matchLabels": {"app": "client"}},
                                                   "policyTypes": ["Egress"], "egress": [
                       {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]}]}))),
              Step([R("dev/client@6", "prod/web-1@6", "tcp/8080", "allow"),
                    R("prod/client@6", "prod/web-1@6", "tcp/8080", "deny"),
                    R("dev/client", "prod/web-1", "tcp/8080", "deny")],
                   _add(np_("prod", "web-v6", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [
                       {"from": [{"ipBlock": {"cidr": "fd00:244:2::/64"}}]}]})))]),
    Scenario("ports: protocol defaults to TCP, UDP and SCTP, named ports per destination pod, endPort ranges",
             "[NP API] NetworkPolicyPort (protocol default TCP; port a number or a named port; endPort; "
             "no port: all ports of the protocol); [NP] Targeting a range of ports",
             world(np_("prod", "web", {"podSelector": {"matchLabels": {"app": "web"}},
                                       "ingress": [{"ports": [{"port": "http"}]}]})),
             [Step([R("prod/client", "prod/web-1", "tcp/8080", "allow"), R("prod/client", "prod/web-1", "tcp/8081", "deny"),
                    R("prod/client", "prod/web-2", "tcp/8081", "allow"), R("prod/client", "prod/web-2", "tcp/8080", "deny"),
                    R("prod/client", "prod/web-1", "udp/8080", "deny")]),
              Step([R("prod/client", "prod/web-1", "udp/53", "allow"), R("prod/client", "prod/web-1", "tcp/53", "deny"),
                    R("prod/client", "prod/web-1", "sctp/3868", "allow"), R("prod/client", "prod/web-1", "sctp/3869", "deny")],
                   _replace("NetworkPolicy", "web", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [
                       {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "SCTP", "port": 3868}]}]})),
              Step([R("prod/client", "prod/web-1", "tcp/8000", "allow"), R("prod/client", "prod/web-1", "tcp/8080", "allow"),
                    R("prod/client", "prod/web-1", "tcp/8081", "deny"), R("prod/client", "prod/web-1", "tcp/7999", "deny")],
                   _replace("NetworkPolicy", "web", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [
                       {"ports": [{"port": 8000, "endPort": 8080}]}]})),
              Step([R("prod/client", "prod/web-1", "udp/1", "allow"), R("prod/client", "prod/web-1", "udp/65535", "allow"),
                    R("prod/client", "prod/web-1", "tcp/80", "deny"), R("prod/client", "prod/web-1", "icmp", "deny")],
                   _replace("NetworkPolicy", "web", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [
                       {"ports": [{"protocol": "UDP"}]}]})),
              Step([R("prod/client", "prod/web-1", "udp/9090", "deny"), R("prod/client", "prod/web-1", "tcp/9090", "deny")],
                   _replace("NetworkPolicy", "web", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [
                       {"ports": [{"protocol": "UDP", "port": "metrics"}]}]})),
              Step([R("prod/client", "prod/web-1", "tcp/8080", "allow"), R("prod/client", "prod/web-2", "tcp/8081", "allow"),
                    R("prod/client", "prod/web-2", "tcp/8080", "deny"), R("prod/client", OUTSIDE_FAR, "tcp/8080", "deny"),
                    R("prod/client", "dev/web", "tcp/80", "allow")],
                   lambda objs: _add(np_("prod", "client-egress", {
                       "podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"],
                       "egress": [{"ports": [{"port": "http"}]}]}))(_drop("NetworkPolicy", "web")(objs)))]),
    Scenario("both ends apply: the source's egress and the destination's ingress",
             "[NP] To allow a connection from a source pod to a destination pod, both the egress policy "
             "on the source pod and the ingress policy on the destination pod need to allow the connection",
             world(np_("prod", "client-to-db", {"podSelector": {"matchLabels": {"app": "client"}},
                                                "policyTypes": ["Egress"],
                                                "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "db"}}}]}]}),
                   np_("prod", "db-from-web", {"podSelector": {"matchLabels": {"app": "db"}},
                                               "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}]})),
             [Step([R("prod/client", "prod/db", "tcp/5432", "deny", "policy_denied_ingress"),
                    R("prod/web-1", "prod/db", "tcp/5432", "allow"),
                    R("prod/web-2", "prod/db", "tcp/5432", "allow"),           # across nodes: ingress at node-1
                    R("prod/client", "prod/web-1", "tcp/8080", "deny", "policy_denied_egress"),
                    R("prod/client", "prod/web-2", "tcp/8081", "deny", "policy_denied_egress"),
                    R("dev/client", "prod/db", "tcp/5432", "deny", "policy_denied_ingress")])]),
    Scenario("Services: ingress judged on the backend pod and target port, egress on the post-DNAT destination",
             "[NP] ... it is not defined whether rewriting happens before or after policy processing; "
             "issue 12 (as kube-proxy with a CNI behaves): policy sees the backend",
             world(*service("prod", "web", "10.96.0.10", 80, "http", [("10.244.1.10", "node-1", 8080)]),
                   np_("prod", "web", {"podSelector": {"matchLabels": {"app": "web"}},
                                       "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                                                    "ports": [{"port": 8080}]}]})),
             [Step([R("prod/client", "svc:prod/web", "tcp/80", "allow", "allow: NetworkPolicy prod/web ingress[0]"),
                    R("prod/db", "svc:prod/web", "tcp/80", "deny")]),
              Step([R("prod/client", "svc:prod/web", "tcp/80", "deny")],
                   _replace("NetworkPolicy", "web", {"podSelector": {"matchLabels": {"app": "web"}},
                                                     "ingress": [{"ports": [{"port": 80}]}]})),
              Step([R("prod/client", "svc:prod/web", "tcp/80", "allow")],
                   lambda objs: _add(np_("prod", "client-out", {
                       "podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"],
                       "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 8080}]}]}))(
                       _drop("NetworkPolicy", "web")(objs))),
              Step([R("prod/client", "svc:prod/web", "tcp/80", "deny", "policy_denied_egress")],
                   _replace("NetworkPolicy", "client-out", {
                       "podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"],
                       "egress": [{"to": [{"ipBlock": {"cidr": "10.96.0.0/16"}}]}]})),
              Step([R("prod/web-1", "svc:prod/web", "tcp/80", "allow", "allow: the pod's own traffic")],
                   _add(np_("prod", "web-deny", {"podSelector": {"matchLabels": {"app": "web"}},
                                                 "policyTypes": ["Ingress", "Egress"]})))]),
    Scenario("the node's own traffic to and from its pods is always allowed (hostNetwork pods are the node)",
             "[NP] IP blocks (exception: traffic to and from the node where a Pod is running is always "
             "allowed, regardless of the IP address of the Pod or the node)",
             world(np_("prod", "lockdown", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})),
             [Step([R("host:node-1", "prod/web-1", "tcp/8080", "allow", "allow: the node's own traffic"),
                    R("kube-system/agent", "prod/db", "tcp/5432", "allow"),
                    R("prod/web-1", "192.168.56.11", "udp/53", "allow"),
                    R("prod/web-1", "192.168.56.12", "udp/53", "deny", "policy_denied_egress"),
                    R("192.168.56.12", "prod/db", "tcp/5432", "deny"),
                    R("host:node-2", "prod/web-2", "tcp/8081", "allow"),
                    R("host:node-2", "prod/db", "tcp/5432", "deny")])]),
]

# ------------------------------------------------------------------ network-policy-api

HOUSES = {"gryffindor": ("harry-potter", 10), "slytherin": ("draco-malfoy", 20),
          "hufflepuff": ("cedric-diggory", 30), "ravenclaw": ("luna-lovegood", 40)}


def hogwarts(*extra):
    """conformance/base/manifests.yaml: four namespaces, two pods each (web TCP 80, dns UDP 53),
    pod -0 on node-1 and pod -1 on node-2; a hostNetwork namespace (forbidden-forrest)."""
    ns = {f"network-policy-conformance-{h}": {"conformance-house": h} for h in HOUSES}
    ns["network-policy-conformance-forbidden-forrest"] = {"conformance-house": "forbidden-forrest"}
    pods = []
    for house, (who, n) in HOUSES.items():
        for k in (0, 1):
            pods.append(pod(f"network-policy-conformance-{house}", f"{who}-{k}", f"node-{k + 1}",
                            f"10.244.{k + 1}.{n + k}", {"conformance-house": house},
                            [("web", "TCP", 80), ("dns", "UDP", 53)]))
    pods.append(pod("network-policy-conformance-forbidden-forrest", "centaur-0", "node-1", "192.168.56.11",
                    {"conformance-house": "forbidden-forrest"}, host_network=True))
    return base(ns, pods, *extra)


def H(house, k):
    return f"network-policy-conformance-{house}/{HOUSES[house][0]}-{k}"


def _house_sel(house):
    return {"matchLabels": {"conformance-house": house}}


def _swap_rules(name, direction, i, j):
    def change(objs):
        for o in objs:
            if o["kind"] == "ClusterNetworkPolicy" and o["metadata"]["name"] == name:
                rules = o["spec"][direction]
                rules[i], rules[j] = rules[j], rules[i]
        return objs
    return change


def _set(name, path, value, kind="ClusterNetworkPolicy"):
    def change(objs):
        for o in objs:
            if o["kind"] == kind and o["metadata"]["name"] == name:
                cur = o["spec"]
                for p in path[:-1]:
                    cur = cur[p]
                cur[path[-1]] = value
        return objs
    return change


def _relabel_ns(ns, labels):
    def change(objs):
        for o in objs:
            if o["kind"] == "Namespace" and o["metadata"]["name"] == ns:
                o["metadata"]["labels"] = labels
        return objs
    return change


INTEGRATION = [
    cnp("pass-example", {"tier": "Admin", "priority": 10, "subject": {"namespaces": _house_sel("gryffindor")},
                         "ingress": [{"name": "deny-all-ingress-from-slytherin", "action": "Deny",
                                      "from": [{"namespaces": _house_sel("slytherin")}]}],
                         "egress": [{"name": "deny-all-egress-to-slytherin", "action": "Deny",
                                     "to": [{"namespaces": _house_sel("slytherin")}]}]}),
    np_("network-policy-conformance-gryffindor", "allow-gress-from-to-slytherin-to-gryffindor", {
        "podSelector": None, "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"namespaceSelector": _house_sel("slytherin")}]}],
        "egress": [{"to": [{"namespaceSelector": _house_sel("slytherin")}]}]}),
    cnp("default", {"tier": "Baseline", "priority": 10, "subject": {"namespaces": _house_sel("gryffindor")},
                    "ingress": [{"name": "deny-all-ingress-from-slytherin", "action": "Deny",
                                 "from": [{"namespaces": _house_sel("slytherin")}]}],
                    "egress": [{"name": "deny-all-egress-to-slytherin", "action": "Deny",
                                "to": [{"namespaces": _house_sel("slytherin")}]}]}),
]

PRIORITY = [
    cnp("priority-50-example", {"tier": "Admin", "priority": 50, "subject": {"pods": {
        "namespaceSelector": _house_sel("gryffindor"), "podSelector": _house_sel("gryffindor")}},
        "ingress": [{"name": "deny-all-ingress-from-slytherin", "action": "Deny", "from": [
            {"pods": {"namespaceSelector": _house_sel("slytherin"), "podSelector": _house_sel("slytherin")}}]}],
        "egress": [{"name": "deny-all-egress-to-slytherin", "action": "Deny", "to": [
            {"pods": {"namespaceSelector": _house_sel("slytherin"), "podSelector": _house_sel("slytherin")}}]}]}),
    cnp("old-priority-60-new-priority-40-example", {"tier": "Admin", "priority": 60, "subject": {"pods": {
        "namespaceSelector": _house_sel("gryffindor"), "podSelector": _house_sel("gryffindor")}},
        "ingress": [{"name": "pass-all-ingress-from-slytherin", "action": "Pass", "from": [
            {"pods": {"namespaceSelector": _house_sel("slytherin"), "podSelector": _house_sel("slytherin")}}]}],
        "egress": [{"name": "pass-all-egress-to-slytherin", "action": "Pass", "to": [
            {"pods": {"namespaceSelector": _house_sel("slytherin"), "podSelector": _house_sel("slytherin")}}]}]}),
    cnp("default", {"tier": "Baseline", "priority": 10, "subject": {"pods": {
        "namespaceSelector": _house_sel("gryffindor"), "podSelector": _house_sel("gryffindor")}},
        "ingress": [{"name": "allow-all-ingress-from-slytherin", "action": "Accept", "from": [
            {"pods": {"namespaceSelector": _house_sel("slytherin"), "podSelector": _house_sel("slytherin")}}]}],
        "egress": [{"name": "allow-all-egress-to-slytherin", "action": "Accept", "to": [
            {"pods": {"namespaceSelector": _house_sel("slytherin"), "podSelector": _house_sel("slytherin")}}]}]}),
]


def _by_name(house):
    return {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": f"network-policy-conformance-{house}"}}}


INGRESS_TCP = cnp("ingress-tcp", {"tier": "Admin", "priority": 3, "subject": _by_name("gryffindor"), "ingress": [
    {"name": "allow-from-ravenclaw-everything", "action": "Accept", "from": [_by_name("ravenclaw")]},
    {"name": "deny-from-ravenclaw-everything", "action": "Deny", "from": [_by_name("ravenclaw")]},
    {"name": "pass-from-ravenclaw-everything", "action": "Pass", "from": [_by_name("ravenclaw")]},
    {"name": "deny-from-slytherin-at-port-80", "action": "Deny", "from": [_by_name("slytherin")],
     "protocols": [{"tcp": {"destinationPort": {"number": 80}}}]},
    {"name": "pass-from-slytherin-at-port-80", "action": "Pass", "from": [_by_name("slytherin")],
     "protocols": [{"tcp": {"destinationPort": {"number": 80}}}]},
    {"name": "allow-from-hufflepuff-at-port-80", "action": "Accept", "from": [_by_name("hufflepuff")],
     "protocols": [{"tcp": {"destinationPort": {"number": 80}}}]},
    {"name": "deny-from-hufflepuff-everything-else", "action": "Deny", "from": [_by_name("hufflepuff")]}]})

INLINE_CIDR = cnp("inline-cidr-as-peers-example", {"tier": "Admin", "priority": 85, "subject": {"pods": {
    "namespaceSelector": _house_sel("gryffindor"), "podSelector": _house_sel("gryffindor")}}, "egress": [
    {"name": "allow-egress-to-slytherin", "action": "Accept", "to": [
        {"pods": {"namespaceSelector": _house_sel("slytherin"), "podSelector": _house_sel("slytherin")}}]},
    {"name": "deny-egress-to-internet", "action": "Deny", "to": [{"networks": ["0.0.0.0/0", "::/0"]}]}]})


def _prepend_egress(name, rule):
    def change(objs):
        for o in objs:
            if o["kind"] == "ClusterNetworkPolicy" and o["metadata"]["name"] == name:
                o["spec"]["egress"] = [rule] + o["spec"]["egress"]
        return objs
    return change


ADMIN_SCENARIOS = [
    Scenario("admin tier, NetworkPolicy and baseline tier together: Deny, then Pass to NetworkPolicy, then baseline",
             "[NPA] conformance CNPAdminTierIntegration (base/api_integration/standard-anp-np-banp.yaml)",
             hogwarts(*INTEGRATION),
             [Step([R(H("slytherin", 0), H("gryffindor", 0), "tcp/80", "deny"),
                    R(H("slytherin", 1), H("gryffindor", 0), "tcp/8080", "deny",
                      'deny: ClusterNetworkPolicy pass-example ingress[0] "deny-all-ingress-from-slytherin"'),
                    R(H("gryffindor", 0), H("slytherin", 0), "tcp/80", "deny"),
                    R(H("gryffindor", 1), H("slytherin", 0), "tcp/8080", "deny")]),
              Step([R(H("slytherin", 0), H("gryffindor", 0), "tcp/80", "allow"),
                    R(H("slytherin", 1), H("gryffindor", 0), "tcp/8080", "allow",
                      "allow: NetworkPolicy network-policy-conformance-gryffindor/allow-gress-from-to-slytherin-to-gryffindor ingress[0]")],
                   _set("pass-example", ("ingress", 0, "action"), "Pass")),
              Step([R(H("gryffindor", 0), H("slytherin", 0), "tcp/80", "allow"),
                    R(H("gryffindor", 1), H("slytherin", 0), "tcp/8080", "allow")],
                   _set("pass-example", ("egress", 0, "action"), "Pass")),
              Step([R(H("slytherin", 0), H("gryffindor", 0), "tcp/80", "deny",
                      'deny: ClusterNetworkPolicy default ingress[0] "deny-all-ingress-from-slytherin"'),
                    R(H("slytherin", 1), H("gryffindor", 0), "tcp/8080", "deny"),
                    R(H("gryffindor", 0), H("slytherin", 0), "tcp/80", "deny"),
                    R(H("gryffindor", 1), H("slytherin", 0), "tcp/8080", "deny"),
                    R(H("hufflepuff", 0), H("gryffindor", 0), "tcp/80", "allow")],
                   _drop("NetworkPolicy", "allow-gress-from-to-slytherin-to-gryffindor"))]),
    Scenario("admin tier priorities: the lower number wins; Pass hands the flow to the baseline tier",
             "[NPA] conformance CNPAdminTierPriorityField (base/admin_tier/standard-priority-field.yaml)",
             hogwarts(*PRIORITY),
             [Step([R(H("slytherin", 0), H("gryffindor", 0), "tcp/80", "deny"),
                    R(H("slytherin", 1), H("gryffindor", 0), "tcp/8080", "deny"),
                    R(H("gryffindor", 0), H("slytherin", 0), "tcp/80", "deny"),
                    R(H("gryffindor", 1), H("slytherin", 0), "tcp/8080", "deny")]),
              Step([R(H("slytherin", 0), H("gryffindor", 0), "tcp/80", "allow",
                      'allow: ClusterNetworkPolicy default ingress[0] "allow-all-ingress-from-slytherin"'),
                    R(H("slytherin", 1), H("gryffindor", 0), "tcp/8080", "allow"),
                    R(H("gryffindor", 0), H("slytherin", 0), "tcp/80", "allow"),
                    R(H("gryffindor", 1), H("slytherin", 0), "tcp/8080", "allow")],
                   _set("old-priority-60-new-priority-40-example", ("priority",), 40))]),
    Scenario("admin tier rules apply in the order written; ports narrow a rule",
             "[NPA] conformance CNPAdminTierIngressTCP (base/admin_tier/standard-ingress-tcp-rules.yaml)",
             hogwarts(INGRESS_TCP),
             [Step([R(H("ravenclaw", 0), H("gryffindor", 0), "tcp/80", "allow"),
                    R(H("ravenclaw", 1), H("gryffindor", 0), "tcp/8080", "allow"),
                    R(H("hufflepuff", 0), H("gryffindor", 1), "tcp/80", "allow"),
                    R(H("hufflepuff", 1), H("gryffindor", 1), "tcp/8080", "deny"),
                    R(H("slytherin", 0), H("gryffindor", 0), "tcp/80", "deny"),
                    R(H("slytherin", 1), H("gryffindor", 0), "tcp/8080", "allow")]),
              Step([R(H("ravenclaw", 0), H("gryffindor", 1), "tcp/80", "deny"),
                    R(H("ravenclaw", 1), H("gryffindor", 1), "tcp/8080", "deny")],
                   _swap_rules("ingress-tcp", "ingress", 0, 1)),
              Step([R(H("ravenclaw", 0), H("gryffindor", 0), "tcp/80", "allow"),
                    R(H("ravenclaw", 1), H("gryffindor", 0), "tcp/8080", "allow")],
                   _swap_rules("ingress-tcp", "ingress", 0, 2)),
              Step([R(H("slytherin", 0), H("gryffindor", 0), "tcp/80", "allow"),
                    R(H("slytherin", 1), H("gryffindor", 0), "tcp/8080", "allow")],
                   _swap_rules("ingress-tcp", "ingress", 3, 4))]),
    Scenario("admin egress to networks: a CIDR peer covers pods too; a pods rule before it wins",
             "[NPA] conformance CNPAdminTierEgressInlineCIDRPeers (base/admin_tier/standard-egress-inline-cidr-rules.yaml)",
             hogwarts(INLINE_CIDR),
             [Step([R(H("gryffindor", 1), H("ravenclaw", 0), "tcp/80", "deny"),
                    R(H("gryffindor", 1), H("ravenclaw", 0), "udp/53", "deny"),
                    R(H("gryffindor", 1), H("ravenclaw", 0), "sctp/9003", "deny"),
                    R(H("gryffindor", 1), H("slytherin", 0), "tcp/80", "allow"),
                    R(H("gryffindor", 1), H("slytherin", 0), "udp/53", "allow"),
                    R(H("gryffindor", 1), H("slytherin", 0), "sctp/9003", "allow"),
                    R(H("gryffindor", 0), OUTSIDE, "tcp/443", "deny",
                      'deny: ClusterNetworkPolicy inline-cidr-as-peers-example egress[1] "deny-egress-to-internet"')]),
              Step([R(H("gryffindor", 1), H("slytherin", 0), "tcp/80", "deny"),
                    R(H("gryffindor", 1), H("slytherin", 0), "udp/53", "deny")],
                   _relabel_ns("network-policy-conformance-slytherin", {"conformance-house": "denied-namespace-label"})),
              Step([R(H("gryffindor", 1), H("ravenclaw", 0), "tcp/80", "allow"),
                    R(H("gryffindor", 1), H("ravenclaw", 0), "udp/53", "allow"),
                    R(H("gryffindor", 1), H("ravenclaw", 0), "sctp/9003", "allow"),
                    R(H("gryffindor", 1), H("hufflepuff", 0), "tcp/80", "allow"),
                    R(H("gryffindor", 1), H("hufflepuff", 1), "tcp/80", "deny")],
                   _prepend_egress("inline-cidr-as-peers-example", {
                       "name": "allow-egress-to-specific-podIPs", "action": "Accept",
                       "to": [{"networks": ["10.244.1.40/32", "10.244.1.30/32"]}]}))]),
    Scenario("user stories: cluster-wide deny, cluster-wide allow over NetworkPolicy, delegation by Pass, "
             "baseline default deny overridable by NetworkPolicy",
             "[NPA] site-src/user-stories.md, user-story-examples/user-story-{1,2,3,5}.yaml",
             base({"sensitive-ns": {}, "monitoring-ns": {}, "kube-system": {}, "foo-ns-1": {}, "bar-ns-1": {}},
                  [pod("sensitive-ns", "vault", "node-1", "10.244.1.60", {"app": "vault"}),
                   pod("monitoring-ns", "prom", "node-2", "10.244.2.60", {"app": "prom"}),
                   pod("kube-system", "dns", "node-2", "10.244.2.61", {"app": "kube-dns"}, [("dns", "UDP", 53)]),
                   pod("foo-ns-1", "app", "node-1", "10.244.1.62", {"app": "foo"}),
                   pod("bar-ns-1", "pub", "node-1", "10.244.1.63", {"app": "svc-pub"}, [("web-alt", "TCP", 8443)])],
                  cnp("cluster-wide-deny-example", {"tier": "Admin", "priority": 10, "subject": {"namespaces": {
                      "matchLabels": {"kubernetes.io/metadata.name": "sensitive-ns"}}}, "ingress": [
                      {"action": "Deny", "from": [{"namespaces": {"matchLabels": {}}}], "name": "select-all-deny-all"}]})),
             [Step([R("monitoring-ns/prom", "sensitive-ns/vault", "tcp/443", "deny"),
                    R("foo-ns-1/app", "sensitive-ns/vault", "tcp/443", "deny"),
                    R(OUTSIDE, "sensitive-ns/vault", "tcp/443", "allow"),          # not a pod: no peer matches
                    R("sensitive-ns/vault", "foo-ns-1/app", "tcp/80", "allow")]),
              Step([R("monitoring-ns/prom", "foo-ns-1/app", "tcp/9100", "allow",
                      'allow: ClusterNetworkPolicy cluster-wide-allow-example ingress[0] "allow-monitoring-ns-ingress"'),
                    R("foo-ns-1/app", "kube-system/dns", "udp/53", "allow"),
                    R("foo-ns-1/app", "bar-ns-1/pub", "tcp/80", "deny")],
                   _add(cnp("cluster-wide-allow-example", {"tier": "Admin", "priority": 30, "subject": {"namespaces": {}},
                            "ingress": [{"action": "Accept", "name": "allow-monitoring-ns-ingress", "from": [
                                {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring-ns"}}}]}],
                            "egress": [{"action": "Accept", "name": "allow-kube-dns-egress", "to": [{"pods": {
                                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                                "podSelector": {"matchLabels": {"app": "kube-dns"}}}}]}]}),
                        np_("foo-ns-1", "lockdown", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}))),
              Step([R("foo-ns-1/app", "bar-ns-1/pub", "tcp/8080", "allow"),
                    R("foo-ns-1/app", "bar-ns-1/pub", "tcp/8443", "allow"),
                    R("foo-ns-1/app", "bar-ns-1/pub", "tcp/8444", "deny"),
                    R("foo-ns-1/app", "bar-ns-1/pub", "udp/53", "allow")],
                   lambda objs: _add(
                       cnp("pub-svc-delegate-example", {"tier": "Admin", "priority": 20, "subject": {"namespaces": {}},
                           "egress": [{"action": "Pass", "to": [{"pods": {
                               "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "bar-ns-1"}},
                               "podSelector": {"matchLabels": {"app": "svc-pub"}}}}],
                               "protocols": [{"tcp": {"destinationPort": {"number": 8080}}},
                                             {"destinationNamedPort": "web-alt"},
                                             {"udp": {"destinationPort": {"number": 53}}}]}]}),
                       cnp("deny-rest", {"tier": "Admin", "priority": 25, "subject": {"namespaces": {}},
                           "egress": [{"action": "Deny", "to": [{"namespaces": {"matchLabels": {
                               "kubernetes.io/metadata.name": "bar-ns-1"}}}]}]}))(
                       _drop("NetworkPolicy", "lockdown")(objs))),
              Step([R("foo-ns-1/app", "bar-ns-1/pub", "tcp/80", "deny",
                      "deny: not allowed by NetworkPolicy bar-ns-1/allow-foo"),
                    R("foo-ns-1/app", "bar-ns-1/pub", "tcp/8443", "allow",
                      "allow: NetworkPolicy bar-ns-1/allow-foo ingress[0]"),
                    # story 2 allows the egress to kube-dns; the baseline still denies its ingress
                    R("foo-ns-1/app", "kube-system/dns", "udp/53", "deny",
                      "deny: ClusterNetworkPolicy default ingress[0]"),
                    R("monitoring-ns/prom", "bar-ns-1/pub", "tcp/80", "allow"),       # admin over NetworkPolicy
                    R("monitoring-ns/prom", "foo-ns-1/app", "tcp/80", "allow"),       # admin over baseline
                    R("sensitive-ns/vault", "foo-ns-1/app", "tcp/80", "deny"),
                    R(OUTSIDE, "foo-ns-1/app", "tcp/80", "allow")],
                   lambda objs: _add(
                       cnp("default", {"tier": "Baseline", "priority": 10, "subject": {"namespaces": {}},
                           "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]}),
                       np_("bar-ns-1", "allow-foo", {"podSelector": {}, "ingress": [{"from": [
                           {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "foo-ns-1"}}}],
                           "ports": [{"port": "web-alt"}]}]}))(
                       _drop("ClusterNetworkPolicy", "deny-rest")(_drop("ClusterNetworkPolicy", "pub-svc-delegate-example")(objs))))]),
    Scenario("v1alpha1 AdminNetworkPolicy and BaselineAdminNetworkPolicy: the same tiers",
             "[NPA] blog 'API update for v1alpha2' (story 1 and 5 as v1alpha1 objects); "
             "apis/v1alpha1 (actions Allow / Deny / Pass, ports portNumber / namedPort / portRange, "
             "egress peers nodes and networks)",
             hogwarts(anp("cluster-wide-deny-example", {"priority": 10, "subject": {"namespaces": {
                          "matchLabels": {"kubernetes.io/metadata.name": "network-policy-conformance-gryffindor"}}},
                          "ingress": [{"action": "Deny", "from": [{"namespaces": {"namespaceSelector": {}}}],
                                       "name": "select-all-deny-all"}]}),
                      banp({"subject": {"namespaces": {}}, "ingress": [
                          {"action": "Deny", "from": [{"namespaces": {"namespaceSelector": {}}}]}]})),
             [Step([R(H("slytherin", 0), H("gryffindor", 0), "tcp/80", "deny",
                      'deny: AdminNetworkPolicy cluster-wide-deny-example ingress[0] "select-all-deny-all"'),
                    R(H("slytherin", 0), H("hufflepuff", 0), "tcp/80", "deny",
                      "deny: BaselineAdminNetworkPolicy default ingress[0]"),
                    R(OUTSIDE, H("hufflepuff", 0), "tcp/80", "allow")]),
              Step([R(H("slytherin", 0), H("hufflepuff", 0), "tcp/80", "allow"),
                    R(H("slytherin", 0), H("hufflepuff", 0), "udp/53", "deny")],
                   _add(np_("network-policy-conformance-hufflepuff", "web-only", {"podSelector": {}, "ingress": [
                       {"ports": [{"port": "web"}]}]}))),
              Step([R(H("hufflepuff", 0), "192.168.56.12", "tcp/10250", "deny",
                      'deny: AdminNetworkPolicy nodes-and-ports egress[0] "no-kubelet"'),
                    R(H("hufflepuff", 0), "192.168.56.11", "tcp/10250", "allow"),
                    R(H("hufflepuff", 0), H("ravenclaw", 0), "udp/53", "allow",
                      'allow: AdminNetworkPolicy nodes-and-ports egress[1] "dns"'),
                    R(H("hufflepuff", 0), H("ravenclaw", 0), "tcp/80", "deny"),
                    R(H("hufflepuff", 0), H("ravenclaw", 0), "tcp/8080", "allow"),
                    R(H("hufflepuff", 0), OUTSIDE, "tcp/443", "deny")],
                   lambda objs: _add(anp("nodes-and-ports", {"priority": 5, "subject": {"namespaces": {"matchLabels": {
                       "conformance-house": "hufflepuff"}}}, "egress": [
                       {"name": "no-kubelet", "action": "Deny", "to": [{"nodes": {"matchLabels": {"zone": "b"}}}],
                        "ports": [{"portNumber": {"protocol": "TCP", "port": 10250}}]},
                       {"name": "dns", "action": "Allow", "to": [{"pods": {"namespaceSelector": {}, "podSelector": {}}}],
                        "ports": [{"namedPort": "dns"}]},
                       {"name": "no-web", "action": "Deny", "to": [{"namespaces": {}}],
                        "ports": [{"portRange": {"protocol": "TCP", "start": 1, "end": 100}}]},
                       {"name": "no-internet", "action": "Deny", "to": [{"networks": ["198.51.100.0/24"]}]}]}))(
                       _drop("BaselineAdminNetworkPolicy", "default")(objs)))]),
]

SCENARIOS = NP_SCENARIOS + ADMIN_SCENARIOS
CASES = [(s, i) for s in SCENARIOS for i in range(len(s.steps))]


def _ids(case):
    s, i = case
    return f"{s.name[:60]}#{i}"


@pytest.mark.parametrize("mode", ["api", "replay"])
@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_truth_table(tmp_path, case, mode):
    scenario, index = case
    _i, objs, step = list(scenario.snapshots())[index]
    judge = Judge(tmp_path, objs, mode)
    results = judge.run(step.rows)
    problems = check(results, step.rows)
    assert not problems, f"{scenario.name} (step {index}; {scenario.source}):\n  " + "\n  ".join(problems)
