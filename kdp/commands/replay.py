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

Several nodes (`--node node-1,node-2`, or `--nodes all`): one data plane per node,
joined by a simulated underlay. Each packet enters the node it belongs to (its
source's pod or node, else the node its destination belongs to); what a node sends
to another node's address (tunnels, native routes) is processed there next. The
log says at which node (`node`, `hop`) each step happened; the summary counts each
packet once where it ended, and each node's own counters below it.
"""
import json
import sys

from kdp.commands.common import add_cluster_option, console
from kdp.errors import KdpError


def add_arguments(parser):
    parser.add_argument("capture", metavar="IN", help="input capture (pcap or pcapng; - reads standard input)")
    parser.add_argument("-o", "--output", metavar="OUT",
                        help="output capture of transmitted packets (.pcap or .pcapng; - writes "
                             "classic pcap to standard output)")
    add_cluster_option(parser, extra_help=". Without it kdp routes everything to the uplink.")
    parser.add_argument("--node", metavar="NAME[,NAME...]",
                        help="the node kdp plays (a NodeConfig or Node name); several, comma-separated, "
                             "for a multi-node replay")
    parser.add_argument("--nodes", metavar="all|NAME,...",
                        help="multi-node replay of every node of the snapshot (all) or of these")
    parser.add_argument("--log", metavar="FILE", help="write one JSON object per input packet "
                                                      "(JSON Lines; - for standard output)")
    parser.add_argument("--flows", metavar="FILE",
                        help="write one JSON object per conntrack flow when it ends (expired, "
                             "evicted, flushed, replaced, reset) and per flow still live at the end: "
                             "tuples before and after NAT, Service and backend, policy, packets and "
                             "bytes each way, first and last time (JSON Lines; - for standard output)")
    parser.add_argument("--annotate", action="store_true",
                        help="give each written packet its verdict, reason, Service and NAT as a pcapng "
                             "packet comment (Wireshark shows it); OUT must end in .pcapng")
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
    parser.add_argument("--filter", metavar="EXPR",
                        help="only packets matching this tcpdump expression (e.g. 'tcp port 80 and "
                             "host 10.244.1.5') are processed, written and logged; the others are "
                             "counted, reason filtered. Compiled by libpcap as tcpdump does, matched "
                             "on the packet as it came in")
    parser.add_argument("-c", "--count", type=int, metavar="N",
                        help="stop after N packets (with --filter: after N matching packets), "
                             "as tcpdump -c")
    parser.add_argument("--log-only", metavar="VERDICT[,VERDICT...]",
                        help="the log keeps only packets with these verdicts (forward, drop, "
                             "reject, local, reply), e.g. drop,reject; lines keep their index")
    parser.add_argument("--workers", default="1", metavar="N",
                        help="cores to use, 1..64 (default 1). With 2 or more, flows are sharded over N "
                             "data plane pipelines by a symmetric key of their client (both directions, "
                             "ICMP errors and ClientIP affinity meet the same conntrack); the output "
                             "capture, the log and the counters are the same as with 1. When something "
                             "could make them differ (an IP fragment, a flow whose answers change "
                             "shard, ...) the replay starts again on one worker and says so; "
                             "--annotate, -c, --filter, --flows, standard input and several nodes run "
                             "on one worker and write on a second core (bench/README.md)")
    parser.add_argument("--batch-size", type=int, default=256, metavar="N",
                        help="packets per batch (default 256)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args):
    from kdp.replay import replay
    from kdp.summary import print_summary, warm_in_background

    if args.batch_size < 1 or args.batch_size > 65536:
        raise KdpError(f"--batch-size must be 1..65536, got {args.batch_size}")
    names = [n for n in (args.nodes or args.node or "").split(",") if n]
    if args.nodes or len(names) > 1:
        return _run_nodes(args, names)
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
        filter=args.filter,
        count=args.count,
        log_only=args.log_only,
        flows=args.flows,
        annotate=args.annotate,
        workers=_workers(args.workers),
        freeze_gc=True,
        on_ready=None if args.json else warm_in_background,
    )
    _print(args, result, print_summary)
    return 0


def _workers(asked):
    """--workers: a whole number 1..64 (ShardPlan's 64 virtual shards), else a KdpError."""
    try:
        n = int(asked)
    except (TypeError, ValueError):
        raise KdpError(f"--workers takes a number of cores (1..64), got {asked!r}") from None
    if n < 1:
        raise KdpError(f"--workers must be at least 1, got {n}")
    if n > 64:
        raise KdpError(f"--workers is at most 64 (flows are spread over 64 shards), got {n}")
    return n


def _print(args, result, print_summary):
    """The summary; on stderr when standard output carries the capture or the log."""
    from kdp.summary import print_diagnostics
    stdout_taken = "-" in (args.output, args.log, getattr(args, "flows", None))
    if args.json:
        out = sys.stderr if stdout_taken else sys.stdout
        json.dump(result.to_json(), out, indent=2)
        out.write("\n")
        print_diagnostics(result)
    else:
        print_summary(result, console=console(stderr=stdout_taken))


def _run_nodes(args, names):
    from kdp.multinode import print_multi_summary, replay_nodes

    if args.node and args.nodes:
        raise KdpError("give --node NAME,NAME... or --nodes, not both")
    if args.ingress:
        raise KdpError("--ingress names one node's port: a multi-node replay decides each packet's node and port")
    if not args.cluster:
        raise KdpError("a multi-node replay needs --cluster")
    if args.filter or args.count is not None or args.log_only or args.flows or args.annotate:
        raise KdpError("--filter, -c, --log-only, --flows and --annotate are for a single node's replay")
    if args.links or args.all_directions:
        raise KdpError("--links and --all-directions are for a single node's capture")
    workers = _workers(args.workers)
    result = replay_nodes(args.capture, output=args.output, cluster=args.cluster,
                          nodes="all" if names == ["all"] else names, log=args.log,
                          batch_size=args.batch_size)
    if workers > 1:
        result.notices.append(f"--workers {workers}: a multi-node replay runs on one worker "
                              "(each packet may cross several nodes' pipelines in turn)")
    _print(args, result, print_multi_summary)
    return 0
