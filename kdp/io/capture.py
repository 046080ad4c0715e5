"""Capture files: pcap and pcapng, read into batches and written from them.

The work is done in compiled code (kdp/io/pcap.pyx reads, kdp/io/pcapwrite.pyx writes);
this module is the Python face:

    reader = open_capture("in.pcapng", ports=ports, ingress=None)
    batch = Batch(256)
    while reader.fill(batch):
        ...                                  # the pipeline runs on the batch
    for message in reader.warnings:          # a cut-short file, skipped records
        print(message)

    with CaptureWriter("out.pcap", linktype=LinkType.LT_ETHERNET, ports=ports) as w:
        w.write(batch)                       # its transmitted packets (forward, reject, reply)

What the reader does with a damaged file:
  * it ends inside a record or block: every complete packet before it is delivered, then
    reading stops and a message goes to ``reader.warnings`` (no exception);
  * a header that cannot be right (bad magic, absurd or inconsistent length, unknown
    version): ``kdp.errors.CaptureError`` naming the file and the byte offset, raised by
    the ``fill`` call after the one that delivered every packet before the damage (so a
    replay keeps the packets and then reports the error);
  * a packet for an interface no IDB described: skipped, counted in ``reader.skipped``,
    one warning.
Packets of a link type the pipeline does not parse are delivered, marked dropped at
ST_RX with R_UNSUPPORTED_LINKTYPE, and counted in ``reader.unsupported``.

Directions and interfaces (`tcpdump -i any`): packets the capture saw leaving the node
are dropped at ST_RX, R_CAPTURED_OUTGOING, and frames for another host R_OTHERHOST,
unless ``all_directions``; an SLL2 packet's interface index names its ingress port through
``ifindex_ports`` (``interface_indexes`` reads them from ``ip -j link`` / ``ip -o link``
output saved on the node).

"-" is standard input (a stream, read as it comes) for the reader and standard output
for the writer; ``refuse_same_file`` keeps an output from overwriting an input.
"""
import json
import os
import re
import stat
import sys
from collections import namedtuple

from kdp._fast.packet import Batch, LinkType
from kdp.errors import KdpError
from kdp.io.pcap import CaptureReader
from kdp.io.pcapwrite import CaptureWriter, SYNTH_DST_MAC, SYNTH_SRC_MAC
from kdp.ports import HOST, NO_PORT, PortTable

__all__ = ["CaptureReader", "CaptureWriter", "Packet", "open_capture", "read_batches",
           "read_packets", "write_packets", "SYNTH_DST_MAC", "SYNTH_SRC_MAC",
           "interface_indexes", "ifindex_ports", "refuse_same_file", "LogFile", "STDIO",
           "unlink_for_replacement"]

#: The path that means standard input (reading) or standard output (writing).
STDIO = "-"
#: Linux gives the loopback interface index 1 in every network namespace.
LOOPBACK_IFINDEX = 1

#: One packet as the convenience readers return it (not used on the hot path).
Packet = namedtuple("Packet", "ts_ns data wire_len linktype in_port verdict reason")


def _ingress_id(ingress, ports):
    """The id of an --ingress port: a port name or a configured interface name. Never
    creates a port: an unknown name is an error naming the known ones."""
    if ingress is None or isinstance(ingress, int):
        return ingress
    port = ports.get(ingress)
    if port is None and ingress in ports.interfaces():
        port = ports.port_of_interface(ingress)
    if port is None:
        names = [name for _id, name in ports]
        shown = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
        interfaces = ", ".join(sorted(ports.interfaces()))
        raise KdpError(f"--ingress {ingress}: no such port (ports: {shown}; "
                       f"interfaces: {interfaces})")
    return port


def open_capture(path, ports: PortTable | None = None, ingress=None, ifindex_ports=None,
                 all_directions=False) -> CaptureReader:
    """A reader on `path` ("-": standard input). `ingress` (a port or interface name, or
    a port id) is given to every packet; without it, pcapng packets get the port of their
    interface's name, SLL2 packets the port `ifindex_ports` gives their interface index,
    and the rest NO_PORT (the ingress classifier decides later). See the module docstring
    for `all_directions`."""
    ports = PortTable() if ports is None else ports
    return CaptureReader(path, ports=ports, ingress=_ingress_id(ingress, ports),
                         ifindex_ports=ifindex_ports, all_directions=all_directions)


def read_batches(path, batch_size: int = 256, ports=None, ingress=None):
    """Yield batches of the capture. The SAME Batch object is refilled each time."""
    reader = open_capture(path, ports=ports, ingress=ingress)
    batch = Batch(batch_size)
    try:
        while reader.fill(batch):
            yield batch
    finally:
        reader.close()


def read_packets(path, ports=None, ingress=None, warnings=None) -> list:
    """Every packet of a capture as Packet tuples (for tests and tools; slow).

    Warnings of the reader are appended to the `warnings` list when one is given."""
    reader = open_capture(path, ports=ports, ingress=ingress)
    batch = Batch(256)
    out = []
    try:
        while reader.fill(batch):
            meta = batch.meta
            for i in range(len(batch)):
                m = meta[i]
                out.append(Packet(int(m["ts_ns"]), batch.packet(i), int(m["wire_len"]),
                                  int(m["linktype"]), int(m["in_port"]), int(m["verdict"]),
                                  int(m["reason"])))
    finally:
        if warnings is not None:
            warnings.extend(reader.warnings)
        reader.close()
    return out


def write_packets(path, packets, linktype: int = LinkType.LT_ETHERNET, ports=None,
                  format=None) -> int:
    """Write (ts_ns, bytes[, out_port]) items to a capture; returns the packets written."""
    writer = CaptureWriter(path, linktype=linktype, ports=ports, format=format, all_packets=True)
    batch = Batch(256)
    n = 0
    with writer:
        for item in packets:
            if len(batch) == batch.capacity:
                n += writer.write(batch)
                batch.clear()
            ts, data = item[0], item[1]
            i = batch.append(data, ts_ns=ts, linktype=linktype)
            if len(item) > 2 and item[2] is not None:
                batch.meta["out_port"][i] = item[2]
        if len(batch):
            n += writer.write(batch)
    return n


# ------------------------------------------------------------------ interfaces

_IP_LINK_LINE = re.compile(r"^(\d+):\s+([^:@\s]+)(?:@[^:\s]*)?:")


def interface_indexes(path) -> dict:
    """{interface index: name} from what `ip -j link` (JSON) or `ip -o link` / `ip link`
    (text) printed on the node when the capture was taken. KdpError naming the file and
    line for anything else."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(16 << 20)
    except (OSError, UnicodeDecodeError) as exc:
        raise KdpError(f"{path}: cannot read the interface list: "
                       f"{getattr(exc, 'strerror', None) or exc}") from None
    out = {}
    if text.lstrip().startswith("["):
        try:
            links = json.loads(text)
        except json.JSONDecodeError as exc:
            raise KdpError(f"{path}: not the JSON of `ip -j link`: {exc}") from None
        for i, link in enumerate(links if isinstance(links, list) else [None]):
            index = link.get("ifindex") if isinstance(link, dict) else None
            name = link.get("ifname") if isinstance(link, dict) else None
            if not (isinstance(index, int) and not isinstance(index, bool) and 0 < index < 1 << 32
                    and isinstance(name, str) and name):
                raise KdpError(f"{path}: [{i}]: an `ip -j link` entry needs ifindex (1..2^32-1) "
                               f"and ifname")
            out[index] = name
        return out
    for n, line in enumerate(text.splitlines(), 1):
        m = _IP_LINK_LINE.match(line)
        if m is None:
            if line[:1].isspace() or not line.strip():
                continue        # the continuation lines of `ip link` (link/ether ...)
            raise KdpError(f"{path}:{n}: not a line of `ip -o link` (\"2: eth0: <...>\"): {line[:60]!r}")
        index = int(m.group(1))
        if not 0 < index < 1 << 32:
            raise KdpError(f"{path}:{n}: interface index {index} out of range")
        out[index] = m.group(2)
    return out


def ifindex_ports(ports: PortTable, indexes: dict | None = None) -> dict:
    """{interface index: port id} for SLL2 packets: the interfaces of `indexes` whose name
    a port knows (a NodeConfig port's interface, a port's own name, lo). Others are left
    out: their packets get a port by source address. Index 1 is lo (the host) by default."""
    out = {LOOPBACK_IFINDEX: HOST}
    known = ports.interfaces()
    for index, name in (indexes or {}).items():
        if name in known or name in ports:
            port = ports.port_of_interface(name)
            if port is not None:
                out[index] = port
    return out


# ------------------------------------------------------------------ outputs

class LogFile:
    """A verdict log's file, binary ("-": standard output): a failure to create or write
    it is a KdpError naming it (a full disk, a missing folder), not a traceback; a closed
    pipe stays BrokenPipeError."""

    def __init__(self, path, what="verdict log"):
        self.path = str(path)
        self.what = what
        self.own = self.path != STDIO
        try:
            self.f = open(self.path, "wb") if self.own else sys.stdout.buffer
        except OSError as exc:
            raise KdpError(f"{self.path}: cannot create the {what}: "
                           f"{exc.strerror or exc}") from None

    def write(self, data):
        try:
            return self.f.write(data)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise KdpError(f"{self.path}: cannot write the {self.what}: {exc.strerror or exc}") from None

    def close(self):
        try:
            if self.own:
                self.f.close()
            else:
                self.f.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise KdpError(f"{self.path}: cannot write the {self.what}: {exc.strerror or exc}") from None


def _file_key(path):
    """What identifies the file a path names: (device, inode) when it exists (hard links,
    symbolic links and other spellings compare equal), else its resolved path."""
    try:
        st = os.stat(path) if path != STDIO else os.fstat(1)
    except OSError:
        return ("new", os.path.realpath(path))
    return ("file", st.st_dev, st.st_ino)


def unlink_for_replacement(path):
    """Remove the regular file an output path names (through symbolic links), so that the
    output is created anew rather than truncated in place: ext4 (auto_da_alloc) writes a
    file that was truncated and rewritten back to disk when it is closed, in the writer's
    time (~0.15 s for a 330 MB capture, bench/README.md), and truncating a file still being
    written back waits for it. Other names of the old file (hard links) keep its bytes; the
    new file gets the default mode. Standard output, devices, pipes and missing files are
    left alone; a file that cannot be removed is truncated as before."""
    if path is None or os.fspath(path) == STDIO:
        return
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return
    if stat.S_ISREG(st.st_mode) and st.st_size > 0:
        try:
            os.unlink(real)
        except OSError:
            pass


def refuse_same_file(**paths):
    """KdpError when two of the named paths (role=path; None: unused) are one file, e.g.
    refuse_same_file(input=..., output=..., log=...). Writing a capture over the input
    while it is read (mapped) would destroy the input; output and log would clobber each
    other. "-" is standard input for `input` and standard output for the others."""
    keys = {}
    for role, path in paths.items():
        if path is None:
            continue
        path = os.fspath(path)
        if path == STDIO:
            if role == "input":
                continue            # standard input is never one of the outputs' files
            key = ("stdout",) if os.isatty(1) else _file_key(STDIO)
        else:
            key = _file_key(path)
        for other, (other_path, other_key) in keys.items():
            if key == other_key:
                raise KdpError(f"{path}: the {role} is the same file as the {other} "
                               f"({other_path}); refusing to overwrite it")
        keys[role] = (path, key)
