"""TapIO's native writer thread (kdp attach's large batches): frames handed over with
submit() reach their port byte for byte, as send() writes them, counted the same; one
batch at a time, misuse is a clear error, and stopping (or dropping the TapIO) ends the
thread. A SOCK_SEQPACKET socket pair stands in for each TAP device (one message a frame,
behind its 12-byte vnet header)."""
import gc
import os
import socket

import pytest

from kdp._fast.packet import Batch
from kdp._fast.tapio import TapIO
from tapsockets import close_pairs as _close, drain as _drain, forwarded_batch as _batch, numbered_frames, socket_ports

HDR = bytes(12)


def _ports(n):
    return socket_ports(n, 20)


def _frames(n):
    return numbered_frames(n, 20)


def test_frames_handed_to_the_writer_thread_arrive_as_send_writes_them():
    io, pairs = _ports(2)
    frames = _frames(100)
    ports = [20 + (i % 3 == 0) for i in range(100)]
    try:
        io.start_writer()
        b = _batch(frames, ports)
        assert io.prepare(b) == 100
        io.submit(b)
        assert io.finish() == 100
        aside = [_drain(theirs) for _, theirs in pairs]
        assert io.send(_batch(frames, ports)) == 100          # the same frames, written inline
        inline = [_drain(theirs) for _, theirs in pairs]
        assert aside == inline
        assert aside[1] == [HDR + f for f, p in zip(frames, ports) if p == 21]
        assert aside[0] == [HDR + f for f, p in zip(frames, ports) if p == 20]
        n1 = sum(p == 21 for p in ports)
        assert io.counters(21)[2:] == (2 * n1, 2 * sum(len(f) for f, p in zip(frames, ports) if p == 21), 0)
        assert io.handoffs == 1
        io.stop_writer()
        assert not io.writer_running
    finally:
        io.stop_writer()
        _close(pairs)


def test_the_loop_reads_while_the_writer_thread_writes():
    # the hand-off's point: submit returns at once, read_into runs beside the writes
    io, pairs = _ports(2)
    try:
        io.start_writer()
        out = _batch(_frames(200), [21] * 200)
        io.prepare(out)
        for f in _frames(30):
            pairs[0][1].send(HDR + f)
        io.submit(out)
        got = Batch(64)
        assert io.read_into(got, 1) == 30
        assert io.finish() == 200
        assert len(_drain(pairs[1][1])) == 200
    finally:
        io.stop_writer()
        _close(pairs)


def test_misuse_is_a_clear_error():
    io, pairs = _ports(1)
    try:
        b = _batch(_frames(3), [20] * 3)
        io.prepare(b)
        with pytest.raises(RuntimeError, match="writer thread is not running"):
            io.submit(b)
        io.start_writer()
        io.start_writer()                   # a second start changes nothing
        io.submit(b)
        with pytest.raises(RuntimeError, match="still being written"):
            io.submit(b)
        with pytest.raises(RuntimeError, match="still being written"):
            io.prepare(b)
        assert io.finish() == 3
        assert io.finish() == 0             # nothing in hand
        io.stop_writer()
        io.stop_writer()                    # stopping twice is harmless
    finally:
        _close(pairs)


def _threads():
    # every thread of this process, the core's pthreads included (threading lists only its own)
    return len(os.listdir("/proc/self/task"))


def test_stopping_or_dropping_the_tapio_ends_its_thread():
    io, pairs = _ports(1)
    try:
        before = _threads()
        io.start_writer()
        assert _threads() == before + 1
        io.stop_writer()
        assert _threads() == before
        io.start_writer()
        b = _batch(_frames(50), [20] * 50)
        io.prepare(b)
        io.submit(b)
        del io, b
        gc.collect()
        assert _threads() == before
        assert len(_drain(pairs[0][1])) == 50       # the batch in hand was written first
    finally:
        _close(pairs)


def test_a_failed_write_is_counted_on_the_writer_thread_too():
    io, pairs = _ports(1)
    try:
        io.start_writer()
        pairs[0][1].close()                 # the device's other end is gone
        b = _batch(_frames(5), [20] * 5)
        io.prepare(b)
        io.submit(b)
        assert io.finish() == 0
        assert io.counters(20)[4] == 5
    finally:
        io.stop_writer()
        pairs[0][0].close()


class _Port:
    """A data-plane port on a socket pair instead of a TAP device (kdp.attach.TapPort's
    face: fd, port id, send)."""

    def __init__(self, name, port_id, fd):
        self.name, self.device, self.port_id, self.fd = name, name, port_id, fd
        self.io = self.recorder = self.mac = None

    def send(self, frame):
        self.io.write_frame(self.port_id, frame)


def test_attach_writes_on_the_loop_when_the_writer_thread_and_the_ring_are_refused(tmp_path, monkeypatch, capsys):
    """The kernel refusing a thread or an io_uring costs the overlap or the batching, not
    the run: one clear line each, then every batch is written by the loop, with writev."""
    import kdp.attach
    from kdp.benchmarks.attach import _cluster
    from kdp.dataplane import Dataplane

    class NoThread(TapIO):
        # what a kernel (or a seccomp filter) that refuses both says
        def start_writer(self):
            raise OSError(11, "cannot start the writer thread: Resource temporarily unavailable")

        def use_io_uring(self, entries=256):
            raise OSError(1, "io_uring refused (Operation not permitted)")

    monkeypatch.setattr(kdp.attach, "TapIO", NoThread)
    snap = tmp_path / "cluster.yaml"
    _cluster(snap)
    dp = Dataplane.from_snapshot([str(snap)], "node-1")
    pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _ in range(2)]
    try:
        for ours, theirs in pairs:
            ours.setblocking(False)
            theirs.setblocking(False)
        ports = [_Port(name, dp.ports.id_of(name), ours.fileno())
                 for name, (ours, _theirs) in zip(("bench/client", "bench/server"), pairs)]
        loop = kdp.attach.Attached(dp, ports, [str(snap)], "node-1")
        # a burst larger than OVERLAP_MIN: it would go to the writer thread
        for i in range(40):
            pairs[0][1].send(HDR + b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x09" + b"\x88\xb5" + bytes(50))
        loop.run(duration=0.3)
        err = capsys.readouterr().err
        assert "kdp attach: [Errno 11] cannot start the writer thread" in err
        assert "kdp attach: [Errno 1] io_uring refused (Operation not permitted): a writev a frame" in err
        assert loop.written_aside == 0
        assert loop.io.counters(ports[0].port_id)[0] == 40        # read and run all the same
    finally:
        _close(pairs)
