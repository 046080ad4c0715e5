"""Socket pairs standing in for TAP devices in TapIO's tests: a SOCK_SEQPACKET pair a
port (one message a frame, behind its 12-byte vnet header), both ends non-blocking."""
import socket

from kdp._fast.packet import Batch
from kdp._fast.tapio import TapIO
from kdp.reasons import Verdict

OUR_MAC = b"\x02\x00\x00\x00\x00\x01"


def socket_ports(n, first_port, rcvbuf=None):
    """A TapIO over n socket pairs, ports first_port.. ; returns (io, [(ours, theirs)])."""
    pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _ in range(n)]
    for ours, theirs in pairs:
        ours.setblocking(False)
        theirs.setblocking(False)
        if rcvbuf is not None:
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, rcvbuf)
            theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    io = TapIO([ours.fileno() for ours, _ in pairs], [first_port + i for i in range(n)], OUR_MAC)
    return io, pairs


def forwarded_batch(frames, ports):
    """A batch whose frames the pipeline forwarded, frame i out ports[i]."""
    b = Batch(max(len(frames), 256))
    for f in frames:
        b.append(f)
    b.meta["verdict"][:len(frames)] = int(Verdict.FORWARD)
    b.meta["out_port"][:len(frames)] = ports
    return b


def numbered_frames(n, spread):
    """n Ethernet frames of 1 + i % spread four-byte copies of their number i."""
    return [bytes([0x02, 0, 0, 0, 0, i & 0xFF]) + bytes(6) + b"\x88\xb5" + i.to_bytes(4, "big") * (1 + i % spread)
            for i in range(n)]


def drain(sock):
    """Every message waiting on sock."""
    out = []
    while True:
        try:
            out.append(sock.recv(70000))
        except BlockingIOError:
            return out


def close_pairs(pairs):
    for a, b in pairs:
        a.close()
        b.close()
