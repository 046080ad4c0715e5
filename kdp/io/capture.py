"""Capture files: pcap and pcapng, read into batches and written from them.

The work is done in compiled code (kdp/io/pcap.pyx); this module is the Python face:

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
"""
from collections import namedtuple

from kdp._fast.packet import Batch, LinkType
from kdp.io.pcap import CaptureReader, CaptureWriter, SYNTH_DST_MAC, SYNTH_SRC_MAC
from kdp.ports import NO_PORT, PortTable

__all__ = ["CaptureReader", "CaptureWriter", "Packet", "open_capture", "read_batches",
           "read_packets", "write_packets", "SYNTH_DST_MAC", "SYNTH_SRC_MAC"]

#: One packet as the convenience readers return it (not used on the hot path).
Packet = namedtuple("Packet", "ts_ns data wire_len linktype in_port verdict reason")


def _ingress_id(ingress, ports):
    if ingress is None or isinstance(ingress, int):
        return ingress
    return ports.id_of(ingress)


def open_capture(path, ports: PortTable | None = None, ingress=None) -> CaptureReader:
    """A reader on `path`. `ingress` (a port name or id) is given to every packet;
    without it, pcapng packets get the port of their interface's name and classic pcap
    packets NO_PORT (the ingress classifier decides later)."""
    ports = PortTable() if ports is None else ports
    return CaptureReader(path, ports=ports, ingress=_ingress_id(ingress, ports))


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
