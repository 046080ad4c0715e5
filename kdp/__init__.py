"""kdp: a userspace Kubernetes data plane.

The public API is small:

    Dataplane      a node's data plane from a cluster snapshot: process(batch), reload(paths)
    replay         run a capture through a Dataplane (what `kdp replay` does)
    Batch          packets + per-packet metadata, the unit every stage works on
    Lpm4, Lpm6     longest-prefix-match tables with batch lookups over numpy arrays
    Conntrack      the flow table (inspection, flush by backend / service / address)
    open_capture, CaptureWriter   pcap / pcapng in and out
    Reason, Stage, Verdict, CtState   the enums of the verdict log and the counters
    results, PacketResult   a processed batch's per-packet outcome, readable (enums, addresses, names)
    VerdictLog     the verdict log writer (JSON Lines; Dataplane.verdict_log makes one)

A batch, by hand:

    from kdp import Batch, Dataplane, results
    dp = Dataplane.from_snapshot(["pcaps/sample-cluster"], node="node-1")
    batch = Batch(256)
    batch.append(frame_bytes, ts_ns=1_700_000_000_000_000_000)   # an Ethernet frame
    dp.process(batch)                                            # in place
    for r in results(batch, dp):
        print(r.verdict.label, r.reason.label, r.src, r.dst, r.out_port, r.service)
"""
import os as _os

# kdp does no linear algebra: numpy's OpenBLAS needs no thread pool. Left alone it starts
# a thread a core at import, which spins ~0.1 s of CPU beside kdp's own start (set
# before numpy's first import; a caller's own setting wins).
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from kdp._fast.conntrack import Conntrack  # noqa: E402
from kdp._fast.lpm import Lpm4, Lpm6
from kdp._fast.packet import Batch
from kdp._fast.verdictlog import VerdictLog
from kdp.dataplane import Dataplane
from kdp.io.capture import CaptureWriter, open_capture
from kdp.reasons import CtState, Reason, Stage, Verdict
from kdp.replay import replay
from kdp.results import PacketResult, results

__all__ = ["Batch", "CaptureWriter", "Conntrack", "CtState", "Dataplane", "Lpm4", "Lpm6", "PacketResult",
           "Reason", "Stage", "Verdict", "VerdictLog", "open_capture", "replay", "results"]
__version__ = "0.1.0"
