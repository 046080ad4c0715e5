"""CompiledTables: the compiled service tables of one node, and their updates.

A CompiledTables is built whole by kdp.control.compile(cluster) and swapped in
whole by its user. Between full compiles, `update_endpoints` changes one
Service's endpoints in place, copy-on-write: it validates the object first
(a bad object changes nothing), recomputes only that Service's service-ports
(their backend arrays and Maglev tables), publishes each with one pointer
swap, and returns the backends that went away (conntrack flushes their UDP
flows so they choose again). Its cost does not depend on how many Services
the cluster has.
"""
from kdp._fast import service as fast
from kdp.control import addr
from kdp.control.backends import (backend_array, backend_ip, endpoint_sets, endpoint_states, topology_in_use,
                                  local_ready_endpoints)
from kdp.control.model import PROTOCOL_NAMES, EndpointSlice, Origin
from kdp.control.validate import Problems, parse_object
from kdp.errors import ConfigError

KIND_NAMES = {fast.FK_CLUSTER_IP: "ClusterIP", fast.FK_EXTERNAL_IP: "ExternalIP",
              fast.FK_LOAD_BALANCER: "LoadBalancer", fast.FK_NODE_PORT: "NodePort"}


class CompiledTables:
    """Service tables for one node.

    Attributes: `cluster` (the model they were compiled from), `service`
    (kdp._fast.service.ServiceTables: what the pipeline's slow path uses),
    `records` (SvcPortInfo per service-port id), `routes` (NodeRoute records,
    from which kdp.control.node compiles the route stage's table),
    `node_port_addresses` (IPs NodePorts answer on).
    """

    def __init__(self, cluster, service, records, by_service, routes, node_port_addresses, local_ips):
        self.cluster = cluster
        self.service = service
        self.records = records
        self.by_service = by_service
        self.routes = routes
        self.node_port_addresses = node_port_addresses
        self._local_ips = local_ips
        self._by_name = {}
        for r in records:
            self._by_name.setdefault(r.name, []).append(r.id)

    # -------------------------------------------------------------- queries

    def ids(self, name):
        """Service-port ids named "namespace/name:portname" (one per IP family)."""
        return list(self._by_name.get(name, ()))

    def decide(self, meta):
        """Bulk service decision over packet.META_DTYPE records (see ServiceTables.decide)."""
        return self.service.decide(meta)

    def backends(self, svc_port, local=False):
        return self.service.backends(svc_port, local)

    def _backend_id_map(self):
        """{(name, family, protocol, IP, port): backend id} over every service-port."""
        svc, _, be = self.service.all_backends()
        keys = [(r.name, r.ip_ver, r.protocol) for r in self.records]
        vers, a4s, ports, ids = (be["ip_ver"].tolist(), be["a4"].tolist(), be["port"].tolist(),
                                 be["id"].tolist())
        out = {}
        for k, s in enumerate(svc.tolist()):
            ip = (4, a4s[k]) if vers[k] == 4 else (6, int.from_bytes(bytes(be[k]["a6"]), "big"))
            out[keys[s] + (ip, ports[k])] = ids[k]
        return out

    # -------------------------------------------------------------- updates

    def update_endpoints(self, obj):
        """Apply a new or changed EndpointSlice / v1 Endpoints (a mapping as kubectl
        prints it, or a model EndpointSlice). Returns {service-port id: [removed
        backend ids]} for the service-ports that lost backends. Raises ConfigError
        (and changes nothing) when the object is invalid."""
        if isinstance(obj, EndpointSlice):
            kind, parsed = "EndpointSlice", obj
        else:
            problems = Problems()
            got = parse_object(Origin("<update>"), obj, problems)
            problems.raise_if_any("endpoint update")
            if got is None or got[0] not in ("EndpointSlice", "Endpoints"):
                raise ConfigError("endpoint update: expects an EndpointSlice or a v1 Endpoints")
            kind, parsed = got
        c = self.cluster
        if kind == "EndpointSlice":
            key = (parsed.namespace, parsed.service)
            slices = dict(c.slices.get(key, {}))
            slices[parsed.name] = parsed
            return self._apply(key, slices=slices)
        if not parsed:
            return {}
        key = (parsed[0].namespace, parsed[0].service)
        return self._apply(key, endpoints=parsed)

    def delete_endpoints(self, namespace, name, kind="EndpointSlice", service=None):
        """Remove an EndpointSlice (by its name; `service` speeds the search) or a
        v1 Endpoints (by its Service's name). Returns removed backends as above."""
        c = self.cluster
        if kind == "Endpoints":
            return self._apply((namespace, name), endpoints=[])
        keys = [(namespace, service)] if service else [k for k in c.slices if k[0] == namespace]
        for key in keys:
            if name in c.slices.get(key, {}):
                slices = dict(c.slices[key])
                del slices[name]
                return self._apply(key, slices=slices)
        return {}

    def _apply(self, key, slices=None, endpoints=None):
        c = self.cluster
        new_slices = slices if slices is not None else c.slices.get(key, {})
        new_eps = endpoints if endpoints is not None else c.endpoints.get(key, [])
        view = [new_slices[n] for n in sorted(new_slices)] if new_slices else list(new_eps)
        svc = c.services.get(key)
        staged = []
        for sid in self.by_service.get(key, ()):
            r = self.records[sid]
            want_local = svc.external_policy_local or svc.internal_policy_local
            crows, lrows = endpoint_sets(r.port_name, r.protocol, r.target_port, r.ip_ver, view,
                                         c.node, self._local_ips, want_local, c.zone())
            old = {}
            for local in (False, True):
                for b in self.service.backends(sid, local):
                    old[(backend_ip(b), int(b["port"]))] = int(b["id"])
            fresh = [k for k in dict.fromkeys((r0, r1) for r0, r1, _ in crows + lrows) if k not in old]
            new_ids = dict(zip(fresh, (int(x) for x in self.service.allocate_backend_ids(len(fresh)))))
            ids = {**old, **new_ids}
            carr = backend_array(crows, [ids[(r0, r1)] for r0, r1, _ in crows])
            larr = backend_array(lrows, [ids[(r0, r1)] for r0, r1, _ in lrows])
            keep = {ids[(r0, r1)] for r0, r1, _ in crows + lrows}
            staged.append((sid, carr, larr, keep))
        removed = {}
        for sid, carr, larr, keep in staged:
            old_ids = self.service.publish(sid, carr, larr)
            gone = sorted(int(i) for i in old_ids if int(i) not in keep)
            if gone:
                removed[sid] = gone
        if slices is not None:
            if slices:
                c.slices[key] = slices
            else:
                c.slices.pop(key, None)
        if endpoints is not None:
            if endpoints:
                c.endpoints[key] = endpoints
            else:
                c.endpoints.pop(key, None)
        return removed

    # -------------------------------------------------------------- views (kdp show)

    def services_view(self):
        out = []
        for r in self.records:
            fronts = [{"kind": "ClusterIP", "address": addr.format_ip(r.cluster_ip), "port": r.port}]
            fronts += [{"kind": "ExternalIP", "address": addr.format_ip(ip), "port": r.port}
                       for ip in r.external_ips]
            fronts += [{"kind": "LoadBalancer", "address": addr.format_ip(ip), "port": r.port}
                       for ip in r.lb_ips]
            if r.node_port:
                fronts += [{"kind": "NodePort", "address": addr.format_ip(ip), "port": r.node_port}
                           for ip in self.node_port_addresses if ip[0] == r.ip_ver]
            f = r.flags
            out.append({
                "id": r.id, "name": r.name, "type": r.type, "family": f"IPv{r.ip_ver}",
                "protocol": PROTOCOL_NAMES[r.protocol], "port": r.port, "nodePort": r.node_port or None,
                "targetPort": r.target_port, "frontends": fronts,
                "sessionAffinity": {"clientIP": bool(f & fast.SF_AFFINITY), "timeoutSeconds": r.affinity_timeout}
                if f & fast.SF_AFFINITY else None,
                "externalTrafficPolicy": "Local" if f & fast.SF_ETP_LOCAL else "Cluster",
                "internalTrafficPolicy": "Local" if f & fast.SF_ITP_LOCAL else "Cluster",
                "loadBalancerSourceRanges": [addr.format_prefix(p) for p in r.source_ranges],
                "lbProxyIPs": [addr.format_ip(ip) for ip in r.lb_proxy_ips],
                "backends": int(self.service.backends(r.id).shape[0]),
                "localBackends": int(self.service.backends(r.id, True).shape[0]),
                "healthCheck": self._health(r),
                "topology": self._topology(r),
            })
        return out

    def _topology(self, r):
        """The topology-aware routing kube-proxy applies to record r's cluster endpoints
        on this node: {"mode": PreferSameNode | PreferSameZone, "node", "zone"}, None when
        none (no hints, incomplete ones, none for here)."""
        c = self.cluster
        zone = c.zone()
        mode = topology_in_use(r.port_name, r.protocol, r.target_port, r.ip_ver, c.slices_for(r.key), c.node, zone)
        if not mode:
            return None
        return {"mode": mode, "node": c.node, "zone": zone or None}

    def _health(self, r):
        """kube-proxy's health server answer for the Service of record r, when it has a
        healthCheckNodePort: {"nodePort", "localEndpoints", "status": 200 | 503}."""
        svc = self.cluster.services.get(r.key)
        if svc is None or not svc.health_check_node_port:
            return None
        n = local_ready_endpoints(r.ip_ver, self.cluster.slices_for(r.key), self.cluster.node,
                                  self._local_ips)
        return {"nodePort": svc.health_check_node_port, "localEndpoints": n, "status": 200 if n else 503}

    def endpoints_view(self):
        out = []
        for r in self.records:
            entry = {"id": r.id, "name": r.name, "family": f"IPv{r.ip_ver}",
                     "maglevSize": int(self.service.lut(r.id).shape[0]), "topology": self._topology(r)}
            for label, local in (("backends", False), ("localBackends", True)):
                entry[label] = [{"id": int(b["id"]), "address": addr.format_ip(backend_ip(b)),
                                 "port": int(b["port"]), "local": bool(b["local"])}
                                for b in self.service.backends(r.id, local)]
            serving = {(b["address"], b["port"]) for b in entry["backends"] + entry["localBackends"]}
            entry["endpoints"] = [
                {"address": addr.format_ip(ip), "port": port, "node": node, "state": state,
                 "inUse": (addr.format_ip(ip), port) in serving}
                for ip, port, node, state in endpoint_states(r.port_name, r.protocol, r.target_port, r.ip_ver,
                                                             self.cluster.slices_for(r.key))]
            out.append(entry)
        return out

    def routes_view(self):
        return [r.as_dict() for r in self.routes]

