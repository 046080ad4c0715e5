"""`kdp bench read`: packets/s of reading (and parsing) a capture, kdp beside its peers.

Workload: a deterministic classic pcap (microsecond magic, Ethernet) of 1,000,000
packets (100,000 with --quick): IPv4 TCP (70 %) and UDP frames of 64..1500 bytes
(uniform), ~10,000 flows, valid IPv4/TCP/UDP checksums, zero payload. It is generated
with numpy into a temporary directory (a few seconds) and read once before timing, so every reader
works from the page cache.

Peers, in the same run:
  kdp      CaptureReader.fill into a Batch(4096), then kdp._fast.parse.parse(batch)
           (the parser runs inside the timed loop when it is built)
  dpkt     dpkt.pcap.Reader + dpkt.ethernet.Ethernet(buf) (which decodes IP and TCP/UDP),
           on the first 200,000 packets (20,000 with --quick)
  scapy    scapy.utils.PcapReader (full dissection), on the first 20,000 packets (5,000)
  tcpdump  `tcpdump -r FILE -w /dev/null` (libpcap read + dump), whole file, wall time
           including process start-up
Each figure is the best of 3 runs (scapy: 1). The peers live in
kdp/benchmarks/peers/capture_readers.py; one that is missing or fails is left out of
the table, and why is printed under it (and given in --json as "peers_not_run").
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from kdp.benchmarks.synth import write_ipv4_pcap

DEFAULT_PACKETS = 1_000_000
QUICK_PACKETS = 100_000
FLOWS = 10_000
BATCH = 4096


def synth_capture(path, n_packets: int = DEFAULT_PACKETS, n_flows: int = FLOWS,
                  seed: int = 7) -> dict:
    """Write the benchmark capture to `path`; return a summary (packets, bytes, flows)."""
    rng = np.random.default_rng(seed)
    f_tcp = rng.random(n_flows) < 0.7
    f_src = (10 << 24) + rng.integers(0, 1 << 24, n_flows)
    f_dst = (10 << 24) + (96 << 16) + rng.integers(0, 1 << 16, n_flows)
    f_sport = rng.integers(1024, 65536, n_flows)
    f_dport = rng.choice(np.array([53, 80, 443, 8080, 9090, 5432]), n_flows)
    flow = rng.integers(0, n_flows, n_packets)
    size = rng.integers(64, 1501, n_packets)                     # frame bytes
    gaps = rng.integers(0, 20, n_packets)                        # microseconds
    usec = np.cumsum(gaps, dtype=np.int64)
    seq = (np.arange(n_packets, dtype=np.uint64) * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)
    total = write_ipv4_pcap(path, usec, size, np.where(f_tcp, 6, 17)[flow], f_src[flow],
                            f_dst[flow], f_sport[flow], f_dport[flow],
                            np.full(n_packets, 0x18, np.uint8), seq, np.zeros(n_packets, np.uint64))
    return {"packets": n_packets, "bytes": total, "flows": n_flows}


def _warm(path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def _parser():
    try:
        from kdp._fast.parse import parse
    except ImportError:
        return None
    return parse


def run_kdp(path, parse=True, batch_size: int = BATCH) -> int:
    from kdp._fast.packet import Batch
    from kdp.io.pcap import CaptureReader
    fn = _parser() if parse else None
    reader = CaptureReader(path)
    batch = Batch(batch_size)
    n = 0
    if fn is None:
        while True:
            k = reader.fill(batch)
            if not k:
                break
            n += k
    else:
        while True:
            k = reader.fill(batch)
            if not k:
                break
            fn(batch)
            n += k
    reader.close()
    return n


def _best(fn, repeat: int):
    best = None
    n = 0
    for _ in range(repeat):
        t = time.perf_counter()
        n = fn()
        dt = time.perf_counter() - t
        best = dt if best is None or dt < best else best
    return n, best


def measure(n_packets: int = DEFAULT_PACKETS, quick: bool = False, path=None,
            repeat: int = 3) -> dict:
    """Generate the capture (in a temporary directory removed afterwards, unless
    `path` is given), run every reader, return the figures."""
    if path is None:
        import tempfile
        with tempfile.TemporaryDirectory(prefix="kdp-bench-read-") as tmp:
            return measure(n_packets, quick, f"{tmp}/read.pcap", repeat)
    t = time.perf_counter()
    info = synth_capture(path, n_packets)
    gen_s = time.perf_counter() - t
    _warm(path)
    dpkt_n = min(n_packets, 20_000 if quick else 200_000)
    scapy_n = min(n_packets, 5_000 if quick else 20_000)
    rows = []
    parse_fn = _parser()
    n, dt = _best(lambda: run_kdp(path, parse=True), repeat)
    rows.append({"reader": "kdp" + (" read+parse" if parse_fn else " read (parser not built)"),
                 "packets": n, "seconds": dt})
    if parse_fn is not None:
        n, dt = _best(lambda: run_kdp(path, parse=False), repeat)
        rows.append({"reader": "kdp read only", "packets": n, "seconds": dt})
    from kdp.benchmarks.peers import attempt, capture_readers as peer
    not_run = []
    got = attempt("dpkt", lambda: _best(lambda: peer.run_dpkt(path, dpkt_n), repeat), not_run)
    if got:
        rows.append({"reader": "dpkt read+decode", "packets": got[0], "seconds": got[1]})
    got = attempt("scapy", lambda: _best(lambda: peer.run_scapy(path, scapy_n), 1), not_run)
    if got:
        rows.append({"reader": "scapy read+dissect", "packets": got[0], "seconds": got[1]})
    got = attempt("tcpdump", lambda: min(peer.run_tcpdump(path) for _ in range(repeat)), not_run)
    if got:
        rows.append({"reader": "tcpdump -r -w /dev/null", "packets": n_packets, "seconds": got})
    for r in rows:
        r["pps"] = r["packets"] / r["seconds"]
    base = next((r["pps"] for r in rows if r["reader"].startswith("dpkt")), None)
    for r in rows:
        r["x_dpkt"] = r["pps"] / base if base else None
    try:
        os.unlink(path)
    except OSError:
        pass
    return {"capture": {**info, "generate_seconds": gen_s, "path": str(path)},
            "batch": BATCH, "parse_in_loop": parse_fn is not None, "results": rows,
            "peers_not_run": not_run}


def main(args) -> int:
    quick = bool(getattr(args, "quick", False))
    res = measure(QUICK_PACKETS if quick else DEFAULT_PACKETS, quick=quick)
    if getattr(args, "json", False):
        print(json.dumps(res, indent=2))
        return 0
    from kdp.commands.common import console
    from rich.table import Table
    cap = res["capture"]
    table = Table(title=f"Reading a capture: {cap['packets']:,} packets, "
                        f"{cap['bytes'] / 1e6:,.0f} MB, {cap['flows']:,} flows (page cache)")
    table.add_column("reader")
    table.add_column("packets", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("M packets/s", justify="right")
    table.add_column("× dpkt", justify="right")
    for r in res["results"]:
        table.add_row(r["reader"], f"{r['packets']:,}", f"{r['seconds']:.3f}",
                      f"{r['pps'] / 1e6:.2f}", "" if r["x_dpkt"] is None else
                      f"{r['x_dpkt']:.0f}" if r["x_dpkt"] >= 10 else f"{r['x_dpkt']:.2f}")
    console().print(table)
    print(f"capture generated in {cap['generate_seconds']:.1f} s; kdp batch {res['batch']}; "
          f"dpkt and scapy run on the first packets of the same file (their rate is per packet).")
    from kdp.benchmarks.peers import print_not_run
    print_not_run(res["peers_not_run"])
    return 0
