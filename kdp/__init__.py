"""kdp: a userspace Kubernetes data plane.

The public API is small:

    Dataplane      a node's data plane from a cluster snapshot: process(batch), reload(paths)
    replay         run a capture through a Dataplane (what `kdp replay` does)
    Batch          packets + per-packet metadata, the unit every stage works on
    Lpm4, Lpm6     longest-prefix-match tables with batch lookups over numpy arrays
    Conntrack      the flow table (inspection, flush by backend / service / address)
    open_capture, CaptureWriter   pcap / pcapng in and out
    Reason, Stage, Verdict, CtState   the enums of the verdict log and the counters
"""
from kdp._fast.conntrack import Conntrack
from kdp._fast.lpm import Lpm4, Lpm6
from kdp._fast.packet import Batch
from kdp.dataplane import Dataplane
from kdp.io.capture import CaptureWriter, open_capture
from kdp.reasons import CtState, Reason, Stage, Verdict
from kdp.replay import replay

__all__ = ["Batch", "CaptureWriter", "Conntrack", "CtState", "Dataplane", "Lpm4", "Lpm6",
           "Reason", "Stage", "Verdict", "open_capture", "replay"]
__version__ = "0.1.0"
