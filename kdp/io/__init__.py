"""Packet input and output, outside the pipeline's stages.

    pcap.pyx     capture files (pcap, pcapng) read into batches and written from them,
                 compiled (it cimports the Batch of kdp._fast.packet)
    capture.py   their Python face: open_capture, read_batches, read_packets, ...
TAP ports (`kdp attach`) come next, beside them.
"""
from kdp.io.capture import (CaptureReader, CaptureWriter, Packet, open_capture, read_batches,
                            read_packets, write_packets)

__all__ = ["CaptureReader", "CaptureWriter", "Packet", "open_capture", "read_batches",
           "read_packets", "write_packets"]
