"""Packet input and output, outside the pipeline's stages.

    pcap.pyx       capture files (pcap, pcapng) read into batches, compiled (it cimports
                   the Batch of kdp._fast.packet)
    pcapwrite.pyx  capture files written from batches, compiled
    capture.py     their Python face: open_capture, read_batches, read_packets, ...
    recorder.py    `kdp attach --pcap-out`
"""
from kdp.io.capture import (CaptureReader, CaptureWriter, Packet, open_capture, read_batches,
                            read_packets, write_packets)

__all__ = ["CaptureReader", "CaptureWriter", "Packet", "open_capture", "read_batches",
           "read_packets", "write_packets"]
