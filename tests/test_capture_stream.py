"""Properties of the reader against plain references: a capture streamed through a pipe
(split at any byte) reads exactly as the same file read through mmap, damage included;
the direction a Linux cooked header records decides what is input, as a plain model of
the packet types says."""
import os
import struct
import threading

from hypothesis import given, settings, strategies as st

from kdp import Batch
from kdp.errors import CaptureError
from kdp.io import CaptureReader
from kdp.ports import NO_PORT
from kdp.reasons import Reason, Stage, Verdict

from kdptest import NG


def read_all(path):
    """(packets, warnings, error, interfaces) with the path taken out of the messages."""
    out, err = [], None
    reader = None
    try:
        reader = CaptureReader(path)
        b = Batch(3)
        for _ in range(10_000):
            if not reader.fill(b):
                break
            out += [(bytes(b.packet(i)), int(b.meta["ts_ns"][i]), int(b.meta["wire_len"][i]),
                     int(b.meta["in_port"][i]), int(b.meta["reason"][i])) for i in range(len(b))]
    except CaptureError as exc:
        err = str(exc).split(": ", 1)[1]
    warnings = [w.split(": ", 1)[1] for w in reader.warnings] if reader is not None else []
    names = [(i["section"], i["name"], i["linktype"]) for i in reader.interfaces] if reader is not None else []
    if reader is not None:
        reader.close()
    return out, warnings, err, names


def through_a_pipe(data, chunks):
    """Read `data` from a pipe its writer fills in pieces of the given sizes."""
    r, w = os.pipe()

    def writer():
        pos, k = 0, 0
        try:
            while pos < len(data):
                n = chunks[k % len(chunks)]
                os.write(w, data[pos:pos + n])
                pos += n
                k += 1
        except BrokenPipeError:
            pass
        finally:
            os.close(w)

    t = threading.Thread(target=writer)
    t.start()
    try:
        return read_all(f"/dev/fd/{r}")
    finally:
        os.close(r)
        t.join(timeout=30)


def capture(parts):
    """A pcapng of sections / named interfaces / packets from a hypothesis description."""
    ng = NG().shb()
    n_if = 0
    for kind, value in parts:
        if kind == "idb":
            ng.idb(linktype=value[0], name=value[1], tsresol=9)
            n_if += 1
        elif kind == "epb":
            ng.epb(value[0] % max(n_if, 1), value[1], value[2], flags=value[3])
        else:
            ng.shb(endian=value)
            n_if = 0
    return ng.out


PARTS = st.lists(st.one_of(
    st.tuples(st.just("idb"), st.tuples(st.sampled_from([1, 101, 113, 276]),
                                        st.one_of(st.none(), st.sampled_from(["eth0", "any", "lo", "tap1"])))),
    st.tuples(st.just("epb"), st.tuples(st.integers(0, 3), st.integers(0, 2**40), st.binary(max_size=120),
                                        st.one_of(st.none(), st.integers(0, 31)))),
    st.tuples(st.just("shb"), st.sampled_from(["<", ">"]))), max_size=25)


@settings(max_examples=150, deadline=None)
@given(parts=PARTS, cut=st.integers(0, 10_000), edit=st.one_of(st.none(), st.tuples(st.integers(0, 10_000),
                                                                                      st.integers(0, 255))),
       chunks=st.lists(st.integers(1, 700), min_size=1, max_size=6))
def test_a_streamed_capture_reads_exactly_as_the_mapped_file(tmp_path_factory, parts, cut, edit, chunks):
    data = bytearray(capture(parts))
    if edit is not None and data:
        data[edit[0] % len(data)] = edit[1]
    data = bytes(data[:cut] if cut < len(data) else data)
    path = tmp_path_factory.mktemp("s") / "c.pcapng"
    path.write_bytes(data)
    assert through_a_pipe(data, chunks) == read_all(path)


def model_reason(ptype, epb_flags):
    """The plain model: libpcap's packet types (and pcapng epb_flags) -> input or not."""
    if ptype in (4, 5) or (epb_flags is not None and epb_flags & 3 == 2):
        return Reason.CAPTURED_OUTGOING
    if ptype == 3 or (epb_flags is not None and (epb_flags >> 2) & 7 == 4):
        return Reason.OTHERHOST
    return None


@settings(max_examples=300, deadline=None)
@given(version=st.sampled_from([1, 2]), ptype=st.integers(0, 65535), ifindex=st.integers(0, 2**32 - 1),
       flags=st.one_of(st.none(), st.integers(0, 2**32 - 1)), mapped=st.booleans(), tail=st.binary(max_size=30))
def test_cooked_packet_type_decides_input_as_the_model_says(tmp_path_factory, version, ptype, ifindex, flags,
                                                           mapped, tail):
    if version == 1:
        hdr = struct.pack(">HHH8sH", ptype, 1, 6, b"\x02" * 6, 0x0800)
        lt = 113
    else:
        ptype &= 0xFF
        hdr = struct.pack(">HHIHBB8s", 0x0800, 0, ifindex, 1, ptype, 6, b"\x02" * 6)
        lt = 276
    path = tmp_path_factory.mktemp("c") / "c.pcapng"
    NG().shb().idb(linktype=lt, name="eth9").epb(0, 1, hdr + tail, flags=flags).save(path)
    r = CaptureReader(path, ifindex_ports={ifindex: 7} if mapped else {(ifindex + 1) % 2**32: 8})
    b = Batch(2)
    assert r.fill(b) == 1
    m = b.meta[0]
    want = model_reason(ptype, flags)
    if want is None:
        assert m["verdict"] == Verdict.PENDING
        expected_port = 7 if (version == 2 and mapped) else r.ports.get("eth9")
        assert m["in_port"] == expected_port
    else:
        assert (m["verdict"], m["stage"], m["reason"]) == (Verdict.DROP, Stage.RX, want)
        if want == Reason.CAPTURED_OUTGOING:
            assert m["in_port"] == NO_PORT
    assert (r.outgoing, r.otherhost) == (int(want == Reason.CAPTURED_OUTGOING), int(want == Reason.OTHERHOST))
