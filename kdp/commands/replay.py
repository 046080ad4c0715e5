"""Run a capture through the data plane and write what it transmits.

Every input packet gets a verdict (forward, drop, reject, local) and a reason;
transmitted packets (forwarded ones, and the ICMP answers of rejects) go to the
output capture (pcap, or pcapng when OUT ends in .pcapng, with one interface per
egress port). The summary counts every packet
exactly once by stage and reason, so its total equals the packets read.

  kdp replay capture.pcap --cluster snapshot/ --node node-1 -o out.pcap --log verdicts.jsonl
"""
import json
import sys

from kdp.errors import KdpError


def add_arguments(parser):
    parser.add_argument("capture", metavar="IN", help="input capture (pcap or pcapng)")
    parser.add_argument("-o", "--output", metavar="OUT",
                        help="output capture of transmitted packets (.pcap or .pcapng)")
    parser.add_argument("--cluster", metavar="PATH", action="append", default=[],
                        help="Kubernetes manifests (file or directory; repeatable). "
                             "Without it kdp routes everything to the uplink.")
    parser.add_argument("--node", metavar="NAME", help="the node kdp plays (a NodeConfig or Node name)")
    parser.add_argument("--log", metavar="FILE", help="write one JSON object per input packet (JSON Lines)")
    parser.add_argument("--ingress", metavar="PORT",
                        help="ingress port of every packet (default: a pcapng interface's name; "
                             "for classic pcap by source address: a local pod's address is that "
                             "pod's port, anything else the uplink)")
    parser.add_argument("--batch-size", type=int, default=256, metavar="N",
                        help="packets per batch (default 256)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args):
    from kdp.replay import replay
    from kdp.summary import print_summary

    if args.batch_size < 1 or args.batch_size > 65536:
        raise KdpError(f"--batch-size must be 1..65536, got {args.batch_size}")
    result = replay(
        args.capture,
        output=args.output,
        cluster=args.cluster,
        node=args.node,
        log=args.log,
        ingress=args.ingress,
        batch_size=args.batch_size,
        progress=not (args.no_progress or args.json) and sys.stderr.isatty(),
    )
    if args.json:
        json.dump(result.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_summary(result)
    return 0
