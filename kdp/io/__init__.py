"""Packet input and output: capture files (pcap, pcapng); TAP ports later."""
from kdp.io.capture import (CaptureReader, CaptureWriter, Packet, open_capture, read_batches,
                            read_packets, write_packets)

__all__ = ["CaptureReader", "CaptureWriter", "Packet", "open_capture", "read_batches",
           "read_packets", "write_packets"]
