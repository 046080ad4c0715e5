"""`kdp replay --annotate`: a pcapng output whose packets carry what kdp decided as a
packet comment (the EPB option opt_comment, RFC draft-ietf-opsawg-pcapng section 4.3),
which Wireshark shows beside the packet (`frame.comment`): verdict, reason, Service,
and NAT (the tuple as it came in and as it left).

The comments come from the verdict log's own formatter (a private VerdictLog writing to
memory), so they say what `--log` says. The writer is plain Python, a packet at a time:
annotation is for reading captures in Wireshark, not for speed; without --annotate the
compiled writer (kdp.io.pcap.CaptureWriter) writes. Each packet is written in its own link
type, with one interface per (egress port, link type).
"""
import io
import json
import os
import struct
import sys

from kdp.errors import CaptureError

_SHB, _IDB, _EPB = 0x0A0D0D0A, 1, 6
_TRANSMITTED = (1, 3, 5)        # Verdict FORWARD, REJECT, REPLY: what the output holds
NO_PORT = 0xFFFF


def _option(code, value):
    pad = (4 - len(value) % 4) % 4
    return struct.pack("=HH", code, len(value)) + value + b"\0" * pad


def _block(btype, body):
    total = 12 + len(body)
    return struct.pack("=II", btype, total) + body + struct.pack("=I", total)


def _hp(addr, port):
    if port is None:
        return str(addr)
    return f"[{addr}]:{port}" if ":" in str(addr) else f"{addr}:{port}"


def comment_of(line):
    """The packet comment of one verdict-log line."""
    parts = [f"kdp: {line['verdict']} ({line['reason']})"]
    if line.get("service"):
        parts.append(f"service {line['service']}")
    orig = line.get("orig")
    if orig and line.get("src") is not None:
        before = f"{_hp(orig['src'], orig['sport'])} -> {_hp(orig['dst'], orig['dport'])}"
        after = f"{_hp(line['src'], line['sport'])} -> {_hp(line['dst'], line['dport'])}"
        parts.append(f"nat {before} => {after}" if before != after else f"no nat {before}")
    pol = line.get("policy")
    if pol:
        parts.append("policy " + "; ".join(f"{k} {v}" for k, v in pol.items() if v))
    tunnel = line.get("tunnel")
    if tunnel:
        parts.append(f"{tunnel['type']} to {tunnel['dst']}")
    return ", ".join(parts)


class CommentLog:
    """Stands where the pipeline hands its verdict log the tuples as received (both this
    and the user's `--log`, when there is one), and turns a processed batch into one
    comment per packet."""

    def __init__(self, dp, batch_size, user_log=None):
        self.sink = io.BytesIO()
        self.log = dp.verdict_log(self.sink, batch_size)
        self.user_log = user_log

    def capture_orig(self, batch):
        self.log.capture_orig(batch)
        if self.user_log is not None:
            self.user_log.capture_orig(batch)

    def capture_dns(self, notes):
        self.log.capture_dns(notes)
        if self.user_log is not None:
            self.user_log.capture_dns(notes)

    def comments(self, batch):
        self.sink.seek(0)
        self.sink.truncate()
        self.log.write(batch)
        return [comment_of(json.loads(x)) for x in self.sink.getvalue().splitlines()]


class AnnotatingWriter:
    """A pcapng writer with a comment per packet: `write(batch, comments)` writes the
    transmitted packets (forward, reject, reply), `packets` counts them, as CaptureWriter."""

    def __init__(self, path, ports):
        self.path = os.fspath(path)
        self.ports = ports
        self.packets = 0
        self.ifaces = {}
        if self.path == "-":
            if sys.stdout.isatty():
                raise CaptureError("<stdout>: standard output is a terminal; redirect the capture")
            self.f = sys.stdout.buffer
            self.own = False
        else:
            try:
                self.f = open(self.path, "wb")
            except OSError as exc:
                raise CaptureError(f"{self.path}: cannot create capture: {exc.strerror}") from None
            self.own = True
        body = struct.pack("=IHHq", 0x1A2B3C4D, 1, 0, -1) + _option(4, b"kdp") + struct.pack("=HH", 0, 0)
        self._put(_block(_SHB, body))

    def _put(self, data):
        try:
            self.f.write(data)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise CaptureError(f"{self.path}: cannot write: {exc.strerror}") from None

    def _iface(self, port, linktype):
        key = (port, linktype)
        if key not in self.ifaces:
            name = "none" if port == NO_PORT else self.ports.name_of(port)
            opts = _option(2, name.encode("utf-8")) + _option(9, b"\x09") + struct.pack("=HH", 0, 0)
            self._put(_block(_IDB, struct.pack("=HHI", linktype, 0, 262144) + opts))
            self.ifaces[key] = len(self.ifaces)
        return self.ifaces[key]

    def write(self, batch, comments=None):
        meta = batch.meta
        for i in range(len(batch)):
            m = meta[i]
            if int(m["verdict"]) not in _TRANSMITTED:
                continue
            data = batch.packet(i)
            ifid = self._iface(int(m["out_port"]), int(m["linktype"]))
            ts = int(m["ts_ns"])
            wire = max(int(m["wire_len"]) + len(data) - int(m["len"]), len(data))
            opts = b""
            if comments is not None and comments[i]:
                opts = _option(1, comments[i].encode("utf-8")) + struct.pack("=HH", 0, 0)
            pad = b"\0" * ((4 - len(data) % 4) % 4)
            body = struct.pack("=IIIII", ifid, ts >> 32, ts & 0xFFFFFFFF, len(data), wire) + data + pad + opts
            self._put(_block(_EPB, body))
            self.packets += 1

    def close(self):
        try:
            if self.own:
                self.f.close()
            else:
                self.f.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise CaptureError(f"{self.path}: cannot write: {exc.strerror}") from None
