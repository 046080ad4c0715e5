"""Measure kdp beside its peers in one process, and print a table.

  kdp bench lpm        routing-table lookups/s (kdp batch and single, pytricia, py-radix)
  kdp bench conntrack  established lookups/s, new flows/s, bytes per flow
  kdp bench pipeline   packets/s through the service path, compile and update times
  kdp bench read       capture read+parse packets/s (kdp, dpkt, scapy, tcpdump)
  kdp bench dns        cluster DNS answers/s through the pipeline, beside a dnspython responder
"""
import importlib

SUITES = ("lpm", "conntrack", "pipeline", "read", "dns")


def add_arguments(parser):
    parser.add_argument("suite", choices=SUITES, help="what to measure")
    parser.add_argument("--quick", action="store_true",
                        help="smaller tables and query sets (seconds, not minutes)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def run(args):
    module = importlib.import_module(f"kdp.benchmarks.{args.suite}")
    return module.main(args)
