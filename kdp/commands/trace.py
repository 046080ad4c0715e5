"""Show each stage's decision for chosen packets, as VPP's packet trace does.

  kdp trace capture.pcap --cluster snapshot/ --node node-1 --packet 0,3
  kdp trace capture.pcap --cluster snapshot/ --node node-1 --filter 'host 10.244.1.50 and port 80'

The whole capture is replayed (conntrack, affinity and neighbours evolve as in `kdp
replay`); for the chosen packets (input indices from 0, or the packets a tcpdump
expression matches as they came in) it prints the parsed headers, decapsulation,
ingress port, DNS, conntrack hit or miss and state, the Service frontend and the backend
chosen and why (traffic policy, topology, terminating fallback, session affinity, the
flow hash's Maglev slot), the policy decisions, NAT before and after, the route and next
hop, encapsulation, and the final verdict and reason.
"""
from kdp.commands.common import add_cluster_option
from kdp.errors import KdpError


def add_arguments(parser):
    parser.add_argument("capture", metavar="IN", help="input capture (pcap or pcapng)")
    add_cluster_option(parser)
    parser.add_argument("--node", metavar="NAME", help="the node kdp plays")
    parser.add_argument("--packet", metavar="N[,M...]", help="trace these packets (input indices from 0)")
    parser.add_argument("--filter", metavar="EXPR", help="trace the packets this tcpdump expression matches")
    parser.add_argument("--ingress", metavar="PORT", help="ingress port of every packet (as kdp replay)")
    parser.add_argument("--links", metavar="FILE", help="the node's interfaces (as kdp replay)")
    parser.add_argument("--all-directions", action="store_true", help="as kdp replay")


def _indices(text):
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise KdpError(f"--packet takes packet indices (0, 1, ...), comma-separated, got {text!r}") from None
    if not out or min(out) < 0:
        raise KdpError(f"--packet takes packet indices (0, 1, ...), comma-separated, got {text!r}")
    return out


def run(args):
    from kdp.trace import trace
    if (args.packet is None) == (args.filter is None):
        raise KdpError("kdp trace needs --packet N[,M...] or --filter EXPR (one of them)")
    lines, n = trace(args.capture, cluster=args.cluster, node=args.node,
                     packets=_indices(args.packet) if args.packet is not None else None,
                     filter=args.filter, links=args.links, ingress=args.ingress,
                     all_directions=args.all_directions)
    print("\n".join(lines))
    if n == 0:
        print("kdp: notice: no packet matched the filter", file=__import__("sys").stderr)
    return 0
