"""The start-up fast paths (issue 14) give exactly what the general code gives.

- model objects pickled as cls(*fields) come back equal, and entries in the former
  pickle form (copyreg's slot state, kept by an earlier kdp of the same version) still load;
- the ClusterIP special-address check's IPv4 shortcut agrees with the ipaddress module;
- an endpoint with targetRef / hostname / hints present but null (the slow path now)
  parses to what the same endpoint without them parses to (the fast path).
"""
import copy
import copyreg
import io
import ipaddress
import pickle

from hypothesis import given, strategies as st

from kdp.control import Cluster, apirules, model
from kdp.control.validate import Problems, parse_object
from kdp.control.model import Origin

HOT = (model.Origin, model.ServicePort, model.Service, model.Endpoint, model.EndpointSlice)


def _snapshot():
    docs = [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
             "spec": {"podCIDRs": ["10.64.0.0/24"]},
             "status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.1"}]}},
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "web", "namespace": "default"},
             "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
                      "selector": {"app": "web"}}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": "web-1", "namespace": "default",
                          "labels": {"kubernetes.io/service-name": "web"}},
             "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
             "endpoints": [{"addresses": ["10.64.0.5"], "nodeName": "node-1",
                            "conditions": {"ready": True}},
                           {"addresses": ["10.64.1.5"], "hostname": "b", "zone": "z",
                            "conditions": {"ready": False, "serving": True, "terminating": True},
                            "targetRef": {"kind": "Pod", "name": "web-b"},
                            "hints": {"forZones": [{"name": "z"}]}}]}]
    return Cluster.from_documents(docs, node="node-1")


def _slot_state_pickle(obj):
    """obj pickled the way Python pickles a slotted class by default."""
    class Old(pickle.Pickler):
        def reducer_override(self, o):
            if type(o) in HOT:
                return copyreg.__newobj__, (type(o),), o.__getstate__()
            return NotImplemented
    buf = io.BytesIO()
    Old(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buf.getvalue()


def test_model_objects_pickle_and_copy_to_equal_objects():
    cluster = _snapshot()
    back = pickle.loads(pickle.dumps(cluster, protocol=pickle.HIGHEST_PROTOCOL))
    assert back.services == cluster.services and back.slices == cluster.slices
    svc = cluster.services[("default", "web")]
    assert type(back.services[("default", "web")].origin) is Origin
    assert copy.copy(svc) == svc and copy.deepcopy(svc) == svc and copy.copy(svc) is not svc
    ep = cluster.slices_for(("default", "web"))[0].endpoints[1]
    assert ep.zone_hints == frozenset({"z"}) and pickle.loads(pickle.dumps(ep)) == ep


def test_a_pickle_in_the_former_slot_state_form_still_loads_equal():
    cluster = _snapshot()
    data = _slot_state_pickle(cluster)
    assert data != pickle.dumps(cluster, protocol=pickle.HIGHEST_PROTOCOL)
    back = pickle.loads(data)
    assert back.services == cluster.services and back.slices == cluster.slices


def _reference_problem(ip):
    a = ipaddress.ip_address(ip[1]) if ip[0] == 4 else ipaddress.IPv6Address(ip[1])
    return a.is_unspecified or a.is_loopback or a.is_multicast or a.is_link_local or \
        (ip[0] == 4 and ip[1] == 0xFFFFFFFF)


EDGES = [0, 1, 0x7EFFFFFF, 0x7F000000, 0x7FFFFFFF, 0x80000000, 0xA9FDFFFF, 0xA9FE0000, 0xA9FEFFFF,
         0xA9FF0000, 0xDFFFFFFF, 0xE0000000, 0xEFFFFFFF, 0xF0000000, 0xFFFFFFFE, 0xFFFFFFFF]


@given(st.one_of(st.sampled_from(EDGES), st.integers(0, 0xFFFFFFFF)))
def test_the_ipv4_special_address_shortcut_agrees_with_ipaddress(n):
    problem = apirules.special_address_problem((4, n))
    assert (problem is not None) == _reference_problem((4, n))


def test_special_ipv4_addresses_keep_their_messages():
    assert apirules.special_address_problem((4, 0)) == "may not be unspecified"
    assert apirules.special_address_problem((4, 0x7F000001)) == "may not be a loopback address"
    assert apirules.special_address_problem((4, 0xE0000001)) == "may not be a multicast address"
    assert apirules.special_address_problem((4, 0xA9FE0001)) == "may not be a link-local address"
    assert apirules.special_address_problem((4, 0xFFFFFFFF)) == "may not be the broadcast address"
    assert apirules.special_address_problem((4, 0x0A600001)) is None


def _slice(endpoint):
    doc = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": "s", "labels": {"kubernetes.io/service-name": "web"}},
           "addressType": "IPv4", "endpoints": [endpoint]}
    problems = Problems()
    _kind, sl = parse_object(Origin("f.yaml"), doc, problems)
    return sl.endpoints, problems.errors


def test_null_target_ref_hostname_and_hints_parse_as_if_absent():
    plain = {"addresses": ["10.64.0.5", "10.64.0.6"], "nodeName": "n1", "conditions": {"ready": False}}
    fast = _slice(plain)
    assert fast[1] == [] and len(fast[0]) == 1
    for key in ("targetRef", "hostname", "hints"):
        assert _slice({**plain, key: None}) == fast, key
    assert _slice({**plain, "addresses": ["10.64.0.5"]})[0][0].addresses == [(4, 0x0A400005)]


def test_a_bad_endpoint_address_is_reported_by_the_slow_path():
    _eps, errors = _slice({"addresses": ["10.64.0.500"], "hostname": None})
    assert errors == ["f.yaml: EndpointSlice default/s: endpoints[0].addresses[0]: "
                      "not an IP address: '10.64.0.500'"]


def test_an_endpoint_address_with_a_nul_is_an_error_not_a_traceback():
    for extra in ({}, {"hostname": None}):     # the fast path, the slow path
        _eps, errors = _slice({"addresses": ["10.64.0.5\x00"], **extra})
        assert errors == ["f.yaml: EndpointSlice default/s: endpoints[0].addresses[0]: "
                          "not an IP address: '10.64.0.5\\x00'"]
