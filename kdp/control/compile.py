"""Compilation: a validated Cluster -> CompiledTables (numpy arrays + C tables).

Everything is built off to the side; the result is swapped in whole by its
user. One service-port record per (Service, port, ClusterIP family); headless
and ExternalName Services have none. Backends come from the Service's
EndpointSlices (its v1 Endpoints when it has no slice):

* a slice port serves a Service port when its name equals the Service port's
  name (what the EndpointSlice controller writes), or else when it is named
  like the Service port's named targetPort; its number is the backend port;
* ready endpoints serve; when none is ready, serving-and-terminating ones do
  (kube-proxy's fallback, pkg/proxy/topology.go CategorizeEndpoints), decided
  separately for all endpoints and for this node's endpoints (Local policies);
* an endpoint is node-local when its nodeName is this node (or, lacking a
  nodeName, when its address is a pod on this node).
"""
from typing import NamedTuple

import numpy as np

from kdp._fast import service as fast
from kdp.control import addr
from kdp.control.backends import backend_array, endpoint_sets
from kdp.control.cluster import paused_gc
from kdp.control.routes import node_routes
from kdp.control.tables import CompiledTables

SVC_TYPES = {"ClusterIP": fast.SVC_TYPE_CLUSTER_IP, "NodePort": fast.SVC_TYPE_NODE_PORT,
             "LoadBalancer": fast.SVC_TYPE_LOAD_BALANCER}


class SvcPortInfo(NamedTuple):
    """What Python knows about one service-port record (the C record is its twin)."""
    id: int
    name: str                 # "namespace/name:portname"
    key: tuple                # (namespace, service name)
    port_name: str
    ip_ver: int
    protocol: int
    port: int
    target_port: object
    node_port: int
    type: str
    flags: int
    cluster_ip: tuple
    external_ips: tuple
    lb_ips: tuple             # ipMode VIP ingress IPs (captured)
    lb_proxy_ips: tuple       # ipMode Proxy ingress IPs (not captured)
    source_ranges: tuple
    affinity_timeout: int


def _record_flags(svc):
    f = 0
    if svc.affinity_client_ip:
        f |= fast.SF_AFFINITY
    if svc.external_policy_local:
        f |= fast.SF_ETP_LOCAL
    if svc.internal_policy_local:
        f |= fast.SF_ITP_LOCAL
    return f


def addr_array(prefixes):
    out = np.zeros(len(prefixes), dtype=fast.ADDR_DTYPE)
    for i, (ver, value, plen) in enumerate(prefixes):
        out[i]["ip_ver"] = ver
        out[i]["plen"] = plen
        a4, a6 = addr.a4_a6((ver, value))
        out[i]["a4"] = a4
        out[i]["a6"] = np.frombuffer(a6, dtype=np.uint8)
    return out


MATCH_ALL = "all"


def node_port_families(cluster):
    """kube-proxy's --nodeport-addresses per IP family: {4: ..., 6: ...}, each MATCH_ALL
    (every local address of the family) or the list of node addresses NodePorts answer
    on. Empty setting: nftables mode -> "primary", iptables mode -> all; "primary" -> the
    node's primary address of the family; "all" -> all; CIDRs -> the node's addresses
    inside them. A family that no CIDR (nor "primary") names matches all (kube-proxy
    adds 0.0.0.0/0 or ::/0 for it); a /0 CIDR matches all."""
    cfg = cluster.config
    setting = cfg.node_port_addresses or (["primary"] if cfg.proxy_mode == "nftables" else ["all"])
    primary = cluster.primary_addresses()
    out = {}
    for fam in (4, 6):
        cidrs = [p for p in setting if p not in ("all", "primary") and p[0] == fam]
        if "primary" in setting and fam in primary:     # kube-proxy makes it the address's /32, /128
            cidrs.append(addr.host_prefix(primary[fam]))
        if "all" in setting or not cidrs or any(p[2] == 0 for p in cidrs):
            out[fam] = MATCH_ALL
        else:
            out[fam] = [ip for ip in cfg.node_addresses if any(addr.prefix_contains(p, ip) for p in cidrs)]
    return out


def node_port_addresses(cluster):
    """The node addresses NodePorts answer on (node_port_families), in NodeConfig order."""
    fams = node_port_families(cluster)
    return [ip for ip in cluster.config.node_addresses
            if fams[ip[0]] is MATCH_ALL or ip in fams[ip[0]]]


def health_check_addresses(cluster):
    """Where kube-proxy's health check server listens (pkg/proxy/healthcheck): the
    NodePort addresses; a family that matches all is its wildcard address (0.0.0.0,
    ::: every local address of the family)."""
    out = []
    for fam, got in node_port_families(cluster).items():
        out += [(fam, 0)] if got is MATCH_ALL else got
    return out


LOOPBACK4 = addr.parse_prefix("127.0.0.0/8")
LOCALHOST4 = addr.parse_prefix("127.0.0.1/32")


def localhost_node_ports(cluster):
    """Where NodePorts answer the node itself on loopback (kube-proxy's
    --iptables-localhost-nodeports; iptables mode, IPv4 only): [] when not at all;
    [127.0.0.0/8] when the IPv4 NodePort addresses match all (its `--dst-type LOCAL`
    rule takes in all of 127/8); [127.0.0.1/32] when one of their CIDRs holds 127.0.0.1
    (the rules then name lo's address). Such flows are masqueraded (their source is a
    LOCAL address)."""
    cfg = cluster.config
    if cfg.proxy_mode != "iptables" or not cfg.localhost_node_ports:
        return []
    if node_port_families(cluster)[4] is MATCH_ALL:
        return [LOOPBACK4]
    if any(item not in ("all", "primary") and addr.prefix_contains(item, LOCALHOST4[:2])
           for item in cfg.node_port_addresses):
        return [LOCALHOST4]
    return []


def local_traffic_cidrs(cfg):
    """The source prefixes that are local traffic under the CIDR modes of local-traffic
    detection: the cluster CIDRs (ClusterCIDR) or this node's pod CIDRs (NodeCIDR)."""
    return {"NodeCIDR": cfg.pod_cidrs, "ClusterCIDR": cfg.cluster_cidrs}.get(cfg.local_traffic_detection, [])


def detector_families(cfg):
    """The IP families kube-proxy has a local-traffic detector for: it builds one per
    family, from a CIDR of that family under ClusterCIDR / NodeCIDR (a family without
    one gets the no-op detector: nothing is local, and the rules that need a detector
    are left out), for both under the interface modes, for none under None."""
    detection = cfg.local_traffic_detection
    if detection in ("InterfaceNamePrefix", "BridgeInterface"):
        return {4, 6}
    return {p[0] for p in local_traffic_cidrs(cfg)}


def _previous_ids(previous, infos):
    """For each new record, the previous tables' id of the same service-port (or NO_ID)."""
    old = {(r.name, r.ip_ver, r.protocol, r.port): r.id for r in previous.records}
    return np.array([old.get((r.name, r.ip_ver, r.protocol, r.port), fast.NO_ID_VALUE) for r in infos],
                    dtype=np.uint32)


def _local_pod_ips(cluster):
    return {ip for pod in cluster.local_pods() for ip in pod.ips}


def compile_cluster(cluster, previous=None):
    """Compile a validated Cluster into CompiledTables (see kdp.control.tables).

    `previous` (the tables being replaced) keeps backend ids of unchanged
    endpoints, so conntrack flush-by-backend stays meaningful across reloads,
    and seeds each service-port's Maglev table from its previous one, so a
    reload moves no flow between two backends that both stay."""
    with paused_gc():
        return _compile(cluster, previous)


def _compile(cluster, previous):
    cfg = cluster.config
    node = cluster.node
    local_ips = _local_pod_ips(cluster)
    prev_ids = previous._backend_id_map() if previous is not None else {}
    next_id = previous.service.next_backend_id if previous is not None else 0

    infos, by_service = [], {}
    rec_cols = {k: [] for k in ("proto", "ip_ver", "type", "flags", "port", "node_port",
                                "affinity_timeout", "src_off", "src_n")}
    fe_rows = []                    # (proto, IP, port, svc, kind)
    vips = []
    src_ranges = []
    be_rows, be_ids = [], []
    cl_off, cl_n, lo_off, lo_n = [], [], [], []
    node_ips = set(cfg.node_addresses)

    for key in sorted(cluster.services):
        svc = cluster.services[key]
        if svc.type == "ExternalName" or svc.headless or not svc.cluster_ips:
            continue
        slices = cluster.slices_for(key)
        flags = _record_flags(svc)
        want_local = svc.external_policy_local or svc.internal_policy_local
        ids_here = by_service.setdefault(key, [])
        for cip in svc.cluster_ips:
            fam = cip[0]
            ext = tuple(ip for ip in svc.external_ips if ip[0] == fam)
            lb = lbp = ()
            ranges = ()
            if svc.type == "LoadBalancer":
                lb = tuple(ip for ip, mode in svc.lb_ingress if ip[0] == fam and mode == "VIP")
                lbp = tuple(ip for ip, mode in svc.lb_ingress if ip[0] == fam and mode == "Proxy")
                ranges = tuple(p for p in svc.lb_source_ranges if p[0] == fam)
                if ranges and any(addr.prefix_contains(p, ip) for p in ranges for ip in node_ips):
                    # a request from this node to a VIP-like LB loops back with the
                    # LB IP as its source (nftables proxier: allowFromNode)
                    ranges = ranges + tuple(addr.host_prefix(ip) for ip in lb)
            vips.append(cip)
            for sp in svc.ports:
                sid = len(infos)
                name = f"{key[0]}/{key[1]}:{sp.name}"
                info = SvcPortInfo(sid, name, key, sp.name, fam, sp.protocol, sp.port, sp.target_port,
                                   sp.node_port if svc.type in ("NodePort", "LoadBalancer") else 0,
                                   svc.type, flags, cip, ext, lb, lbp, ranges, svc.affinity_timeout)
                infos.append(info)
                ids_here.append(sid)
                rec_cols["proto"].append(sp.protocol)
                rec_cols["ip_ver"].append(fam)
                rec_cols["type"].append(SVC_TYPES[svc.type])
                rec_cols["flags"].append(flags)
                rec_cols["port"].append(sp.port)
                rec_cols["node_port"].append(info.node_port)
                rec_cols["affinity_timeout"].append(svc.affinity_timeout)
                rec_cols["src_off"].append(len(src_ranges))
                rec_cols["src_n"].append(len(ranges))
                src_ranges.extend(ranges)
                fe_rows.append((sp.protocol, cip, sp.port, sid, fast.FK_CLUSTER_IP))
                for ip in ext:
                    fe_rows.append((sp.protocol, ip, sp.port, sid, fast.FK_EXTERNAL_IP))
                for ip in lb:
                    fe_rows.append((sp.protocol, ip, sp.port, sid, fast.FK_LOAD_BALANCER))
                cluster_rows, local_rows = endpoint_sets(sp.name, sp.protocol, sp.target_port, fam,
                                                         slices, node, local_ips, want_local,
                                                         cluster.zone())
                if prev_ids:
                    rec_ids = {}
                    for rows, offs, ns in ((cluster_rows, cl_off, cl_n), (local_rows, lo_off, lo_n)):
                        offs.append(len(be_rows))
                        ns.append(len(rows))
                        for r in rows:
                            k = (r[0], r[1])
                            bid = rec_ids.get(k)
                            if bid is None:
                                bid = prev_ids.get((name, fam, sp.protocol) + k)
                                if bid is None:
                                    bid = next_id
                                    next_id += 1
                                rec_ids[k] = bid
                            be_ids.append(bid)
                        be_rows.extend(rows)
                else:
                    cl_off.append(len(be_rows))
                    cl_n.append(len(cluster_rows))
                    be_ids.extend(range(next_id, next_id + len(cluster_rows)))
                    be_rows.extend(cluster_rows)
                    lo_off.append(len(be_rows))
                    lo_n.append(len(local_rows))
                    if local_rows:
                        known = {(r[0], r[1]): next_id + i for i, r in enumerate(cluster_rows)}
                        next_id += len(cluster_rows)
                        for r in local_rows:
                            bid = known.get((r[0], r[1]))
                            if bid is None:
                                bid = next_id
                                next_id += 1
                            be_ids.append(bid)
                        be_rows.extend(local_rows)
                    else:
                        next_id += len(cluster_rows)

    n = len(infos)
    rec = np.zeros(n, dtype=fast.SVC_DTYPE)
    for k, col in rec_cols.items():
        rec[k] = col
    fe = np.zeros(len(fe_rows), dtype=fast.FRONTEND_DTYPE)
    if fe_rows:
        fe["proto"] = [r[0] for r in fe_rows]
        fe["ip_ver"] = [r[1][0] for r in fe_rows]
        fe["port"] = [r[2] for r in fe_rows]
        fe["svc"] = [r[3] for r in fe_rows]
        fe["kind"] = [r[4] for r in fe_rows]
        fe["a4"] = [r[1][1] if r[1][0] == 4 else 0 for r in fe_rows]
        for i, r in enumerate(fe_rows):
            if r[1][0] == 6:
                fe[i]["a6"] = np.frombuffer(addr.a4_a6(r[1])[1], dtype=np.uint8)
    backends = backend_array(be_rows, be_ids)
    mode = 0
    if cfg.proxy_mode == "iptables":
        mode |= fast.MODE_IPTABLES
    if cfg.masquerade_all:
        mode |= fast.MODE_MASQ_ALL
    detection = cfg.local_traffic_detection
    if detection in ("InterfaceNamePrefix", "BridgeInterface"):
        mode |= fast.MODE_LOCAL_PORT        # the pod ports are named by node assembly
    local_cidrs = local_traffic_cidrs(cfg)
    families = detector_families(cfg)
    if 4 not in families:
        mode |= fast.MODE_NO_DETECTOR4
    if 6 not in families:
        mode |= fast.MODE_NO_DETECTOR6
    primary = cluster.primary_addresses()
    snat4 = primary[4][1] if 4 in primary else None
    snat6 = addr.a4_a6(primary[6])[1] if 6 in primary else None
    np_addrs = node_port_addresses(cluster)
    tables = fast.ServiceTables(
        rec, fe, addr_array([addr.host_prefix(ip) for ip in vips]), backends,
        np.asarray(cl_off, dtype=np.uint32), np.asarray(cl_n, dtype=np.uint32),
        np.asarray(lo_off, dtype=np.uint32), np.asarray(lo_n, dtype=np.uint32),
        mode=mode, np_lo=cfg.node_port_range[0], np_hi=cfg.node_port_range[1],
        np_addrs=addr_array([addr.host_prefix(ip) for ip in np_addrs]
                            + localhost_node_ports(cluster)),
        svc_cidrs=addr_array(cfg.service_cidrs), local_cidrs=addr_array(local_cidrs),
        node_addrs=addr_array([addr.host_prefix(ip) for ip in cfg.node_addresses]),
        src_ranges=addr_array(src_ranges), snat4=snat4, snat6=snat6,
        snat_lo=cfg.snat_port_range[0], snat_hi=cfg.snat_port_range[1],
        affinity_slots=cfg.session_affinity_slots, next_backend_id=next_id,
        previous=previous.service if previous is not None else None,
        previous_ids=_previous_ids(previous, infos) if previous is not None else None)
    return CompiledTables(cluster, tables, infos, by_service, node_routes(cluster), np_addrs, local_ips)
