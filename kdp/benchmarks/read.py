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
Each figure is the best of 3 runs (scapy: 1).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import numpy as np

DEFAULT_PACKETS = 1_000_000
QUICK_PACKETS = 100_000
FLOWS = 10_000
BATCH = 4096
T0 = 1_700_000_000          # first timestamp, seconds


def _be(cols: np.ndarray, start: int, values, width: int) -> None:
    """Write `values` big-endian into byte columns [start, start+width) of cols."""
    v = np.asarray(values, dtype=np.uint64)
    for k in range(width):
        cols[:, start + k] = (v >> np.uint64(8 * (width - 1 - k))) & np.uint64(0xFF)


def _le32(cols: np.ndarray, start: int, values) -> None:
    v = np.asarray(values, dtype=np.uint64)
    for k in range(4):
        cols[:, start + k] = (v >> np.uint64(8 * k)) & np.uint64(0xFF)


def _fold(s: np.ndarray) -> np.ndarray:
    s = s.astype(np.uint64)
    for _ in range(3):
        s = (s & np.uint64(0xFFFF)) + (s >> np.uint64(16))
    return s


def _words(cols: np.ndarray, start: int, n: int) -> np.ndarray:
    """Sum of n/2 big-endian 16-bit words of byte columns [start, start+n)."""
    c = cols[:, start:start + n].astype(np.uint64)
    return (c[:, 0::2] << np.uint64(8)).sum(axis=1) + c[:, 1::2].sum(axis=1)


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
    rec = 16 + size
    offs = 24 + np.concatenate(([0], np.cumsum(rec[:-1], dtype=np.int64)))
    total = int(24 + rec.sum())
    buf = np.zeros(total, dtype=np.uint8)
    buf[:24] = np.frombuffer(np.array([0xA1B2C3D4, 0x00040002, 0, 0, 65535, 1],
                                      dtype="<u4").tobytes(), dtype=np.uint8)
    W = 16 + 14 + 20 + 20
    col = np.arange(W, dtype=np.int64)
    step = 131072
    for a in range(0, n_packets, step):
        b = min(a + step, n_packets)
        k = b - a
        fl = flow[a:b]
        sz = size[a:b]
        tcp = f_tcp[fl]
        h = np.zeros((k, W), dtype=np.uint8)
        _le32(h, 0, T0 + usec[a:b] // 1_000_000)
        _le32(h, 4, usec[a:b] % 1_000_000)
        _le32(h, 8, sz)
        _le32(h, 12, sz)
        e = 16                                                    # Ethernet
        h[:, e:e + 6] = (0x02, 0, 0, 0, 0, 0x02)
        h[:, e + 6:e + 12] = (0x02, 0, 0, 0, 0, 0x01)
        h[:, e + 12] = 0x08
        i = e + 14                                                # IPv4
        h[:, i] = 0x45
        _be(h, i + 2, sz - 14, 2)
        _be(h, i + 4, np.arange(a, b) & 0xFFFF, 2)
        h[:, i + 6] = 0x40
        h[:, i + 8] = 64
        h[:, i + 9] = np.where(tcp, 6, 17)
        _be(h, i + 12, f_src[fl], 4)
        _be(h, i + 16, f_dst[fl], 4)
        _be(h, i + 10, ~_fold(_words(h, i, 20)) & np.uint64(0xFFFF), 2)
        t = i + 20                                                # TCP / UDP
        _be(h, t, f_sport[fl], 2)
        _be(h, t + 2, f_dport[fl], 2)
        l4len = sz - 34
        seq = (np.arange(a, b, dtype=np.uint64) * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)
        th = h[tcp]
        _be(th, t + 4, seq[tcp], 4)
        th[:, t + 12] = 0x50
        th[:, t + 13] = 0x18
        _be(th, t + 14, np.full(th.shape[0], 65535), 2)
        pseudo = _words(th, i + 12, 8) + np.uint64(6) + l4len[tcp].astype(np.uint64)
        _be(th, t + 16, ~_fold(pseudo + _words(th, t, 20)) & np.uint64(0xFFFF), 2)
        h[tcp] = th
        uh = h[~tcp]
        _be(uh, t + 4, l4len[~tcp], 2)                            # UDP checksum 0: none
        h[~tcp] = uh
        buf[(offs[a:b, None] + col).ravel()] = h.ravel()
    with open(path, "wb") as f:
        buf.tofile(f)
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
    from kdp._fast.pcap import CaptureReader
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


def run_dpkt(path, limit: int) -> int:
    import dpkt
    n = 0
    with open(path, "rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            _ = (ip.src, ip.dst, ip.data.sport, ip.data.dport)
            n += 1
            if n >= limit:
                break
    return n


def run_scapy(path, limit: int) -> int:
    import scapy.layers.inet  # noqa: F401  (registers Ether/IP/TCP/UDP for dissection)
    import scapy.layers.l2  # noqa: F401
    from scapy.utils import PcapReader
    n = 0
    with PcapReader(str(path)) as r:
        for pkt in r:
            _ = pkt.payload
            n += 1
            if n >= limit:
                break
    return n


def run_tcpdump(path) -> float | None:
    exe = shutil.which("tcpdump")
    if exe is None:
        return None
    t = time.perf_counter()
    subprocess.run([exe, "-r", str(path), "-w", "/dev/null"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


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
    try:
        n, dt = _best(lambda: run_dpkt(path, dpkt_n), repeat)
        rows.append({"reader": "dpkt read+decode", "packets": n, "seconds": dt})
    except ImportError:
        pass
    try:
        n, dt = _best(lambda: run_scapy(path, scapy_n), 1)
        rows.append({"reader": "scapy read+dissect", "packets": n, "seconds": dt})
    except ImportError:
        pass
    tcp_times = [run_tcpdump(path) for _ in range(repeat)]
    if tcp_times[0] is not None:
        rows.append({"reader": "tcpdump -r -w /dev/null", "packets": n_packets,
                     "seconds": min(tcp_times)})
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
            "batch": BATCH, "parse_in_loop": parse_fn is not None, "results": rows}


def main(args) -> int:
    quick = bool(getattr(args, "quick", False))
    res = measure(QUICK_PACKETS if quick else DEFAULT_PACKETS, quick=quick)
    if getattr(args, "json", False):
        print(json.dumps(res, indent=2))
        return 0
    from rich.console import Console
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
    Console().print(table)
    print(f"capture generated in {cap['generate_seconds']:.1f} s; kdp batch {res['batch']}; "
          f"dpkt and scapy run on the first packets of the same file (their rate is per packet).")
    return 0
