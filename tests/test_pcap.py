"""Classic pcap: reading both byte orders and precisions, damage, link types; writing.

Captures are crafted here byte by byte with struct (an independent writer), with scapy's
wrpcap, and checked against scapy, tshark and tcpdump.
"""
import os
import struct
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from kdp import Batch
from kdp._fast.packet import LinkType, NO_PORT_ID
from kdp.errors import CaptureError, KdpError
from kdp.io import CaptureReader, CaptureWriter, open_capture, read_packets, write_packets
from kdp.io.capture import SYNTH_DST_MAC, SYNTH_SRC_MAC
from kdp.ports import PortTable
from kdp.reasons import Reason, Stage, Verdict

USEC_MAGIC = 0xA1B2C3D4
NSEC_MAGIC = 0xA1B23C4D
MAX_CLASSIC_TS_NS = (1 << 32) * 10**9 - 1


def classic(records, linktype=1, endian="<", nsec=False, snaplen=65535, version=(2, 4)):
    """A classic pcap file: records are (sec, frac, data, orig_len)."""
    out = struct.pack(endian + "IHHiIII", NSEC_MAGIC if nsec else USEC_MAGIC,
                      version[0], version[1], 0, 0, snaplen, linktype)
    for sec, frac, data, orig in records:
        out += struct.pack(endian + "IIII", sec, frac, len(data), orig) + data
    return out


def write(tmp_path, data, name="f.pcap"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def tshark_ok(path):
    """tshark reads the file: exit 0 and nothing on stderr but the root notice."""
    r = subprocess.run(["tshark", "-r", str(path)], capture_output=True, text=True)
    err = [ln for ln in r.stderr.splitlines() if ln.strip() and "Running as user" not in ln]
    return r.returncode, err


needs_tshark = pytest.mark.usefixtures("tshark")   # fails when tshark is missing
needs_tcpdump = pytest.mark.usefixtures("tcpdump")   # fails when tcpdump is missing


# ------------------------------------------------------------------ reading

@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("nsec", [False, True])
def test_reads_both_byte_orders_and_precisions_exactly(tmp_path, endian, nsec):
    recs = [(1_600_000_000 + i, (123_456_789 if nsec else 123_456) + i, bytes([i]) * (60 + i), 60 + i)
            for i in range(5)]
    path = write(tmp_path, classic(recs, endian=endian, nsec=nsec))
    pkts = read_packets(path)
    assert len(pkts) == 5
    for (sec, frac, data, orig), p in zip(recs, pkts):
        assert p.data == data
        assert p.wire_len == orig
        assert p.ts_ns == sec * 10**9 + (frac if nsec else frac * 1000)
        assert p.linktype == 1
    r = open_capture(path)
    assert r.format == "pcap"
    assert r.byte_order == ("big" if endian == ">" else "little")


@settings(max_examples=40, deadline=None)
@given(endian=st.sampled_from(["<", ">"]), nsec=st.booleans(),
       recs=st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 999_999),
                               st.binary(max_size=2000), st.integers(0, 2**32 - 1)), max_size=30))
def test_crafted_files_in_either_byte_order_read_exactly(tmp_path_factory, endian, nsec, recs):
    path = tmp_path_factory.mktemp("bo") / "c.pcap"
    path.write_bytes(classic(recs, endian=endian, nsec=nsec))
    got = read_packets(path)
    assert [(g.ts_ns, g.data, g.wire_len) for g in got] == [
        (sec * 10**9 + (frac if nsec else frac * 1000), data, max(orig, len(data)))
        for sec, frac, data, orig in recs]


def test_linktype_word_upper_bits_carry_fcs_info_and_are_ignored(tmp_path):
    # bits 28-31: FCS length (4 -> 32-bit FCS), bit 26: F flag
    word = (4 << 28) | (1 << 26) | LinkType.LT_ETHERNET
    path = write(tmp_path, classic([(1, 0, b"\xaa" * 64, 64)], linktype=word))
    (p,) = read_packets(path)
    assert p.linktype == LinkType.LT_ETHERNET
    assert p.verdict == Verdict.PENDING


def test_caplen_larger_than_snaplen_is_read_whole(tmp_path):
    data = bytes(range(256)) * 2
    path = write(tmp_path, classic([(1, 0, data, len(data))], snaplen=100))
    (p,) = read_packets(path)
    assert p.data == data


def test_orig_len_smaller_than_caplen_gives_wire_len_equal_to_caplen(tmp_path):
    path = write(tmp_path, classic([(1, 0, b"x" * 100, 40), (2, 0, b"y" * 60, 1500)]))
    p0, p1 = read_packets(path)
    assert p0.wire_len == 100
    assert p1.wire_len == 1500 and len(p1.data) == 60


@pytest.mark.parametrize("linktype", [0, 1, 101, 108, 113, 228, 229, 276])
def test_supported_link_types_are_delivered_pending(tmp_path, linktype):
    path = write(tmp_path, classic([(1, 0, b"\x45" + b"\0" * 59, 60)], linktype=linktype))
    r = open_capture(path)
    b = Batch(8)
    assert r.fill(b) == 1
    assert b.meta["verdict"][0] == Verdict.PENDING
    assert b.meta["linktype"][0] == linktype
    assert r.unsupported == 0


@pytest.mark.parametrize("linktype", [127, 195, 227, 147, 0xFFFF])
def test_unsupported_link_type_is_delivered_but_dropped_at_rx_and_counted(tmp_path, linktype):
    path = write(tmp_path, classic([(1, 0, b"\1" * 30, 30)] * 3, linktype=linktype))
    r = open_capture(path)
    b = Batch(8)
    assert r.fill(b) == 3
    m = b.meta[:3]
    assert (m["verdict"] == Verdict.DROP).all()
    assert (m["stage"] == Stage.RX).all()
    assert (m["reason"] == Reason.UNSUPPORTED_LINKTYPE).all()
    assert r.unsupported == 3 and r.packets == 3
    assert r.fill(b) == 0
    assert r.warnings == []


def test_fill_respects_capacity_and_returns_zero_at_the_end(tmp_path):
    recs = [(i, 0, i.to_bytes(4, "big") * 20, 80) for i in range(10)]
    path = write(tmp_path, classic(recs))
    r = open_capture(path)
    b = Batch(4)
    counts = []
    seen = []
    while True:
        n = r.fill(b)
        if not n:
            break
        counts.append(n)
        seen += [b.packet(i) for i in range(n)]
    assert counts == [4, 4, 2]
    assert seen == [d for _, _, d, _ in recs]
    assert r.fill(b) == 0 and len(b) == 0
    assert r.packets == 10 and r.position == r.size == path.stat().st_size


def test_file_cut_inside_a_record_body_keeps_complete_packets_and_warns(tmp_path):
    data = classic([(1, 0, b"a" * 100, 100), (2, 0, b"b" * 100, 100), (3, 0, b"c" * 100, 100)])
    cut = len(data) - 30
    path = write(tmp_path, data[:cut])
    warnings = []
    pkts = read_packets(path, warnings=warnings)
    assert [p.data for p in pkts] == [b"a" * 100, b"b" * 100]
    assert len(warnings) == 1
    assert str(path) in warnings[0] and f"byte offset {24 + 2 * 116}" in warnings[0]


def test_file_cut_inside_a_record_header_keeps_complete_packets_and_warns(tmp_path):
    data = classic([(1, 0, b"a" * 50, 50)]) + b"\x01\x02\x03"
    path = write(tmp_path, data)
    warnings = []
    pkts = read_packets(path, warnings=warnings)
    assert len(pkts) == 1 and len(warnings) == 1 and "byte offset 90" in warnings[0]


def test_bad_magic_is_a_capture_error_naming_the_file(tmp_path):
    path = write(tmp_path, b"GIF89a" + b"\0" * 100)
    with pytest.raises(CaptureError, match=r"not a pcap or pcapng file.*byte offset 0") as e:
        CaptureReader(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("size", [0, 3, 10, 23])
def test_file_shorter_than_a_header_is_a_capture_error(tmp_path, size):
    path = write(tmp_path, classic([])[:size])
    with pytest.raises(CaptureError, match=str(path)):
        CaptureReader(path)


def test_unknown_pcap_version_is_a_capture_error(tmp_path):
    path = write(tmp_path, classic([(1, 0, b"x", 1)], version=(3, 0)))
    with pytest.raises(CaptureError, match="version 3"):
        CaptureReader(path)


def test_missing_file_and_directory_are_capture_errors(tmp_path):
    with pytest.raises(CaptureError, match="cannot open"):
        CaptureReader(tmp_path / "nope.pcap")
    with pytest.raises(CaptureError):
        CaptureReader(tmp_path)


def test_absurd_record_length_raises_after_every_earlier_packet_was_delivered(tmp_path):
    good = classic([(1, 0, b"g" * 64, 64), (2, 0, b"h" * 64, 64)])
    bad = struct.pack("<IIII", 3, 0, 0x7FFFFFF0, 0x7FFFFFF0) + b"z" * 64
    path = write(tmp_path, good + bad)
    r = CaptureReader(path)
    b = Batch(16)
    assert r.fill(b) == 2
    assert [b.packet(0), b.packet(1)] == [b"g" * 64, b"h" * 64]
    with pytest.raises(CaptureError) as e:
        r.fill(b)
    assert str(path) in str(e.value) and f"byte offset {len(good)}" in str(e.value)
    assert r.fill(b) == 0


def test_absurd_length_at_the_first_record_raises_at_once(tmp_path):
    path = write(tmp_path, classic([]) + struct.pack("<IIII", 1, 0, 0xFFFFFFFF, 1) + b"x" * 32)
    with pytest.raises(CaptureError, match="byte offset 24"):
        read_packets(path)


def test_fixed_ingress_port_is_given_to_every_packet(tmp_path):
    path = write(tmp_path, classic([(1, 0, b"x" * 60, 60)] * 3))
    ports = PortTable(["pod-a"])
    pkts = read_packets(path, ports=ports, ingress="pod-a")
    assert {p.in_port for p in pkts} == {ports.get("pod-a")} == {2}
    assert {p.in_port for p in read_packets(path, ingress=0)} == {0}


def test_unknown_ingress_name_is_an_error_naming_the_known_ports_and_creates_none(tmp_path):
    path = write(tmp_path, classic([(1, 0, b"x" * 60, 60)]))
    ports = PortTable(["pod-a"])
    with pytest.raises(KdpError, match=r"--ingress pod-b: no such port \(ports: uplink, host, pod-a"):
        read_packets(path, ports=ports, ingress="pod-b")
    assert "pod-b" not in ports and len(ports) == 3


def test_without_ingress_classic_packets_have_no_port(tmp_path):
    path = write(tmp_path, classic([(1, 0, b"x" * 60, 60)]))
    assert read_packets(path)[0].in_port == NO_PORT_ID


def test_reading_crosses_mmap_windows_on_a_capture_larger_than_one_window(tmp_path):
    """~100 MB capture: the 64 MiB window is remapped; every packet matches dpkt's."""
    import dpkt
    from kdp.benchmarks.read import synth_capture
    path = tmp_path / "big.pcap"
    info = synth_capture(path, n_packets=130_000, n_flows=500, seed=3)
    assert info["bytes"] > 64 * 2**20 + 2**20
    r = CaptureReader(path)
    b = Batch(1024)
    with open(path, "rb") as f:
        ref = iter(dpkt.pcap.Reader(f))
        n = 0
        while r.fill(b):
            lens = b.meta["len"][: len(b)]
            ts = b.meta["ts_ns"][: len(b)]
            for i in range(len(b)):
                t, data = next(ref)
                assert lens[i] == len(data)
                if n % 97 == 0 or i == len(b) - 1:
                    assert b.packet(i) == data
                    assert ts[i] == round(t * 1e6) * 1000
                n += 1
        assert next(ref, None) is None
    assert n == info["packets"] == r.packets


def test_scapy_wrpcap_file_is_read_exactly(tmp_path):
    import scapy.all as scapy
    pkts = [scapy.Ether() / scapy.IP(dst=f"10.0.0.{i}") / scapy.UDP(dport=i + 1) / (b"p" * i)
            for i in range(20)]
    for i, p in enumerate(pkts):
        p.time = 1_700_000_000 + i / 8
    path = tmp_path / "scapy.pcap"
    scapy.wrpcap(str(path), pkts)
    got = read_packets(path)
    assert [g.data for g in got] == [bytes(p) for p in pkts]
    assert [g.ts_ns for g in got] == [(1_700_000_000 * 8 + i) * 125_000_000 for i in range(20)]


# ------------------------------------------------------------------ writing

packets_st = st.lists(
    st.tuples(st.integers(0, MAX_CLASSIC_TS_NS), st.binary(min_size=0, max_size=1600)),
    min_size=0, max_size=40)


@settings(max_examples=40, deadline=None)
@given(packets_st)
def test_write_then_read_round_trips_bytes_and_timestamps(tmp_path_factory, packets):
    path = tmp_path_factory.mktemp("rt") / "out.pcap"
    assert write_packets(path, packets) == len(packets)
    got = read_packets(path)
    assert [(g.ts_ns, g.data, g.wire_len) for g in got] == [(t, d, len(d)) for t, d in packets]
    assert path.read_bytes()[:4] == struct.pack("=I", NSEC_MAGIC)


@settings(max_examples=15, deadline=None)
@given(packets_st)
def test_written_pcap_is_read_identically_by_scapy(tmp_path_factory, packets):
    path = tmp_path_factory.mktemp("sc") / "out.pcap"
    write_packets(path, packets)
    from scapy.utils import RawPcapReader
    with RawPcapReader(str(path)) as r:
        assert r.nano
        ref = list(r)
    assert [data for data, _ in ref] == [d for _, d in packets]
    assert [m.sec * 10**9 + m.usec for _, m in ref] == [t for t, _ in packets]     # usec: ns here
    assert [m.wirelen for _, m in ref] == [len(d) for _, d in packets]


def _forward_batch(frames, linktype=LinkType.LT_ETHERNET):
    b = Batch(64)
    for i, f in enumerate(frames):
        b.append(f, ts_ns=1_000_000_000 * (i + 1) + i, linktype=linktype)
    b.meta["verdict"][: len(b)] = Verdict.FORWARD
    return b


def _scapy_frames():
    import scapy.all as scapy
    return scapy, [bytes(scapy.Ether(src="00:11:22:33:44:55", dst="66:77:88:99:aa:bb")
                         / scapy.IP(src="10.0.0.1", dst=f"10.0.1.{i}")
                         / scapy.TCP(sport=1000 + i, dport=80) / (b"d" * i)) for i in range(1, 9)]


@needs_tshark
@needs_tcpdump
@pytest.mark.parametrize("name", ["out.pcap", "out.pcapng"])
def test_written_file_opens_in_tshark_and_tcpdump_without_warnings(tmp_path, name):
    _, frames = _scapy_frames()
    path = tmp_path / name
    ports = PortTable()
    b = _forward_batch(frames)
    b.meta["out_port"][: len(b)] = [ports.id_of(f"pod-{i % 3}") for i in range(len(b))]
    with CaptureWriter(path, ports=ports) as w:
        assert w.write(b) == len(frames)
    rc, err = tshark_ok(path)
    assert rc == 0 and err == []
    count = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.number"],
                           capture_output=True, text=True).stdout.split()
    assert len(count) == len(frames)
    r = subprocess.run(["tcpdump", "-nn", "-r", str(path)], capture_output=True, text=True)
    assert r.returncode == 0
    assert len(r.stdout.splitlines()) == len(frames)
    assert [ln for ln in r.stderr.splitlines() if "reading from file" not in ln] == []


def test_writer_writes_only_forwarded_packets_unless_asked_for_all(tmp_path):
    _, frames = _scapy_frames()
    b = _forward_batch(frames)
    b.meta["verdict"][1::2] = Verdict.DROP
    with CaptureWriter(tmp_path / "fwd.pcap") as w:
        assert w.write(b) == 4
    with CaptureWriter(tmp_path / "all.pcap", all_packets=True) as w:
        assert w.write(b) == len(frames)
    assert [p.data for p in read_packets(tmp_path / "fwd.pcap")] == frames[0::2]
    assert [p.data for p in read_packets(tmp_path / "all.pcap")] == frames


def test_writer_writes_the_current_bytes_of_a_rewritten_packet(tmp_path):
    b = _forward_batch([b"A" * 100])
    off = int(b.meta["off"][0])
    # a stage prepends 10 bytes into the headroom and moves wire_len with len
    b.buffer[off - 10:off] = np.frombuffer(b"H" * 10, dtype=np.uint8)
    b.meta["off"][0] = off - 10
    b.meta["len"][0] = 110
    b.meta["wire_len"][0] = 110
    with CaptureWriter(tmp_path / "o.pcap") as w:
        w.write(b)
    (p,) = read_packets(tmp_path / "o.pcap")
    assert p.data == b"H" * 10 + b"A" * 100 and p.wire_len == 110


def _parsed(frames, linktype):
    from kdp._fast.parse import parse
    b = _forward_batch(frames, linktype)
    b.meta["verdict"][: len(b)] = Verdict.PENDING        # the parser works on pending packets
    parse(b)
    assert set(b.meta["ip_ver"][: len(b)]) <= {4, 6}
    b.meta["verdict"][: len(b)] = Verdict.FORWARD
    return b


def test_ethernet_packets_written_to_raw_ip_start_at_their_ip_header(tmp_path):
    scapy, frames = _scapy_frames()
    b = _parsed(frames, LinkType.LT_ETHERNET)
    with CaptureWriter(tmp_path / "raw.pcap", linktype=LinkType.LT_RAW) as w:
        assert w.write(b) == len(frames)
    got = read_packets(tmp_path / "raw.pcap")
    assert [g.data for g in got] == [bytes(scapy.Ether(f)[scapy.IP]) for f in frames]
    assert all(g.linktype == LinkType.LT_RAW for g in got)


def test_raw_ip_packets_written_to_ethernet_get_a_synthetic_header(tmp_path):
    import scapy.all as scapy
    ips = [bytes(scapy.IP(src="10.0.0.1", dst="10.0.0.2") / scapy.UDP() / b"four"),
           bytes(scapy.IPv6(src="fd00::1", dst="fd00::2") / scapy.TCP())]
    b = _parsed(ips, LinkType.LT_RAW)
    with CaptureWriter(tmp_path / "eth.pcap", linktype=LinkType.LT_ETHERNET) as w:
        assert w.write(b) == 2
    got = [scapy.Ether(p.data) for p in read_packets(tmp_path / "eth.pcap")]
    assert [g.type for g in got] == [0x0800, 0x86DD]
    assert {g.src for g in got} == {":".join(f"{x:02x}" for x in SYNTH_SRC_MAC)}
    assert {g.dst for g in got} == {":".join(f"{x:02x}" for x in SYNTH_DST_MAC)}
    assert [bytes(g.payload) for g in got] == ips


def test_converted_packet_wire_len_follows_the_length_change(tmp_path):
    scapy, frames = _scapy_frames()
    b = Batch(4)
    b.append(frames[0], ts_ns=5, wire_len=len(frames[0]) + 1000)   # a cut capture
    from kdp._fast.parse import parse
    parse(b)
    b.meta["verdict"][0] = Verdict.FORWARD
    with CaptureWriter(tmp_path / "raw.pcap", linktype=LinkType.LT_RAW) as w:
        w.write(b)
    (p,) = read_packets(tmp_path / "raw.pcap")
    assert len(p.data) == len(frames[0]) - 14
    assert p.wire_len == len(frames[0]) + 1000 - 14


def test_packets_that_cannot_be_converted_are_skipped_and_counted(tmp_path):
    b = _forward_batch([b"\x00" * 60, b"\x01" * 60], linktype=113)   # not parsed: ip_ver 0
    with CaptureWriter(tmp_path / "x.pcap", linktype=LinkType.LT_ETHERNET) as w:
        assert w.write(b) == 0
        assert w.unconvertible == 2
    assert read_packets(tmp_path / "x.pcap") == []


def test_writer_rejects_bad_arguments_and_unwritable_paths(tmp_path):
    with pytest.raises(ValueError):
        CaptureWriter(tmp_path / "a.pcap", format="erf")
    with pytest.raises(CaptureError, match="cannot create"):
        CaptureWriter(tmp_path / "no" / "such" / "dir.pcap")


def test_writer_reports_a_full_disk_as_capture_error():
    b = _forward_batch([b"x" * 1500] * 64)
    w = CaptureWriter("/dev/full", format="pcap")
    with pytest.raises(CaptureError, match="/dev/full"):
        for _ in range(20):
            w.write(b)
        w.close()


_RLIMIT_SCRIPT = r"""
import resource, struct, sys
from kdp import Batch
from kdp.errors import CaptureError
from kdp.io import CaptureReader
vm = [int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize")][0]
limit = vm + 200 * 2**20        # room for the 64 MiB window, nothing like 4 GiB
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
outcomes = []
for path in sys.argv[1:]:
    try:
        r = CaptureReader(path)
        b = Batch(4)
        while r.fill(b):
            pass
        outcomes.append("ok")
    except CaptureError:
        outcomes.append("error")
print(" ".join(outcomes))
"""


def test_absurd_lengths_allocate_nothing_under_an_address_space_limit(tmp_path):
    """Lengths from the file are capped before use: with the address space limited to
    200 MiB above what Python already uses, files claiming 4 GiB records still read."""
    hdr = classic([])
    ng_head = (struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)
               + struct.pack("<IIHHI", 1, 20, 1, 0, 0) + struct.pack("<I", 20))
    files = {
        "rec.pcap": hdr + struct.pack("<IIII", 1, 0, 0xFFFFFFFF, 0xFFFFFFFF) + b"x" * 64,
        "rec_be.pcap": classic([], endian=">") + struct.pack(">IIII", 1, 0, 0xFFFFFF00, 1),
        "block.pcapng": ng_head + struct.pack("<II", 6, 0xFFFFFFFC) + b"\0" * 64,
        "shb.pcapng": struct.pack("<IIIHHq", 0x0A0D0D0A, 0xFFFFFFFC, 0x1A2B3C4D, 1, 0, -1),
        "caplen.pcapng": ng_head + struct.pack("<IIIIIII", 6, 40, 0, 0, 0, 0xFFFFFFF0, 0xFFFFFFF0)
                         + b"\0" * 8 + struct.pack("<I", 40),
        "option.pcapng": ng_head + struct.pack("<IIHHIHH", 1, 28, 1, 0, 0, 2, 0xFFFF)
                         + b"\0" * 4 + struct.pack("<I", 28),
    }
    paths = []
    for name, data in files.items():
        paths.append(str(write(tmp_path, data, name)))
    res = subprocess.run([__import__("sys").executable, "-c", _RLIMIT_SCRIPT, *paths],
                         capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["error", "error", "error", "error", "error", "ok"]


@pytest.mark.parametrize("linktype", [LinkType.LT_ETHERNET, LinkType.LT_RAW])
def test_plan_and_put_at_write_the_bytes_write_does_in_any_order(tmp_path, linktype):
    # kdp/shards.py: batches placed in order (plan), put from several threads in any
    # order (put_at, pwrite): the file is the one write makes, conversions, drops and
    # unconvertible packets alike
    _, frames = _scapy_frames()
    batches = []
    for k in range(3):
        b = _parsed(frames, LinkType.LT_ETHERNET)
        b.meta["verdict"][k::3] = Verdict.DROP
        batches.append(b)
    with CaptureWriter(tmp_path / "w.pcap", linktype=linktype) as w:
        for b in batches:
            w.write(b)
        expected = (w.packets, w.unconvertible)
    with CaptureWriter(tmp_path / "p.pcap", linktype=linktype) as p:
        places = [p.plan(b) for b in batches]
        for b, (offset, nbytes) in reversed(list(zip(batches, places))):
            p.put_at(b, offset, nbytes, np.empty(nbytes, dtype=np.uint8))
        assert (p.packets, p.unconvertible) == expected and p.packets > 0
        with pytest.raises(ValueError, match="write after plan"):
            p.write(batches[0])
        offset, nbytes = places[0]
        with pytest.raises(ValueError, match="not the ones plan"):
            p.put_at(batches[0], offset, nbytes + 1, np.empty(nbytes + 1, dtype=np.uint8))
        with pytest.raises(ValueError, match="smaller than"):
            p.put_at(batches[0], offset, nbytes, np.empty(nbytes - 1, dtype=np.uint8))
    assert (tmp_path / "p.pcap").read_bytes() == (tmp_path / "w.pcap").read_bytes()


def test_plan_refuses_pcapng(tmp_path):
    with CaptureWriter(tmp_path / "o.pcapng") as w:
        with pytest.raises(ValueError, match="classic pcap only"):
            w.plan(_forward_batch([b"A" * 60]))
