"""Write a cluster snapshot from a live cluster: the objects kdp reads, one YAML List per
kind, into a directory that `--cluster` then takes.

  kdp snapshot --kubeconfig ~/.kube/config -o snap/ [--context C] [--node node-1]
  kdp replay capture.pcap --cluster snap/ --node node-1 -o out.pcap

Fetched: Namespaces, Nodes, Services, EndpointSlices, Pods, NetworkPolicies, and where
the cluster serves them AdminNetworkPolicies, BaselineAdminNetworkPolicies, Calico's
IPPools and BlockAffinities. --node also writes a NodeConfig for that node with what
the other objects cannot show: kube-proxy's settings (its ConfigMap) and the service
CIDRs (ServiceCIDR objects). Needs the Kubernetes client: pip install 'kdp[snapshot]'.
"""
import sys


def add_arguments(parser):
    parser.add_argument("--kubeconfig", required=True, metavar="FILE", help="the kubeconfig to use")
    parser.add_argument("--context", help="a context of the kubeconfig (default: its current one)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="the snapshot directory")
    parser.add_argument("--node", metavar="NAME", help="also write a NodeConfig for this node")
    parser.add_argument("--force", action="store_true", help="write into a directory that is not empty")


def run(args):
    from kdp.snapshot import take_snapshot
    counts, notices = take_snapshot(args.kubeconfig, args.output, context=args.context, node=args.node,
                                    force=args.force)
    for n in notices:
        print(f"kdp: notice: {n}", file=sys.stderr)
    print(f"{args.output}: " + ", ".join(f"{count} {name}" for name, count in counts.items()))
    return 0
