"""Real captures written by other tools (../shared/captures, see its README.md): every one
reads without a crash or hang, agrees with tshark packet by packet, and the damaged ones
give their complete packets plus a clear warning."""
import subprocess
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from kdp import Batch
from kdp.errors import CaptureError
from kdp.io import CaptureReader, CaptureWriter, read_packets
from kdp.reasons import Reason, Stage, Verdict
from kdptest import SHARED_CAPTURES, shared_capture_files

CAPTURES = SHARED_CAPTURES
FILES = shared_capture_files()
# files the README says end mid-record
CUT_SHORT = {"bad_rsn_parsing_overrides_ssid.pcap", "truncated_dns_2.pcap"}
PARSED_LINKTYPES = {0, 1, 101, 108, 113, 228, 229, 276}

needs_tshark = pytest.mark.usefixtures("tshark")   # fails when tshark is missing


def test_the_shared_captures_are_there():
    # CI clones the project with shared/ beside it; without the files every test below
    # would pass vacuously
    assert len(FILES) >= 40, f"expected the real captures in {CAPTURES}"


def tshark_frames(path):
    """(epoch ns, frame.len, frame.cap_len) of every frame tshark reads."""
    out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.time_epoch",
                          "-e", "frame.len", "-e", "frame.cap_len"],
                         capture_output=True, text=True, timeout=120).stdout
    rows = []
    for line in out.splitlines():
        t, length, cap = line.split("\t")
        rows.append((int(Decimal(t) * 10**9), int(length), int(cap)))
    return rows


@needs_tshark
@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_real_capture_agrees_with_tshark_packet_by_packet(path):
    warnings = []
    pkts = read_packets(path, warnings=warnings)
    ref = tshark_frames(path)
    assert len(pkts) == len(ref)
    assert [(p.ts_ns, p.wire_len, len(p.data)) for p in pkts] == ref
    if path.name in CUT_SHORT:
        assert len(warnings) == 1 and "ends inside a packet record" in warnings[0]
        assert path.name in warnings[0]
    else:
        assert warnings == []


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_link_types_kdp_cannot_parse_are_counted_drops_not_errors(path):
    r = CaptureReader(path)
    b = Batch(256)
    total = unsupported = 0
    while r.fill(b):
        m = b.meta[: len(b)]
        bad = m["reason"] == Reason.UNSUPPORTED_LINKTYPE
        assert (m["verdict"][bad] == Verdict.DROP).all() and (m["stage"][bad] == Stage.RX).all()
        assert (bad == ~(m["linktype"][:, None] == list(PARSED_LINKTYPES)).any(axis=1)).all()
        unsupported += int(bad.sum())
        total += len(b)
    assert r.unsupported == unsupported and r.packets == total
    assert r.position == r.size or path.name in CUT_SHORT


def test_big_endian_pcapng_is_read():
    path = CAPTURES / "pfcp.pcap"
    r = CaptureReader(path)
    b = Batch(512)
    assert r.fill(b) == 200
    assert r.format == "pcapng" and r.byte_order == "big"
    assert r.interfaces[0]["linktype"] == 101


def _one_linktype(path):
    pkts = read_packets(path)
    return bool(pkts) and len({p.linktype for p in pkts}) == 1


# the writer writes one link type per file: captures mixing several are not rewritten
REWRITABLE = [p for p in FILES if _one_linktype(p)]


def test_most_real_captures_can_be_rewritten():
    assert len(REWRITABLE) >= len(FILES) - 5


@needs_tshark
@pytest.mark.parametrize("path", REWRITABLE, ids=[p.name for p in REWRITABLE])
def test_real_capture_rewritten_by_kdp_reads_the_same_in_tshark(tmp_path, path):
    pkts = read_packets(path)
    out = tmp_path / (path.stem + ".pcap")
    r = CaptureReader(path)
    b = Batch(256)
    with CaptureWriter(out, linktype=pkts[0].linktype, all_packets=True) as w:
        while r.fill(b):
            w.write(b)
    assert [(p.ts_ns, p.data, p.wire_len) for p in read_packets(out)] == \
        [(p.ts_ns, p.data, p.wire_len) for p in pkts]
    res = subprocess.run(["tshark", "-r", str(out), "-T", "fields", "-e", "frame.number"],
                         capture_output=True, text=True)
    assert res.returncode == 0
    assert [ln for ln in res.stderr.splitlines() if "Running as user" not in ln] == []
    assert len(res.stdout.split()) == len(pkts)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_or_truncated_real_captures_never_crash_or_hang(tmp_path_factory, data):
    src = data.draw(st.sampled_from(FILES), label="file")
    raw = bytearray(src.read_bytes())
    # damage the headers: the first 200 bytes hold the file header and the first records
    for _ in range(data.draw(st.integers(0, 6), label="edits")):
        pos = data.draw(st.integers(0, min(len(raw), 200) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    path = tmp_path_factory.mktemp("fz") / src.name
    path.write_bytes(bytes(raw))
    try:
        r = CaptureReader(path)
        b = Batch(256)
        n = 0
        while True:
            k = r.fill(b)
            if not k:
                break
            n += k
            assert n <= len(raw) // 12 + 1       # every packet consumes at least a header
        assert r.packets == n
    except CaptureError as e:
        assert str(path) in str(e)
