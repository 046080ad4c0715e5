"""The backends of a service-port, shared by the full compile and the incremental update.

`endpoint_sets` decides which endpoints serve a Service port (the rules are in
kdp.control.compile's docstring); `backend_array` packs them into the C side's
BACKEND_DTYPE rows; `backend_ip` reads an address back from such a row.
"""
import numpy as np

from kdp._fast import service as fast
from kdp.control import addr


def endpoint_sets(port_name, protocol, target_port, fam, slices, node, local_ips, want_local=True,
                  zone=""):
    """(cluster, local) backend lists for one Service port and family.

    Each list holds (IP, port, local) tuples, unique and sorted. The cluster list follows
    the endpoints' topology hints as kube-proxy does (`topology_mode`); `zone` is this
    node's topology.kubernetes.io/zone label ("" when it has none)."""
    ready, fallback, lready, lfallback = {}, {}, {}, {}
    hints = {}
    for ep, port in _port_endpoints(port_name, protocol, target_port, fam, slices):
        ip = ep.addresses[0]
        local = ep.node_name == node if ep.node_name else ip in local_ips
        if ep.ready:
            ready[(ip, port)] = local
            hints[(ip, port)] = (ep.zone_hints, ep.node_hints)
            if local:
                lready[(ip, port)] = True
        elif ep.serving and ep.terminating:
            fallback[(ip, port)] = local
            if local:
                lfallback[(ip, port)] = True
    mode = topology_mode(hints.values(), node, zone)
    if mode == "node":
        ready = {k: v for k, v in ready.items() if node in hints[k][1]}
    elif mode == "zone":
        ready = {k: v for k, v in ready.items() if zone in hints[k][0]}
    chosen = ready or fallback
    cluster = [(ip, port, chosen[(ip, port)]) for ip, port in sorted(chosen)]
    if not want_local:
        return cluster, []
    lchosen = lready or lfallback
    return cluster, [(ip, port, True) for ip, port in sorted(lchosen)]


def _port_endpoints(port_name, protocol, target_port, fam, slices):
    """(endpoint, backend port) for each endpoint with an address in the slices of
    family `fam` that serve one Service port (the slice port of its name, else of its
    named targetPort)."""
    named = target_port if isinstance(target_port, str) else None
    for sl in slices:
        if sl.address_type != fam:
            continue
        port = None
        for pname, proto, pnum in sl.ports:
            if proto != protocol:
                continue
            if pname == port_name:
                port = pnum
                break
            if named is not None and pname == named:
                port = pnum
        if port is None:
            continue
        for ep in sl.endpoints:
            if ep.addresses:
                yield ep, port


TOPOLOGY_NAMES = {"node": "PreferSameNode", "zone": "PreferSameZone", "": ""}


def topology_in_use(port_name, protocol, target_port, fam, slices, node, zone):
    """The topology kube-proxy applies to one Service port's cluster endpoints on this
    node, by its names: "PreferSameNode", "PreferSameZone" or "" (none)."""
    ready = {}
    for ep, port in _port_endpoints(port_name, protocol, target_port, fam, slices):
        if ep.ready:
            ready[(ep.addresses[0], port)] = (ep.zone_hints, ep.node_hints)
    return TOPOLOGY_NAMES[topology_mode(ready.values(), node, zone)]


def backend_array(rows, ids):
    """BACKEND_DTYPE array from (IP, port, local) rows and their ids."""
    n = len(rows)
    out = np.zeros(n, dtype=fast.BACKEND_DTYPE)
    if not n:
        return out
    out["id"] = ids
    out["port"] = [r[1] for r in rows]
    out["local"] = [r[2] for r in rows]
    vers = [r[0][0] for r in rows]
    out["ip_ver"] = vers
    if all(v == 4 for v in vers):
        out["a4"] = [r[0][1] for r in rows]
    else:
        for i, r in enumerate(rows):
            a4, a6 = addr.a4_a6(r[0])
            out[i]["a4"] = a4
            out[i]["a6"] = np.frombuffer(a6, dtype=np.uint8)
    return out


def backend_ip(row):
    """The (version, int) address of one BACKEND_DTYPE row."""
    if int(row["ip_ver"]) == 4:
        return (4, int(row["a4"]))
    return (6, int.from_bytes(bytes(row["a6"]), "big"))


def topology_mode(ready_hints, node, zone):
    """Which hints kube-proxy follows for a Service port's cluster endpoints, from the
    (zone hints, node hints) of its ready endpoints (pkg/proxy/topology.go):
    "node" when every one has node hints and one is for this node (trafficDistribution
    PreferSameNode); else "zone" when every one has zone hints and one is for this
    node's zone (PreferClose / PreferSameZone, topology-mode Auto); else "" (no
    topology: incomplete hints, none for here, or a node without a zone label). Local
    (traffic policy) endpoints and the terminating fall-back ignore hints."""
    ready_hints = list(ready_hints)
    if not ready_hints:
        return ""
    if all(nodes for _z, nodes in ready_hints) and any(node in nodes for _z, nodes in ready_hints):
        return "node"
    if all(zones for zones, _n in ready_hints) and zone and any(zone in zones for zones, _n in ready_hints):
        return "zone"
    return ""


def local_ready_endpoints(fam, slices, node, local_ips):
    """What kube-proxy's health server reports for a Service on this node (its
    healthCheckNodePort): how many distinct addresses of the family its local, ready
    endpoints have, over all the Service's ports (kube-proxy's LocalReadyEndpoints counts
    a pod serving two ports once; terminating endpoints never count). HTTP 200 when
    there is one, else 503 (load balancers then skip the node)."""
    ips = set()
    for sl in slices:
        if sl.address_type != fam or not sl.ports:
            continue
        ips.update(ep.addresses[0] for ep in sl.endpoints if ep.addresses and ep.ready and
                   (ep.node_name == node if ep.node_name else ep.addresses[0] in local_ips))
    return len(ips)


def endpoint_states(port_name, protocol, target_port, fam, slices):
    """Every endpoint the slices give one Service port and family, with its conditions:
    [(IP, port, node name or None, state)], state "ready", "terminating" (serving while
    it terminates: used when no endpoint is ready), "terminating, not serving" or "not
    ready". Sorted, unique."""
    named = target_port if isinstance(target_port, str) else None
    out = {}
    for sl in slices:
        if sl.address_type != fam:
            continue
        port = next((pnum for pname, proto, pnum in sl.ports if proto == protocol and pname == port_name), None)
        if port is None and named is not None:
            port = next((pnum for pname, proto, pnum in sl.ports if proto == protocol and pname == named), None)
        if port is None:
            continue
        for ep in sl.endpoints:
            if not ep.addresses:
                continue
            if ep.ready:
                state = "ready"
            elif ep.terminating:
                state = "terminating" if ep.serving else "terminating, not serving"
            else:
                state = "not ready"
            out.setdefault((ep.addresses[0], port), (ep.node_name, state))
    return [(ip, port, node, state) for (ip, port), (node, state) in sorted(out.items())]
