"""Run a capture through the data plane and write what it transmits.

Every input packet gets a verdict (forward, drop, reject, local) and a reason;
transmitted packets (forwarded ones, and the ICMP answers of rejects) go to the
output capture (pcap, or pcapng when OUT ends in .pcapng, with one interface per
egress port). The summary counts every packet
exactly once by stage and reason, so its total equals the packets read.

  kdp replay capture.pcap --cluster snapshot/ --node node-1 -o out.pcap --log verdicts.jsonl
  tcpdump -i any -w - | kdp replay - --cluster snapshot/ --node node-1 -o out.pcap

"-" is standard input for IN and standard output for OUT or the log (the summary then
goes to standard error).
"""
import json
import sys

from kdp.errors import KdpError


def add_arguments(parser):
    parser.add_argument("capture", metavar="IN", help="input capture (pcap or pcapng; - reads standard input)")
    parser.add_argument("-o", "--output", metavar="OUT",
                        help="output capture of transmitted packets (.pcap or .pcapng; - writes "
                             "classic pcap to standard output)")
    parser.add_argument("--cluster", metavar="PATH", action="append", default=[],
                        help="Kubernetes manifests (file or directory; repeatable). "
                             "Without it kdp routes everything to the uplink.")
    parser.add_argument("--node", metavar="NAME", help="the node kdp plays (a NodeConfig or Node name)")
    parser.add_argument("--log", metavar="FILE", help="write one JSON object per input packet "
                                                      "(JSON Lines; - for standard output)")
    parser.add_argument("--ingress", metavar="PORT",
                        help="ingress port of every packet (default: a pcapng interface's name; "
                             "for classic pcap by source address: a local pod's address is that "
                             "pod's port, anything else the uplink)")
    parser.add_argument("--links", metavar="FILE",
                        help="the node's interfaces as `ip -j link` (or `ip -o link`) printed them "
                             "when the capture was taken: names the interface indexes of a "
                             "`tcpdump -i any` (Linux cooked v2) capture")
    parser.add_argument("--all-directions", action="store_true",
                        help="take packets the capture saw leaving the node (and frames for "
                             "other hosts) as input too; by default they are counted, not processed")
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
        links=args.links,
        all_directions=args.all_directions,
    )
    # standard output may carry the capture or the log: the summary goes to stderr then
    stdout_taken = "-" in (args.output, args.log)
    if args.json:
        out = sys.stderr if stdout_taken else sys.stdout
        json.dump(result.to_json(), out, indent=2)
        out.write("\n")
    elif stdout_taken:
        from rich.console import Console
        print_summary(result, console=Console(stderr=True))
    else:
        print_summary(result)
    return 0
