"""Run the data plane live on TAP devices.

  kdp attach --cluster snapshot/ --node node-1 --port default/client=kdp-client --port web-1=kdp-web

Each --port NAME=TAPDEV backs a data-plane port (NodeConfig `ports`, or a local pod's
port, named as `kdp show routes` names it) with a TAP device, created or opened. Move a
pod's device into its network namespace with its address and a default route through
169.254.1.1 (kdp answers ARP for it, as Calico's proxy ARP does): its traffic then runs
through the same pipeline as `kdp replay`. SIGINT/SIGTERM stop and print the summary;
SIGHUP, or a snapshot file that changed, reloads it (an invalid one is reported and
changes nothing). A `host` port carries the node's own traffic (kube-proxy's health
check server answers there). The kernel hands kdp 64 KiB TCP super-frames (TAP
offloads), which cross whole, or cut into segments before a tunnel.
--metrics HOST:PORT serves Prometheus metrics. Needs root (or CAP_NET_ADMIN), pyroute2
and prometheus-client: pip install 'kdp[attach]'.
"""
import sys

from kdp.commands.common import add_cluster_option, console


def add_arguments(parser):
    add_cluster_option(parser, required=True)
    parser.add_argument("--node", metavar="NAME", help="the node kdp plays")
    parser.add_argument("--port", action="append", required=True, metavar="NAME=TAPDEV",
                        help="a data-plane port and its TAP device (repeat for each)")
    parser.add_argument("--log", metavar="FILE", help="write the verdict log (JSON Lines) as replay does")
    parser.add_argument("--pcap-out", metavar="DIR",
                        help="record every frame each port received and sent in DIR/attach.pcapng "
                             "(one interface a port, the direction of each frame)")
    parser.add_argument("--metrics", metavar="HOST:PORT",
                        help="serve Prometheus metrics there (prometheus-client): packets and bytes per "
                             "port, packets per stage and reason, per Service port, conntrack, reloads")
    parser.add_argument("--batch-size", type=int, default=256, metavar="N",
                        help="frames per batch, at most (default 256; at least 8: a batch holds 64 KiB frames)")
    parser.add_argument("--no-offloads", action="store_true",
                        help="ask the kernel for complete frames only: no partial checksums, no 64 KiB TCP "
                             "super-frames (TSO), one frame per segment (slower; for comparison)")
    parser.add_argument("--single-thread", action="store_true",
                        help="write frames on the loop's thread (default: a batch of 16 frames or more is "
                             "written by a second, native thread while the loop reads and runs the next)")
    parser.add_argument("--no-io-uring", action="store_true",
                        help="write every frame with its own writev (default: a batch of 4 frames or more "
                             "goes to the kernel through an io_uring, one system call for the lot; where the "
                             "kernel refuses a ring, kdp says so and uses writev)")
    parser.add_argument("--busy-poll", type=int, default=50, metavar="US",   # kdp.attach.BUSY_POLL_US
                        help="when no port has a frame, keep asking without sleeping for this many "
                             "microseconds before sleeping (default 50: frames that follow closely are read "
                             "without a thread wake-up; costs that much CPU after each burst; 0: sleep at once)")
    parser.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long (default: run until stopped)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args):
    import json

    from kdp.attach import attach
    from kdp.errors import KdpError
    from kdp.summary import print_diagnostics, print_summary
    if not 8 <= args.batch_size <= 65536:
        raise KdpError(f"--batch-size must be 8..65536 (a batch holds a 64 KiB frame), got {args.batch_size}")
    if not 0 <= args.busy_poll <= 1_000_000:
        raise KdpError(f"--busy-poll must be 0..1000000 microseconds, got {args.busy_poll}")
    try:
        import pyroute2  # noqa: F401
    except ImportError:
        raise KdpError("kdp attach needs pyroute2: pip install 'kdp[attach]'") from None

    def ready():
        print("kdp attach: ready: " + ", ".join(args.port), file=sys.stderr, flush=True)
    loop, result = attach(args.cluster, args.node, args.port, batch_size=args.batch_size,
                          log=args.log, duration=args.duration, ready=ready, metrics=args.metrics,
                          pcap_out=args.pcap_out, offloads=not args.no_offloads,
                          writer_thread=not args.single_thread, busy_poll_us=args.busy_poll,
                          io_uring=not args.no_io_uring)
    if args.json:
        out = result.to_json()
        out["ports"] = {p.name: {"device": p.device, "rx": p.rx, "tx": p.tx, "rx_bytes": p.rx_bytes,
                                 "tx_bytes": p.tx_bytes, "tx_errors": p.tx_errors} for p in loop.ports}
        out["arp_answered"] = loop.arp_answered
        out["offloads"] = loop.offload_counts()
        out["batches_written_aside"] = loop.written_aside
        out["unresolved_dropped"] = loop.unresolved_dropped
        out["reloads"] = [r for _t, r in loop.reloads]
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
        print_diagnostics(result)
    else:
        print_summary(result, console=console(), title=f"kdp attach: {result.input_path}")
        print("ports: " + ", ".join(f"{p.name}={p.device} rx {p.rx} tx {p.tx}" for p in loop.ports)
              + f"; ARP answered {loop.arp_answered}; dropped waiting for a pod's MAC {loop.unresolved_dropped}")
        print("offloads: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in loop.offload_counts().items()))
    return 0
