"""A cluster snapshot from a live cluster: the objects kdp reads, fetched with the
official Kubernetes client (the `snapshot` extra) and written as YAML Lists, one file
per kind, into a directory `--cluster` then reads.

    take_snapshot("~/.kube/config", "snap/", context=None, node="node-1")

With `node`, a NodeConfig for it is written too, holding what kdp cannot read from the
other objects: kube-proxy's settings (its ConfigMap in kube-system: proxy mode, cluster
CIDR, local-traffic detection, NodePort addresses, masquerade) and the service CIDRs
(ServiceCIDR objects). Tunnels and node addresses need nothing: kdp reads Calico's
IPPools / BlockAffinities and the Nodes' Calico and flannel annotations directly.
"""
import json
from pathlib import Path

import yaml

from kdp.errors import KdpError

# (file, apiVersion, kind, path of the list, required): what `kdp snapshot` fetches
KINDS = (
    ("namespaces", "v1", "Namespace", "/api/v1/namespaces", True),
    ("nodes", "v1", "Node", "/api/v1/nodes", True),
    ("services", "v1", "Service", "/api/v1/services", True),
    ("endpointslices", "discovery.k8s.io/v1", "EndpointSlice", "/apis/discovery.k8s.io/v1/endpointslices", True),
    ("pods", "v1", "Pod", "/api/v1/pods", True),
    ("networkpolicies", "networking.k8s.io/v1", "NetworkPolicy",
     "/apis/networking.k8s.io/v1/networkpolicies", True),
    ("adminnetworkpolicies", "policy.networking.k8s.io/v1alpha1", "AdminNetworkPolicy",
     "/apis/policy.networking.k8s.io/v1alpha1/adminnetworkpolicies", False),
    ("baselineadminnetworkpolicies", "policy.networking.k8s.io/v1alpha1", "BaselineAdminNetworkPolicy",
     "/apis/policy.networking.k8s.io/v1alpha1/baselineadminnetworkpolicies", False),
    ("ippools", "crd.projectcalico.org/v1", "IPPool", "/apis/crd.projectcalico.org/v1/ippools", False),
    ("blockaffinities", "crd.projectcalico.org/v1", "BlockAffinity",
     "/apis/crd.projectcalico.org/v1/blockaffinities", False),
)
SERVICE_CIDRS = ("/apis/networking.k8s.io/v1/servicecidrs", "/apis/networking.k8s.io/v1beta1/servicecidrs")
KUBE_PROXY_CONFIGMAP = "/api/v1/namespaces/kube-system/configmaps/kube-proxy"


class _Api:
    """GETs against the API server the kubeconfig names, as JSON."""

    def __init__(self, kubeconfig, context):
        try:
            from kubernetes import config
        except ImportError:
            raise KdpError("kdp snapshot needs the Kubernetes client: pip install 'kdp[snapshot]'") from None
        try:
            self.client = config.new_client_from_config(config_file=str(kubeconfig), context=context,
                                                        persist_config=False)
        except Exception as exc:  # noqa: BLE001 - the client raises many kinds for a bad kubeconfig
            raise KdpError(f"{kubeconfig}: cannot use this kubeconfig: {exc}") from None

    def get(self, path):
        """The JSON at `path`, or None when the server does not serve it (404: a kind
        not installed)."""
        from kubernetes.client.exceptions import ApiException
        method, url, headers, body, post = self.client.param_serialize(
            "GET", path, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"])
        try:
            response = self.client.call_api(method, url, header_params=headers, _request_timeout=30)
            data = response.read()
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise KdpError(f"{self.client.configuration.host}{path}: {exc.status} {exc.reason}") from None
        except Exception as exc:  # noqa: BLE001 - urllib3's connection errors
            raise KdpError(f"cannot reach the API server {self.client.configuration.host}: {exc}") from None
        if response.status == 404:
            return None
        if response.status >= 400:
            raise KdpError(f"{self.client.configuration.host}{path}: HTTP {response.status}")
        try:
            return json.loads(data)
        except ValueError:
            raise KdpError(f"{self.client.configuration.host}{path}: not JSON") from None


def _clean(item, api_version, kind):
    """An object as `kubectl get -o yaml` prints it: kind and apiVersion set (list items
    lack them), server-side bookkeeping (managedFields) left out."""
    item = dict(item)
    item["apiVersion"], item["kind"] = api_version, kind
    meta = dict(item.get("metadata") or {})
    meta.pop("managedFields", None)
    item["metadata"] = meta
    return item


def _node_config(api, node, notices):
    """The NodeConfig of `node`: what kube-proxy's ConfigMap and the ServiceCIDRs say."""
    spec = {"nodeName": node}
    for path in SERVICE_CIDRS:
        got = api.get(path)
        if got is not None:
            cidrs = [c for item in got.get("items", []) for c in (item.get("spec") or {}).get("cidrs", [])]
            if cidrs:
                spec["serviceCIDRs"] = cidrs
            break
    else:
        notices.append("no ServiceCIDR objects (Kubernetes < 1.31?): NodeConfig spec.serviceCIDRs left "
                       "unset (the API server's --service-cluster-ip-range is not visible)")
    cm = api.get(KUBE_PROXY_CONFIGMAP)
    conf = None
    if cm is not None:
        text = (cm.get("data") or {}).get("config.conf")
        try:
            conf = yaml.safe_load(text) if text else None
        except yaml.YAMLError:
            conf = None
    if not isinstance(conf, dict):
        notices.append("no readable kube-proxy ConfigMap (kube-system/kube-proxy config.conf): "
                       "kube-proxy's defaults are assumed")
        return spec
    mode = conf.get("mode") or "iptables"       # kube-proxy's own default on Linux
    if mode in ("iptables", "nftables"):
        spec["proxyMode"] = mode
    else:
        notices.append(f"kube-proxy mode {mode!r}: kdp models iptables and nftables; nftables assumed")
    # v1alpha1 has clusterCIDR ("a,b"); later versions detectLocal.clusterCIDRs
    cluster_cidr = conf.get("clusterCIDR") or ",".join(map(str, (conf.get("detectLocal") or {}).get("clusterCIDRs")
                                                           or []))
    cidrs = [c.strip() for c in str(cluster_cidr).split(",") if c.strip()]
    detect = conf.get("detectLocalMode")
    if detect in ("ClusterCIDR", "NodeCIDR", "InterfaceNamePrefix", "BridgeInterface"):
        spec["localTrafficDetection"] = detect
    if cidrs:
        spec["clusterCIDRs"] = cidrs
    elif detect in (None, "", "ClusterCIDR"):     # kube-proxy's default mode
        # kube-proxy then runs its no-op detector; left unset, kdp would guess the
        # cluster CIDR from the Nodes' podCIDRs and masquerade what kube-proxy does not
        spec["clusterCIDRs"] = []
        notices.append("kube-proxy's ConfigMap sets no clusterCIDR: it detects no local traffic "
                       "(NodeConfig spec.clusterCIDRs: []); set the CIDR there if kube-proxy's "
                       "command line gives --cluster-cidr")
    addresses = conf.get("nodePortAddresses")
    if addresses:
        spec["nodePortAddresses"] = list(addresses)
    iptables = conf.get("iptables") or {}
    if iptables.get("masqueradeAll"):
        spec["masquerade"] = {"masqueradeAll": True}
    if mode == "iptables" and iptables.get("localhostNodePorts") is not None:
        spec["localhostNodePorts"] = bool(iptables["localhostNodePorts"])
    return spec


def take_snapshot(kubeconfig, directory, context=None, node=None, force=False):
    """Fetch the objects kdp reads and write them under `directory`; returns
    ({file name: object count}, notices)."""
    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise KdpError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise KdpError(f"{out}: not empty (use --force to write into it)")
    api = _Api(kubeconfig, context)
    notices, files = [], {}
    for name, api_version, kind, path, required in KINDS:
        got = api.get(path)
        if got is None:
            if required:
                raise KdpError(f"the API server does not serve {path}")
            notices.append(f"{kind}: not served by this cluster (the CRD is not installed): skipped")
            continue
        items = [_clean(item, api_version, kind) for item in got.get("items", [])]
        files[name] = {"apiVersion": "v1", "kind": "List", "items": items}
    if node is not None:
        names = {(i.get("metadata") or {}).get("name") for i in files["nodes"]["items"]}
        if node not in names:
            raise KdpError(f"--node {node}: no such Node (the cluster has {', '.join(sorted(names)) or 'none'})")
        files["nodeconfig"] = {"apiVersion": "kdp.dev/v1alpha1", "kind": "NodeConfig",
                               "metadata": {"name": node}, "spec": _node_config(api, node, notices)}
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, doc in files.items():
        (out / f"{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        counts[name] = len(doc["items"]) if doc.get("kind") == "List" else 1
    return counts, notices
