"""Measure kdp beside its peers in one process, and print a table.

  kdp bench lpm        routing-table lookups/s (kdp batch and single, pytricia, py-radix)
  kdp bench conntrack  established lookups/s, new flows/s, bytes per flow (kdp, a dict,
                       Linux nf_conntrack)
  kdp bench pipeline   packets/s through the service path, compile and update times
  kdp bench read       capture read+parse packets/s (kdp, dpkt, scapy, tcpdump)
  kdp bench dns        cluster DNS answers/s through the pipeline, beside a dnspython responder
  kdp bench policy     NetworkPolicy: packets/s and new flows/s with 0 / 10 / 1,000 / 10,000
                       policies, compile time, table memory; nca's time on the same sets

The peers are optional: pytricia, py-radix, dpkt, scapy and dnspython come with `pip
install 'kdp[bench]'`, tcpdump is a program on PATH, the Linux nf_conntrack peer needs
root, `ip` and `nft`, and nca lives in .venv-nca (run-tests.sh makes it). A peer that is
missing or fails is left out of the table; the lines under it say why (and show a failed
peer's stderr); the exit status stays 0.

--plot FILE.png draws the results too (matplotlib: pip install 'kdp[plot]'): lookups/s
against table size with kdp's single lookups beside pytricia and py-radix (lpm), packets/s
against batch size (pipeline), kdp beside its peers (conntrack, read).
"""
import importlib

SUITES = ("lpm", "conntrack", "pipeline", "read", "dns", "policy")


def add_arguments(parser):
    parser.add_argument("suite", choices=SUITES, help="what to measure")
    parser.add_argument("--quick", action="store_true",
                        help="smaller tables and query sets (seconds, not minutes)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="also draw the results into a PNG (matplotlib, the extra `plot`): "
                             "lpm lookups/s against table size and beside its peers, pipeline "
                             "packets/s against batch size, conntrack and read beside their peers")


def run(args):
    if args.plot:
        # refused before minutes of measuring, not after
        from kdp.errors import KdpError
        plot = importlib.import_module("kdp.benchmarks.plot")
        if args.suite not in plot.PLOTS:
            raise KdpError(f"--plot draws {', '.join(plot.PLOTS)}; not {args.suite}")
        plot.pyplot()
    # imported here, when a benchmark runs: nothing else in kdp imports kdp.benchmarks
    module = importlib.import_module(f"kdp.benchmarks.{args.suite}")
    return module.main(args)
