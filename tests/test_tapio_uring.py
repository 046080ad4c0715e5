"""TapIO's batched writes through io_uring (kdp attach's default): the frames a batch
sends through the ring reach their ports byte for byte as writev writes them, counted
the same, in chunks of at most the ring's size, on the loop and on the writer thread; a
ring the kernel refuses is a clear OSError and the writes stay writev's. A
SOCK_SEQPACKET socket pair stands in for each TAP device (one message a frame, behind
its 12-byte vnet header). The ring's own counters (/proc/self/fdinfo) show it carried
the writes."""
import os

import pytest

from tapsockets import close_pairs as _close, drain as _drain, forwarded_batch as _batch, numbered_frames, socket_ports

HDR = bytes(12)


def _ports(n):
    return socket_ports(n, 30, rcvbuf=1 << 22)


def _frames(n):
    return numbered_frames(n, 37)


def _ring_submitted():
    """Entries this process's io_urings took so far (their fdinfo's SqTail, summed: only
    the ring under test moves while it runs)."""
    total = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:[io_uring]":
                continue
            with open(f"/proc/self/fdinfo/{fd}") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("SqTail:"))
        except OSError:
            continue
    return total


@pytest.mark.parametrize("count", [1, 3, 4, 100, 256, 600])
def test_frames_through_the_ring_arrive_as_writev_writes_them(count):
    frames = _frames(count)
    ports = [30 + (i % 3 == 1) + (i % 7 == 0) for i in range(count)]
    plain, pairs_plain = _ports(3)
    ring, pairs_ring = _ports(3)
    try:
        ring.use_io_uring()
        assert ring.io_uring and not plain.io_uring
        before = _ring_submitted()
        assert plain.send(_batch(frames, ports)) == count
        assert ring.send(_batch(frames, ports)) == count
        # below 4 frames a batch writes with writev; from 4 on the ring takes them all
        assert _ring_submitted() - before == (count if count >= 4 else 0)
        for (_, theirs_plain), (_, theirs_ring), port in zip(pairs_plain, pairs_ring, (30, 31, 32)):
            got = _drain(theirs_ring)
            assert got == _drain(theirs_plain)
            assert got == [HDR + f for f, p in zip(frames, ports) if p == port]
            assert ring.counters(port) == plain.counters(port)
    finally:
        _close(pairs_plain)
        _close(pairs_ring)


def test_the_writer_thread_writes_through_the_ring():
    io, pairs = _ports(2)
    frames = _frames(300)
    ports = [30 + i % 2 for i in range(300)]
    try:
        io.use_io_uring()
        io.start_writer()
        before = _ring_submitted()
        b = _batch(frames, ports)
        io.prepare(b)
        io.submit(b)
        assert io.finish() == 300
        assert _ring_submitted() - before == 300
        assert _drain(pairs[0][1]) == [HDR + f for f in frames[0::2]]
        assert _drain(pairs[1][1]) == [HDR + f for f in frames[1::2]]
        with pytest.raises(RuntimeError, match="before start_writer"):
            io.use_io_uring()
    finally:
        io.stop_writer()
        _close(pairs)


def test_a_failed_write_through_the_ring_is_counted():
    io, pairs = _ports(2)
    try:
        io.use_io_uring()
        pairs[1][1].close()                 # port 31's other end is gone
        frames = _frames(10)
        assert io.send(_batch(frames, [30, 31] * 5)) == 5
        assert io.counters(31)[2:] == (0, 0, 5)
        assert io.counters(30)[2] == 5 and len(_drain(pairs[0][1])) == 5
    finally:
        pairs[1][0].close()
        pairs[0][0].close()
        pairs[0][1].close()


def test_a_ring_the_kernel_refuses_is_a_clear_error_and_writev_goes_on():
    io, pairs = _ports(1)
    try:
        # more entries than the kernel allows (32768): refused with EINVAL
        with pytest.raises(OSError, match=r"io_uring refused \(Invalid argument\)"):
            io.use_io_uring(1 << 20)
        assert not io.io_uring
        frames = _frames(20)
        assert io.send(_batch(frames, [30] * 20)) == 20
        assert _drain(pairs[0][1]) == [HDR + f for f in frames]
    finally:
        _close(pairs)
