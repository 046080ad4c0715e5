"""Measure kdp beside its peers in one process, and print a table.

  kdp bench lpm        routing-table lookups/s (kdp batch and single, pytricia, py-radix)
  kdp bench conntrack  established lookups/s, new flows/s, bytes per flow (kdp, a dict,
                       Linux nf_conntrack)
  kdp bench pipeline   packets/s through the service path, compile and update times
  kdp bench read       capture read+parse packets/s (kdp, dpkt, scapy, tcpdump)
  kdp bench dns        cluster DNS answers/s through the pipeline, beside a dnspython responder
  kdp bench replay     kdp replay from the command line (output, log, start-up) beside
                       tcpdump -r IN -w OUT on the same capture
  kdp bench attach     kdp attach on TAP devices against the kernel (router namespace,
                       nft DNAT): iperf3 TCP and 64-byte UDP, TCP connections/s
  kdp bench policy     NetworkPolicy: packets/s and new flows/s with 0 / 10 / 1,000 / 10,000
                       policies, compile time, table memory; nca's time on the same sets

The peers are optional: pytricia, py-radix, dpkt, scapy and dnspython come with `pip
install 'kdp[bench]'`, tcpdump is a program on PATH, the Linux nf_conntrack peer needs
root, `ip` and `nft`, and nca lives in .venv-nca (run-tests.sh makes it). A peer that is
missing or fails is left out of the table; the lines under it say why (and show a failed
peer's stderr); the exit status stays 0.

Every suite ends with the machine's load while it ran (/proc/loadavg before and after,
the CPU time the run took against the wall time: kdp/benchmarks/load.py), and calls the
run "disturbed" when other work took the core (CPU/wall < 0.9); with --json the same
figures are the report's "load" object.

--plot FILE.png draws the results with matplotlib (kdp/benchmarks/plot.py: a panel per
list of rates, kdp and its peers side by side); the suite then runs once in its JSON
form, printed only with --json.
"""
import contextlib
import importlib
import io
import json
import sys

SUITES = ("lpm", "conntrack", "pipeline", "read", "dns", "policy", "replay", "attach")


def add_arguments(parser):
    parser.add_argument("suite", choices=SUITES, help="what to measure")
    parser.add_argument("--quick", action="store_true",
                        help="smaller tables and query sets (seconds, not minutes)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw the results into this PNG (matplotlib)")


def run(args):
    # imported here, when a benchmark runs: nothing else in kdp imports kdp.benchmarks
    load = importlib.import_module("kdp.benchmarks.load")
    module = importlib.import_module(f"kdp.benchmarks.{args.suite}")
    plot = None
    if args.plot:
        from kdp.errors import KdpError
        if not args.plot.endswith(".png"):
            raise KdpError(f"--plot writes a PNG: give a path ending in .png, not {args.plot}")
        plot = importlib.import_module("kdp.benchmarks.plot").plot
    if not args.json and plot is None:
        watch = load.Watch()
        status = module.main(args)
        print(load.describe(watch.stop()))
        return status
    # the suite prints its report as one JSON document: add the load to it (and draw it)
    asked_json, args.json = args.json, True
    text = io.StringIO()
    watch = load.Watch()
    with contextlib.redirect_stdout(text):
        status = module.main(args)
    measured = watch.stop()
    try:
        report = json.loads(text.getvalue())
    except ValueError:          # not one document: pass it on as it is, the load apart
        sys.stdout.write(text.getvalue())
        print(load.describe(measured), file=sys.stderr)
        return status
    report["load"] = measured
    if asked_json:
        print(json.dumps(report, indent=2))
    else:
        print(load.describe(measured))
    if plot is not None:
        n = plot(report, args.plot, f"kdp bench {args.suite}" + (" --quick" if args.quick else ""))
        print(f"{args.plot}: {n} panels", file=sys.stderr)
    return status
