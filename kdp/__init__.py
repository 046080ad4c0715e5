"""kdp: a userspace Kubernetes data plane.

The public API is deliberately small; see README.md.
"""
from kdp._fast.packet import Batch
from kdp.reasons import Reason, Stage, Verdict

__all__ = ["Batch", "Reason", "Stage", "Verdict"]
__version__ = "0.1.0"
