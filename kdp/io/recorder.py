"""`kdp attach --pcap-out DIR`: what each port received and sent, as one pcapng file.

One interface description a port (if_name "port name (device)", nanosecond timestamps),
then every frame kdp read from a port (epb_flags: inbound) or wrote to it (outbound),
as it happened, with the monotonic clock's time converted to the epoch's. Wireshark and
tshark show the direction and the interface of each frame. The file is written through
a buffer and closed at the end; an error writing it is reported, never a traceback.
"""
import os
import struct
import time

from kdp.errors import KdpError

SHB, IDB, EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
INBOUND, OUTBOUND = 1, 2            # epb_flags bits 0-1


def _option(code, value):
    pad = (4 - len(value) % 4) % 4
    return struct.pack("=HH", code, len(value)) + value + b"\0" * pad


def _block(kind, body):
    length = 12 + len(body)
    return struct.pack("=II", kind, length) + body + struct.pack("=I", length)


class Recorder:
    """Writes DIR/attach.pcapng: open(ports), then rx/tx(port, frame), then close()."""

    def __init__(self, directory, ports):
        self.path = os.path.join(directory, "attach.pcapng")
        try:
            os.makedirs(directory, exist_ok=True)
            self.f = open(self.path, "wb")
        except OSError as exc:
            raise KdpError(f"--pcap-out {directory}: cannot create {self.path}: {exc.strerror or exc}") from None
        self.ifid = {}
        self.frames = 0
        # monotonic -> epoch: the offset taken once (the file's times stay monotonic)
        self.epoch_offset = time.time_ns() - time.monotonic_ns()
        self._put(_block(SHB, struct.pack("=IHHq", 0x1A2B3C4D, 1, 0, -1)))
        for k, p in enumerate(ports):
            opts = _option(2, f"{p.name} ({p.device})".encode()) + _option(9, b"\x09") + _option(0, b"")
            self._put(_block(IDB, struct.pack("=HHI", 1, 0, 262144) + opts))
            self.ifid[p.port_id] = k

    def rx(self, port, frame, now_ns):
        self._frame(port, frame, now_ns, INBOUND)

    def tx(self, port, frame, now_ns):
        self._frame(port, frame, now_ns, OUTBOUND)

    def _frame(self, port, frame, now_ns, direction):
        ts = now_ns + self.epoch_offset
        n = len(frame)
        pad = (4 - n % 4) % 4
        body = (struct.pack("=IIIII", self.ifid[port.port_id], ts >> 32, ts & 0xFFFFFFFF, n, n)
                + bytes(frame) + b"\0" * pad + _option(2, struct.pack("=I", direction)) + _option(0, b""))
        self._put(_block(EPB, body))
        self.frames += 1

    def _put(self, data):
        try:
            self.f.write(data)
        except OSError as exc:
            raise KdpError(f"{self.path}: cannot write: {exc.strerror or exc}") from None

    def close(self):
        try:
            self.f.close()
        except OSError as exc:
            raise KdpError(f"{self.path}: cannot write: {exc.strerror or exc}") from None
