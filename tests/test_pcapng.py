"""pcapng: blocks, interfaces -> ports, sections and byte orders, timestamp resolution,
damage; the pcapng writer; scapy's PcapNgWriter as an independent writer."""
import shutil
import struct
import subprocess
from fractions import Fraction

import pytest
from hypothesis import given, settings, strategies as st

from kdp import Batch
from kdp._fast.packet import LinkType, NO_PORT_ID
from kdp.errors import CaptureError
from kdp.io import CaptureReader, CaptureWriter, open_capture, read_packets
from kdp.ports import PortTable
from kdp.reasons import Reason, Stage, Verdict

from kdptest import EPB, IDB, NG, PB, SHB, SPB

def frame(i, n=64):
    return bytes([i & 0xFF]) * n


# ------------------------------------------------------------------ reading

@pytest.mark.parametrize("endian", ["<", ">"])
def test_reads_epb_spb_and_obsolete_packet_block_in_both_byte_orders(tmp_path, endian):
    f = (NG(endian).shb().idb(linktype=1, snaplen=0, tsresol=9)
         .epb(0, 1_600_000_000_123_456_789, frame(1), orig=100)
         .spb(frame(2, 80))
         .pb(0, 1_600_000_001_000_000_000, frame(3, 70))
         .save(tmp_path / "a.pcapng"))
    pkts = read_packets(f)
    assert [p.data for p in pkts] == [frame(1), frame(2, 80), frame(3, 70)]
    assert [p.wire_len for p in pkts] == [100, 80, 70]
    # the SPB has no timestamp of its own: it shares the previous packet's
    assert [p.ts_ns for p in pkts] == [1_600_000_000_123_456_789] * 2 + [1_600_000_001_000_000_000]
    r = open_capture(f)
    assert r.format == "pcapng" and r.byte_order == ("big" if endian == ">" else "little")


def test_spb_capture_length_is_limited_by_snaplen(tmp_path):
    f = NG().shb().idb(snaplen=50).spb(frame(7, 80), orig=80).save(tmp_path / "s.pcapng")
    (p,) = read_packets(f)
    assert p.data == frame(7, 50) and p.wire_len == 80


def test_interface_names_become_ingress_ports(tmp_path):
    f = (NG().shb().idb(name="eth0").idb(name="pod-a", linktype=101).idb()
         .epb(0, 1, frame(0)).epb(1, 2, b"\x45" + b"\0" * 39).epb(2, 3, frame(2))
         .save(tmp_path / "n.pcapng"))
    ports = PortTable()
    r = open_capture(f, ports=ports)
    b = Batch(8)
    assert r.fill(b) == 3
    assert list(b.meta["in_port"][:3]) == [ports.get("eth0"), ports.get("pod-a"), NO_PORT_ID]
    assert list(b.meta["linktype"][:3]) == [1, 101, 1]
    assert [(i["name"], i["port"], i["linktype"]) for i in r.interfaces] == [
        ("eth0", 2, 1), ("pod-a", 3, 101), (None, None, 1)]


def test_fixed_ingress_overrides_interface_names(tmp_path):
    f = NG().shb().idb(name="eth0").epb(0, 1, frame(0)).save(tmp_path / "n.pcapng")
    assert read_packets(f, ingress="host")[0].in_port == 1


def test_a_new_section_resets_interfaces_and_may_switch_byte_order(tmp_path):
    ng = (NG("<").shb().idb(linktype=1, name="a").idb(linktype=101, name="b")
          .epb(1, 10, b"\x45" + b"\0" * 19)
          .shb(endian=">").idb(linktype=113, name="c", tsresol=3)
          .epb(0, 5, frame(9, 30))
          .epb(1, 6, frame(8, 30)))          # interface 1 of the old section: gone
    f = ng.save(tmp_path / "sec.pcapng")
    r = open_capture(f)
    b = Batch(8)
    assert r.fill(b) == 2
    assert list(b.meta["linktype"][:2]) == [101, 113]
    assert list(b.meta["ts_ns"][:2]) == [10_000, 5_000_000]
    assert r.byte_order == "big"
    assert r.skipped == 1
    assert [(i["section"], i["name"]) for i in r.interfaces] == [(0, "a"), (0, "b"), (1, "c")]
    assert r.fill(b) == 0
    assert any("1 packets referred to an interface" in w for w in r.warnings)


def test_unknown_and_informational_blocks_are_skipped(tmp_path):
    ng = NG().shb().idb()
    ng.block(4, b"\0" * 8)                   # name resolution
    ng.block(5, b"\0" * 12)                  # interface statistics
    ng.block(0x0BAD, b"\0\0\0\0custom")      # custom
    ng.block(0x00012345, b"whatever")        # unknown
    ng.epb(0, 1, frame(5))
    r = open_capture(ng.save(tmp_path / "u.pcapng"))
    b = Batch(4)
    assert r.fill(b) == 1 and b.packet(0) == frame(5)
    assert r.blocks_skipped == 4


def _expected_ns(ticks, resol, offset=0):
    unit = Fraction(1, 2 ** (resol & 0x7F)) if resol & 0x80 else Fraction(1, 10 ** resol)
    return int(ticks * unit * 10**9) + offset * 10**9     # int(): floor for >= 0


@settings(max_examples=60, deadline=None)
@given(resol=st.one_of(st.integers(0, 19), st.integers(0x80, 0x80 + 40)),
       ticks=st.integers(0, 2**64 - 1),
       offset=st.integers(0, 2**31))
def test_timestamps_honour_if_tsresol_and_if_tsoffset(tmp_path_factory, resol, ticks, offset):
    exp = _expected_ns(ticks, resol, offset) % 2**64
    f = (NG().shb().idb(tsresol=resol, tsoffset=offset).epb(0, ticks, frame(1))
         .save(tmp_path_factory.mktemp("ts") / "t.pcapng"))
    got = read_packets(f)[0].ts_ns
    if resol & 0x80 and (resol & 0x7F) > 34:
        assert abs(got - exp) <= 1          # below 2^-34 s the fraction is rounded once
    else:
        assert got == exp


def test_negative_tsoffset_moves_timestamps_back(tmp_path):
    f = NG().shb().idb(tsresol=0, tsoffset=-100).epb(0, 1000, frame(1)).save(tmp_path / "o.pcapng")
    assert read_packets(f)[0].ts_ns == 900 * 10**9


def test_dozens_of_interfaces_with_different_link_types_and_resolutions(tmp_path):
    ng = NG().shb()
    lts = [1, 101, 113, 276, 0, 108, 228, 229, 147, 195]
    for i in range(40):
        ng.idb(linktype=lts[i % len(lts)], name=f"if{i}", tsresol=(i % 10) if i % 3 else 0x80 | i)
    for i in range(40):
        ng.epb(39 - i, 1 << 20, frame(i))
    ports = PortTable()
    r = open_capture(ng.save(tmp_path / "many.pcapng"), ports=ports)
    b = Batch(64)
    assert r.fill(b) == 40
    m = b.meta[:40]
    for k in range(40):
        i = 39 - k
        resol = (i % 10) if i % 3 else 0x80 | i
        assert m["linktype"][k] == lts[i % len(lts)]
        assert m["in_port"][k] == ports.get(f"if{i}")
        assert abs(int(m["ts_ns"][k]) - _expected_ns(1 << 20, resol)) <= 1
        unsupported = lts[i % len(lts)] in (147, 195)
        assert (m["reason"][k] == Reason.UNSUPPORTED_LINKTYPE) == unsupported
        assert (m["stage"][k] == Stage.RX) or not unsupported
    assert r.unsupported == 8 and len(r.interfaces) == 40


# ------------------------------------------------------------------ damage

def _good_prefix():
    return NG().shb().idb().epb(0, 1, frame(1)).epb(0, 2, frame(2))


@pytest.mark.parametrize("damage, message", [
    (lambda ng: ng.block(EPB, b"\0" * 20, total=30), "block length 30"),
    (lambda ng: ng.block(EPB, b"\0" * 20, total=8), "block length 8"),
    (lambda ng: ng.block(EPB, b"\0" * 20, total=0x7FFFFFFC), "block length 2147483644"),
    (lambda ng: ng.block(EPB, b"\0" * 20, trailer=99), "trailing length says 99"),
    (lambda ng: ng.epb(0, 3, frame(3), caplen=5000), "5000 captured bytes"),
    (lambda ng: ng.block(EPB, b"\0" * 8), "too short"),
    (lambda ng: ng.shb(version=(2, 0)), "version 2.0"),
    (lambda ng: ng.shb(bom=0x11223344), "byte-order mark"),
])
def test_damaged_block_raises_after_every_earlier_packet_was_delivered(tmp_path, damage, message):
    ng = _good_prefix()
    where = len(ng.out)
    damage(ng)
    ng.epb(0, 9, frame(9))
    path = ng.save(tmp_path / "bad.pcapng")
    r = CaptureReader(path)
    b = Batch(16)
    assert r.fill(b) == 2 and [b.packet(0), b.packet(1)] == [frame(1), frame(2)]
    with pytest.raises(CaptureError, match=message) as e:
        r.fill(b)
    assert str(path) in str(e.value)
    off = where + 8 if "byte-order" in message else where + 12 if "version" in message else where
    assert f"byte offset {off}" in str(e.value)
    assert r.fill(b) == 0


@pytest.mark.parametrize("cut", [1, 4, 11, 12, 40, 79])
def test_file_cut_inside_a_block_keeps_complete_packets_and_warns(tmp_path, cut):
    ng = _good_prefix()
    keep = len(ng.out)
    ng.epb(0, 3, frame(3, 60))          # 92 bytes
    path = tmp_path / "cut.pcapng"
    path.write_bytes(ng.out[:keep + cut])
    warnings = []
    pkts = read_packets(path, warnings=warnings)
    assert [p.data for p in pkts] == [frame(1), frame(2)]
    assert len(warnings) == 1 and f"byte offset {keep}" in warnings[0] and str(path) in warnings[0]


def test_first_section_header_damaged_is_an_error_at_open(tmp_path):
    data = NG().shb().out
    (tmp_path / "a.pcapng").write_bytes(data[:20])
    with pytest.raises(CaptureError, match="ends inside"):
        CaptureReader(tmp_path / "a.pcapng")
    (tmp_path / "b.pcapng").write_bytes(NG().shb(bom=0xDEADBEEF).out)
    with pytest.raises(CaptureError, match="byte-order mark"):
        CaptureReader(tmp_path / "b.pcapng")


def test_packet_for_an_undescribed_interface_is_skipped_and_counted(tmp_path):
    f = NG().shb().idb().epb(0, 1, frame(1)).epb(7, 2, frame(2)).epb(0, 3, frame(3)).save(
        tmp_path / "x.pcapng")
    warnings = []
    assert [p.data for p in read_packets(f, warnings=warnings)] == [frame(1), frame(3)]
    assert len(warnings) == 1


def _mutants():
    base = (NG().shb().idb(name="eth0", tsresol=9).epb(0, 5, frame(1, 100))
            .shb(endian=">").idb(linktype=101).spb(frame(2, 40)).pb(0, 9, frame(3, 20)).out)
    return base, st.lists(st.tuples(st.integers(0, len(base) - 1), st.integers(0, 255)),
                          min_size=1, max_size=6)


_BASE, _EDITS = _mutants()


@settings(max_examples=150, deadline=None)
@given(edits=_EDITS, cut=st.integers(0, len(_BASE)))
def test_mutated_pcapng_never_crashes(tmp_path_factory, edits, cut):
    data = bytearray(_BASE)
    for pos, val in edits:
        data[pos] = val
    path = tmp_path_factory.mktemp("fz") / "m.pcapng"
    path.write_bytes(bytes(data[:cut]))
    try:
        r = CaptureReader(path)
        b = Batch(4)
        n = 0
        for _ in range(100):
            k = r.fill(b)
            if not k:
                break
            n += k
        else:
            pytest.fail("reader did not finish")
        assert n == r.packets <= 3
    except CaptureError as e:
        assert str(path) in str(e)


# ------------------------------------------------------------------ scapy as the writer

@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(st.integers(1_000_000_000, 2_000_000_000), st.integers(0, 999_999),
                          st.binary(min_size=14, max_size=300), st.sampled_from(["eth0", "eth1", None])),
                min_size=1, max_size=20))
def test_scapy_pcapng_writer_output_is_read_exactly(tmp_path_factory, items):
    import scapy.all as scapy
    from scapy.utils import PcapNgWriter
    path = tmp_path_factory.mktemp("sc") / "s.pcapng"
    w = PcapNgWriter(str(path))
    for sec, usec, data, ifname in items:
        p = scapy.Ether(data)
        p.time = Fraction(sec * 10**6 + usec, 10**6)
        p.sniffed_on = ifname
        w.write(p)
    w.close()
    ports = PortTable()
    got = read_packets(path, ports=ports)
    assert [g.data for g in got] == [bytes(scapy.Ether(d)) for _, _, d, _ in items]
    # scapy rounds times through a float: compare with the ticks scapy's own reader finds,
    # and with the intended time to within a microsecond
    from scapy.utils import RawPcapNgReader
    with RawPcapNgReader(str(path)) as rr:
        ticks = [(m.tshigh << 32 | m.tslow, m.tsresol) for _, m in rr]
    assert [g.ts_ns for g in got] == [t * 10**9 // res for t, res in ticks]
    assert all(abs(g.ts_ns - (s * 10**6 + u) * 1000) <= 1000 for g, (s, u, _, _) in zip(got, items))
    for g, (_, _, _, ifname) in zip(got, items):
        assert g.in_port == (ports.get(ifname) if ifname else NO_PORT_ID)


# ------------------------------------------------------------------ writing

@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.binary(max_size=1600),
                          st.sampled_from(["uplink", "host", "pod-a", "pod-b", None])),
                max_size=40))
def test_pcapng_write_read_round_trips_bytes_timestamps_and_ports(tmp_path_factory, items):
    path = tmp_path_factory.mktemp("ng") / "o.pcapng"
    ports = PortTable(["pod-a", "pod-b"])
    b = Batch(64)
    for ts, data, port in items:
        i = b.append(data, ts_ns=ts)
        b.meta["out_port"][i] = NO_PORT_ID if port is None else ports.id_of(port)
    b.meta["verdict"][: len(b)] = Verdict.FORWARD
    with CaptureWriter(path, ports=ports) as w:
        assert w.write(b) == len(items)
    got = read_packets(path, ports=ports)
    assert [(g.ts_ns, g.data, g.wire_len) for g in got] == [(t, d, len(d)) for t, d, _ in items]
    # out_port -> IDB named by the PortTable -> the same id when read back
    names = [g.in_port for g in got]
    want = [ports.id_of(p) if p else ports.get("none") for _, _, p in items]
    assert names == want


@pytest.mark.usefixtures("tshark")
def test_pcapng_interfaces_are_named_by_the_port_table_in_tshark(tmp_path):
    ports = PortTable(["pod-a"])
    b = Batch(8)
    for i, port in enumerate(["pod-a", "uplink", "pod-a", "host"]):
        b.append(b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + b"\x45" + b"\0" * 45, ts_ns=i)
        b.meta["out_port"][i] = ports.id_of(port)
    b.meta["verdict"][:4] = Verdict.FORWARD
    path = tmp_path / "named.pcapng"
    with CaptureWriter(path, ports=ports) as w:
        w.write(b)
    out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.interface_name",
                          "-e", "frame.interface_id"], capture_output=True, text=True)
    assert out.returncode == 0
    rows = [ln.split("\t") for ln in out.stdout.splitlines()]
    assert rows == [["pod-a", "0"], ["uplink", "1"], ["pod-a", "0"], ["host", "2"]]


def test_more_interfaces_than_the_limit_is_a_capture_error_not_a_huge_table(tmp_path):
    ng = NG().shb()
    idb = NG().idb().out
    ng.raw(idb * 65537)
    path = ng.save(tmp_path / "ifs.pcapng")
    r = CaptureReader(path)
    with pytest.raises(CaptureError, match="more than 65536 interfaces"):
        r.fill(Batch(4))
