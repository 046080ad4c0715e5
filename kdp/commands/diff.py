"""Replay one capture under two snapshots and list the flows whose fate changes.

  kdp diff capture.pcap --before snap/ --after snap-new/ --node node-1 [--json]

The safety check before rolling out a policy or Service change: the flows of a real
capture that the change would deny or allow, reject, send to another backend,
masquerade otherwise, or route through another port or tunnel, with counts per
Service and per policy decision. Each flow is judged by its first packet (kdp/diff.py
has the rules). Exit status 0 either way; --json for machines.
"""
import json
import sys

from kdp.commands.common import console, hostport


def add_arguments(parser):
    parser.add_argument("capture", metavar="IN", help="the capture (pcap or pcapng; read twice)")
    parser.add_argument("--before", action="append", required=True, metavar="PATH",
                        help="the snapshot as it is (file or directory; repeat for several)")
    parser.add_argument("--after", action="append", required=True, metavar="PATH",
                        help="the snapshot with the change (file or directory; repeat for several)")
    parser.add_argument("--node", metavar="NAME", help="the node kdp plays (as kdp replay --node)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _fate_text(f):
    if f["verdict"] in ("forward", "reply"):
        text = f"{f['verdict']} {hostport(f['to'][0], f['to'][1]) if f['to'][1] is not None else f['to'][0]}"
        if f["service"]:
            text += f" ({f['service']})"
        via = f["tunnel"] or f["out_port"]
        return text + (f" via {via}" if via else "")
    text = f"{f['verdict']} {f['reason']}"
    decided = [v for v in (f["policy"] or {}).values() if v and v.startswith("deny")]
    return text + (f" ({decided[0]})" if decided else "")


def run(args):
    from kdp.diff import diff
    result = diff(args.capture, args.before, args.after, node=args.node)
    for n in result.notices:
        print(f"kdp: notice: {n}", file=sys.stderr)
    if args.json:
        json.dump(result.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    from rich.table import Table
    out = console()
    out.print(f"{result.packets} packets, {result.flows} flows: {len(result.changes)} change fate",
              highlight=False)
    if result.changes:
        table = Table(box=None, pad_edge=False)
        for col in ("first", "flow", "packets", "change", "before", "after"):
            table.add_column(col, justify="right" if col in ("first", "packets") else "left")
        for c in result.changes:
            proto, src, dst, sport, dport = c.key
            flow = f"{proto} {hostport(src, sport) if sport is not None else src} -> " \
                   f"{hostport(dst, dport) if dport is not None else dst}"
            table.add_row(str(c.first_index), flow, str(c.packets), c.change,
                          _fate_text(c.before), _fate_text(c.after))
        out.print(table)
        for title, counts in (("by change", result.by_change()), ("by Service", result.by_service()),
                              ("by policy", result.by_policy())):
            if counts:
                out.print(f"{title}: " + ", ".join(f"{k} {v}" for k, v in counts.items()), highlight=False)
    return 0
