"""TapIO.read_into over several ports: every frame arrives byte for byte, in round order
(one frame per port per round), and a port found empty is asked once per call, not once
per round (on a busy port beside an idle one that was a failed readv, a syscall, per
frame). A SOCK_SEQPACKET socket pair stands in for a TAP device: one message a frame,
behind its 12-byte vnet header, as a TAP's reads return them."""

from kdp._fast.packet import Batch
from tapsockets import close_pairs as _close, socket_ports

HDR = bytes(12)


def _ports(n):
    return socket_ports(n, 10)


def _frame(port, i):
    # an Ethernet-sized frame that names its port and number (no IP: read_into does not parse)
    return bytes([port]) * 6 + i.to_bytes(4, "big") + bytes(50) + bytes([i & 0xFF])


def test_an_idle_port_beside_a_busy_one_is_asked_once_per_call():
    io, pairs = _ports(2)
    try:
        sent = [_frame(0, i) for i in range(100)]
        for f in sent:
            pairs[0][1].send(HDR + f)
        b = Batch(256)
        assert io.read_into(b, 7) == 100
        assert [b.packet(i) for i in range(100)] == sent
        assert list(b.meta["in_port"][:100]) == [10] * 100
        # one empty read for the idle port, one for the busy port once it ran dry
        assert io.reads_empty == 2
        assert io.counters(10)[:2] == (100, sum(map(len, sent)))
        assert io.read_into(b, 8) == 0 and io.reads_empty == 4
    finally:
        _close(pairs)


def test_busy_ports_take_turns_and_a_port_that_runs_dry_drops_out():
    io, pairs = _ports(3)
    try:
        for i in range(5):
            pairs[0][1].send(HDR + _frame(0, i))
        for i in range(2):
            pairs[1][1].send(HDR + _frame(1, i))
        for i in range(4):
            pairs[2][1].send(HDR + _frame(2, i))
        b = Batch(64)
        assert io.read_into(b, 1) == 11
        order = [(b.packet(i)[0], int.from_bytes(b.packet(i)[6:10], "big")) for i in range(11)]
        assert order == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (0, 2), (2, 2), (0, 3), (2, 3), (0, 4)]
        assert io.reads_empty == 3
    finally:
        _close(pairs)


def test_a_full_batch_leaves_the_rest_for_the_next_call_starting_at_the_next_port():
    io, pairs = _ports(2)
    try:
        for i in range(6):
            pairs[0][1].send(HDR + _frame(0, i))
            pairs[1][1].send(HDR + _frame(1, i))
        b = Batch(8)
        assert io.read_into(b, 1) == 8 and io.reads_empty == 0
        b.clear()
        assert io.read_into(b, 2) == 4
        # the first call ended after port 1's fourth frame: port 0 comes first again
        assert [b.packet(i)[0] for i in range(4)] == [0, 1, 0, 1]
        assert [int.from_bytes(b.packet(i)[6:10], "big") for i in range(4)] == [4, 4, 5, 5]
    finally:
        _close(pairs)


def test_after_a_wait_only_the_ports_it_found_ready_are_asked():
    io, pairs = _ports(2)
    try:
        sent = [_frame(0, i) for i in range(3)]
        for f in sent:
            pairs[0][1].send(HDR + f)
        assert io.wait(0) == 1
        late = _frame(1, 0)
        pairs[1][1].send(HDR + late)        # came after the wait: left for the next call
        b = Batch(64)
        assert io.read_into(b, 1) == 3
        assert [b.packet(i) for i in range(3)] == sent
        assert io.reads_empty == 1          # only the busy port, once it ran dry; the idle one was not asked
        b.clear()
        assert io.read_into(b, 2) == 1 and b.packet(0) == late   # no wait before: every port is asked
        assert io.reads_empty == 3
        b.clear()
        assert io.wait(0) == 0              # nothing ready: the next read asks every port again
        assert io.read_into(b, 3) == 0 and io.reads_empty == 5
    finally:
        _close(pairs)
