"""The compiled policy tables against the plain reference (kdp/reference/policy.py),
flow by flow, on hypothesis-drawn clusters with every policy kind: the decision,
and the label of what decided each direction, must be the same."""
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import policygen
from kdp.control import Cluster
from kdp.control.policy_compile import compile_policy
from kdp.reference.policy import Reference

# KDP_POLICY_EXAMPLES=5000 for a long exploratory run (CI: the default, derandomized)
EXAMPLES = int(os.environ.get("KDP_POLICY_EXAMPLES", "60"))


def _check(objs, data):
    cluster = Cluster.from_documents(objs, node="node-1")
    compiled = compile_policy(cluster)
    ref = Reference(cluster)
    addrs = policygen.addresses(objs)
    keys = policygen.probe_ports(objs)
    local = [ip for o in objs if o["kind"] == "Pod" and o["spec"]["nodeName"] == "node-1"
             for ip in (x["ip"] for x in o["status"]["podIPs"])]
    pairs = [(s, d) for s in addrs for d in addrs
             if (s in local or d in local) and (":" in s) == (":" in d)]
    chosen = data.draw(st.lists(st.sampled_from(keys), min_size=1, max_size=6, unique=True)) + [(1, 0)]
    checked = 0
    for s, d in pairs:
        for proto, port in chosen:
            for via, host in ((False, False), (True, False), (False, s in (policygen.NODE1, "fd00:56::11"))):
                want = ref.decide(s, d, proto, port, via_service=via, from_host=host)
                if compiled is None:
                    got = (True, None, None)
                else:
                    got = compiled.decide(s, d, proto, port, via_service=via, from_host=host)
                assert got == tuple(want), (s, d, proto, port, via, host)
                checked += 1
    return checked


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(objs=policygen.cluster_objects(), data=st.data())
def test_compiled_tables_decide_every_flow_as_the_reference(objs, data):
    assert _check(objs, data) > 0


@settings(max_examples=max(1, EXAMPLES // 2), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(objs=policygen.cluster_objects(admin=False, max_pods=8, max_policies=6), data=st.data())
def test_compiled_networkpolicy_only_clusters_decide_as_the_reference(objs, data):
    assert _check(objs, data) > 0
