"""Peers of `kdp bench read`: other programs and libraries reading the same capture.

    dpkt     dpkt.pcap.Reader + dpkt.ethernet.Ethernet(buf) (decodes IP and TCP/UDP)
    scapy    scapy.utils.PcapReader with the Ether/IP layers registered (full dissection)
    tcpdump  `tcpdump -r FILE -w /dev/null` (libpcap's read + savefile dump), a process

Each returns what it read; PeerUnavailable when its package or program is missing,
PeerFailed (with tcpdump's stderr) when tcpdump exits non-zero.
"""
import shutil
import subprocess
import time

from kdp.benchmarks.peers import PeerFailed, PeerUnavailable, missing_package


def run_dpkt(path, limit: int) -> int:
    """Packets read and decoded (at most `limit`)."""
    try:
        import dpkt
    except ImportError:
        raise missing_package("dpkt") from None
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
    """Packets read and dissected (at most `limit`)."""
    try:
        import scapy.layers.inet  # noqa: F401  (registers Ether/IP/TCP/UDP for dissection)
        import scapy.layers.l2  # noqa: F401
        from scapy.utils import PcapReader
    except ImportError:
        raise missing_package("scapy") from None
    n = 0
    with PcapReader(str(path)) as r:
        for pkt in r:
            _ = pkt.payload
            n += 1
            if n >= limit:
                break
    return n


def run_tcpdump(path) -> float:
    """Wall seconds of `tcpdump -r path -w /dev/null`, process start-up included."""
    exe = shutil.which("tcpdump")
    if exe is None:
        raise PeerUnavailable("the program 'tcpdump' is not on PATH")
    t = time.perf_counter()
    run = subprocess.run([exe, "-r", str(path), "-w", "/dev/null"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t
    if run.returncode != 0:
        raise PeerFailed(f"`tcpdump -r {path} -w /dev/null` exited with status {run.returncode}",
                         run.stderr)
    return seconds
