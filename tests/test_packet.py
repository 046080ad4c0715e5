"""The batch: layout shared by C and numpy, headroom, frame limits."""
import numpy as np
import pytest

from kdp._fast import packet
from kdp.reasons import Reason, Stage, Verdict


def test_meta_dtype_matches_struct_size_and_offsets_are_increasing():
    dt = packet.META_DTYPE
    assert dt.itemsize == packet.META_SIZE
    offsets = [dt.fields[name][1] for name in dt.names]
    assert offsets == sorted(offsets)
    # every field lies inside the record and no two overlap
    ends = [dt.fields[n][1] + dt.fields[n][0].itemsize for n in dt.names]
    assert all(e <= s for e, s in zip(ends, offsets[1:]))
    assert ends[-1] <= dt.itemsize


def test_meta_fields_written_by_core_are_seen_by_numpy():
    b = packet.Batch(4)
    i = b.append(b"\x01\x02\x03", ts_ns=123456789, linktype=101, in_port=7, wire_len=60)
    rec = b.meta[i]
    assert rec["ts_ns"] == 123456789
    assert rec["len"] == 3 and rec["wire_len"] == 60
    assert rec["linktype"] == 101 and rec["in_port"] == 7
    assert rec["flow_id"] == packet.NO_ID_VALUE and rec["out_port"] == packet.NO_PORT_ID


def test_every_packet_has_headroom_and_is_cache_line_aligned():
    b = packet.Batch(8)
    for n in (1, 60, 1500, 9216):
        b.append(b"x" * n)
    offs = b.meta["off"][: len(b)]
    assert offs[0] >= packet.HEADROOM_BYTES
    assert all(o % 64 == 0 for o in offs)
    lens = b.meta["len"][: len(b)]
    for k in range(1, len(b)):
        assert offs[k] - (offs[k - 1] + lens[k - 1]) >= packet.HEADROOM_BYTES


def test_packet_bytes_round_trip():
    b = packet.Batch(2)
    b.append(b"hello")
    b.append(bytes(range(256)))
    assert b.packet(0) == b"hello" and b.packet(1) == bytes(range(256))


def test_oversize_frame_is_kept_truncated_and_dropped_with_reason():
    b = packet.Batch(2)
    i = b.append(b"y" * (packet.MAX_FRAME_BYTES + 10))
    rec = b.meta[i]
    assert rec["len"] == packet.MAX_FRAME_BYTES
    assert rec["wire_len"] == packet.MAX_FRAME_BYTES + 10
    assert (rec["verdict"], rec["stage"], rec["reason"]) == (Verdict.DROP, Stage.RX, Reason.OVERSIZE_FRAME)


def test_full_batch_refuses_more_packets():
    b = packet.Batch(1)
    b.append(b"a")
    with pytest.raises(OverflowError):
        b.append(b"b")
    b.clear()
    assert len(b) == 0


def test_capacity_is_validated():
    with pytest.raises(ValueError):
        packet.Batch(0)
