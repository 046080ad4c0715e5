"""Show what each stage of the pipeline decided for chosen packets (VPP's packet trace).

  kdp trace capture.pcap --cluster snapshot/ --node node-1 --packet 12,13
  kdp trace capture.pcap --cluster snapshot/ --node node-1 --filter 'host 10.244.1.50 and tcp'

The whole capture is replayed (the state before a packet is what the packets before it
made); each chosen packet is shown after every stage: rx, parse (and decapsulation),
ingress port, dns, conntrack, new flow (Service frontend, backend and why, policy, the
flow created), nat (before => after), route (route, next hop, port, tunnel), tx (the
verdict). --packet takes input indices counted from 0, as the verdict log's `index`.
"""
import sys

from kdp.commands.common import add_cluster_option
from kdp.errors import KdpError


def add_arguments(parser):
    parser.add_argument("capture", metavar="IN", help="input capture (pcap or pcapng)")
    add_cluster_option(parser, extra_help=". Without it kdp routes everything to the uplink.")
    parser.add_argument("--node", metavar="NAME", help="the node kdp plays")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--packet", metavar="N[,M...]", help="input indices of the packets to trace (from 0)")
    which.add_argument("--filter", metavar="EXPR", help="trace the packets this tcpdump expression matches")
    parser.add_argument("--limit", type=int, default=100, metavar="N",
                        help="trace at most N packets (default 100)")
    parser.add_argument("--json", action="store_true", help="print the traces as JSON")


def _indices(text):
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise KdpError(f"--packet takes indices such as 12 or 12,13; got {text!r}") from None
    if not out or min(out) < 0:
        raise KdpError(f"--packet takes indices from 0; got {text!r}")
    return out


def run(args):
    from kdp.trace import to_json, to_text, trace
    if args.limit < 1:
        raise KdpError(f"--limit must be at least 1, got {args.limit}")
    traces, chosen = trace(args.capture, cluster=args.cluster, node=args.node,
                           packets=_indices(args.packet) if args.packet else None,
                           filter=args.filter, limit=args.limit)
    print(to_json(traces) if args.json else to_text(traces))
    if chosen > len(traces):
        print(f"kdp: notice: {chosen} packets matched; traced the first {len(traces)} (--limit)",
              file=sys.stderr)
    if chosen == 0:
        print("kdp: notice: no packet matched the filter", file=sys.stderr)
    return 0
