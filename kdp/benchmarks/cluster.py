"""A deterministic synthetic cluster for benchmarks (and `kdp bench pipeline`).

    docs = generate(services=10_000, endpoints=100_000)     # raw objects, as kubectl prints
    cluster = Cluster.from_documents(docs, node="node-0")

Services: 75% ClusterIP, 20% NodePort, 5% LoadBalancer (one LB IP each);
every 10th has externalTrafficPolicy Local, every 7th sessionAffinity
ClientIP; one TCP port "http" 80 -> 8080 each. Endpoints are spread evenly
over the services and over `nodes` nodes (node k owns the pod CIDR
10.(64+k//256).(k%256).0/24; see _pod_ip). Same arguments, same objects:
no randomness.
"""
import time

SERVICE_CIDR = "10.96.0.0/12"
CLUSTER_CIDR = "10.64.0.0/10"


def _svc_ip(i):
    """The i-th ClusterIP: from 10.96.0.1 on (the network address is never allocated)."""
    i += 1
    return f"10.{96 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}"


def _node_cidr(k):
    return f"10.{64 + (k >> 8)}.{k & 255}.0/24"


def _pod_ip(node, j):
    """The j-th pod of a node: inside the node's /24 for the first 250, then in an
    overflow range 10.96+.. that stays out of every pod CIDR (still unique)."""
    if j < 250:
        return f"10.{64 + (node >> 8)}.{node & 255}.{1 + j}"
    j -= 250
    return f"10.{112 + (node >> 4)}.{((node & 15) << 4) | ((j // 250) & 15)}.{1 + j % 250}"


def _node_ip(k):
    return f"192.168.{k >> 8}.{1 + (k & 255) % 250}"


def generate(services=10_000, endpoints=100_000, nodes=100, node_port_range=(30000, 32767)):
    """The objects of the synthetic cluster (list of mappings), NodeConfig for node-0 included."""
    docs = [{
        "apiVersion": "kdp.dev/v1alpha1", "kind": "NodeConfig", "metadata": {"name": "node-0"},
        "spec": {"clusterCIDRs": [CLUSTER_CIDR], "serviceCIDRs": [SERVICE_CIDR],
                 "nodePortRange": f"{node_port_range[0]}-{node_port_range[1]}"},
    }]
    for k in range(nodes):
        docs.append({"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"node-{k}"},
                     "spec": {"podCIDRs": [_node_cidr(k)]},
                     "status": {"addresses": [{"type": "InternalIP", "address": _node_ip(k)}]}})
    next_node_port = node_port_range[0]
    pod_counter = [0] * nodes
    per, extra = divmod(endpoints, services) if services else (0, 0)
    for i in range(services):
        kind = "ClusterIP"
        if i % 20 == 1:
            kind = "LoadBalancer"
        elif i % 5 == 2:
            kind = "NodePort"
        port = {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}
        if kind != "ClusterIP" and next_node_port <= node_port_range[1]:
            port["nodePort"] = next_node_port
            next_node_port += 1
        spec = {"type": kind, "clusterIP": _svc_ip(i), "clusterIPs": [_svc_ip(i)],
                "selector": {"app": f"s{i}"}, "ports": [port]}
        if i % 10 == 3:
            spec["externalTrafficPolicy"] = "Local"
        if i % 7 == 4:
            spec["sessionAffinity"] = "ClientIP"
        svc = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": f"svc-{i}", "namespace": f"ns-{i % 50}"}, "spec": spec}
        if kind == "LoadBalancer":
            svc["status"] = {"loadBalancer": {"ingress": [{"ip": f"172.16.{i >> 8 & 255}.{i & 255}"}]}}
        docs.append(svc)
        eps = []
        for j in range(per + (1 if i < extra else 0)):
            node = (i * 7 + j) % nodes
            c = pod_counter[node]
            pod_counter[node] += 1
            ip = _pod_ip(node, c)
            eps.append({"addresses": [ip], "conditions": {"ready": True}, "nodeName": f"node-{node}"})
        docs.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                     "metadata": {"name": f"svc-{i}-abc", "namespace": f"ns-{i % 50}",
                                  "labels": {"kubernetes.io/service-name": f"svc-{i}"}},
                     "addressType": "IPv4", "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
                     "endpoints": eps})
    return docs


def changed_slice(docs, service=0, endpoint=0, new_ip="10.127.255.254"):
    """A copy of one service's EndpointSlice with one endpoint's address replaced."""
    for d in docs:
        if d["kind"] == "EndpointSlice" and d["metadata"]["name"] == f"svc-{service}-abc":
            out = {**d, "endpoints": [dict(e) for e in d["endpoints"]]}
            out["endpoints"][endpoint] = {**out["endpoints"][endpoint], "addresses": [new_ip]}
            return out
    raise KeyError(service)


def measure(services=10_000, endpoints=100_000, updates=200):
    """Seconds for: validate (objects -> model), compile (model -> tables), and one
    endpoint change (median / p99 / max over `updates`). Wall time and, beside it,
    CPU time of this process (steadier on a shared machine). Returns a dict."""
    from kdp.control import Cluster, compile
    docs = generate(services, endpoints)
    w0, c0 = time.perf_counter(), time.process_time()
    cluster = Cluster.from_documents(docs, node="node-0")
    w1, c1 = time.perf_counter(), time.process_time()
    tables = compile(cluster)
    w2, c2 = time.perf_counter(), time.process_time()
    wall, cpu = [], []
    for k in range(updates):
        sl = changed_slice(docs, service=(k * 37) % services, endpoint=0,
                           new_ip=f"10.126.{k >> 8 & 255}.{1 + k % 250}")
        u0, p0 = time.perf_counter(), time.process_time()
        tables.update_endpoints(sl)
        wall.append(time.perf_counter() - u0)
        cpu.append(time.process_time() - p0)
    wall.sort()
    cpu.sort()

    def pick(xs, q):
        return xs[min(len(xs) - 1, len(xs) * q // 100)] if xs else None
    return {"services": services, "endpoints": endpoints, "service_ports": len(tables.records),
            "validate_s": w1 - w0, "validate_cpu_s": c1 - c0,
            "compile_s": w2 - w1, "compile_cpu_s": c2 - c1,
            "update_median_s": pick(wall, 50), "update_p99_s": pick(wall, 99), "update_max_s": wall[-1] if wall else None,
            "update_cpu_median_s": pick(cpu, 50), "update_cpu_p99_s": pick(cpu, 99)}


if __name__ == "__main__":
    import json
    print(json.dumps(measure(), indent=2))
