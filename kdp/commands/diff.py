"""Replay one capture under two configurations and list the flows whose fate changes.

  kdp diff capture.pcap --before snapshot/ --after snapshot-new/ --node node-1
  kdp diff capture.pcap --before base/ policy-old.yaml --after base/ policy-new.yaml --node node-1 --json

The safety check before rolling out a policy or Service change: every flow of real
traffic whose fate differs (allowed <-> denied or rejected, backend, masquerade, route or
tunnel, Service), with counts per Service and per policy decision. Policy analyzers
(netpol-analyzer, network-config-analyzer) compare the connections two manifest sets
allow; kdp diff runs the traffic through both data planes, Services, NAT and routing
included.
"""
import json
import sys

from kdp.commands.common import console


def add_arguments(parser):
    parser.add_argument("capture", metavar="IN", help="input capture (pcap or pcapng)")
    parser.add_argument("--before", metavar="PATH", nargs="+", required=True,
                        help="the configuration now: manifest files or directories")
    parser.add_argument("--after", metavar="PATH", nargs="+", required=True,
                        help="the configuration to compare: manifest files or directories")
    parser.add_argument("--node", metavar="NAME", help="the node kdp plays")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args):
    from kdp.diff import diff, print_diff
    report = diff(args.capture, args.before, args.after, node=args.node)
    for notice in report["notices"]:
        print(f"kdp: notice: {notice}", file=sys.stderr)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_diff(report, console())
    return 0
