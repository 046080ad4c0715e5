"""A node's data plane: its compiled tables, its conntrack, and the pipeline.

    dp = Dataplane.from_snapshot(["cluster/"], node="node-1")
    dp.process(batch)          # one batch, in place
    dp.reload(["cluster/"])    # compile aside, swap whole between batches

A snapshot that fails validation raises ConfigError and changes nothing.
"""
from kdp._fast.pipeline import Pipeline
from kdp._fast.route import RouteKind, RouteTable, Route
from kdp._fast.verdictlog import VerdictLog
from kdp.ports import HOST, UPLINK, PortTable
from kdp.reasons import Reason

_DEFAULT_ROUTES = (Route("0.0.0.0/0", RouteKind.RT_UPLINK, UPLINK, note="default"),
                   Route("::/0", RouteKind.RT_UPLINK, UPLINK, note="default"))


class Dataplane:
    def __init__(self, routes=_DEFAULT_ROUTES, ports=None):
        self.ports = ports or PortTable()
        self.notices = []
        self.pipeline = Pipeline(RouteTable(routes))

    @classmethod
    def from_snapshot(cls, paths=(), node=None):
        """The data plane of `node` in the snapshot at `paths` (none: a plain router)."""
        if not paths:
            return cls()
        raise NotImplementedError("cluster snapshots: coming with the control layer")

    @property
    def counters(self):
        """uint64 [stage, reason]: every packet processed, counted once."""
        return self.pipeline.counters

    @property
    def verdicts(self):
        """uint64 [Verdict]: packets processed, by final verdict."""
        return self.pipeline.verdicts

    def process(self, batch, log=None):
        self.pipeline.run(batch, log)

    def service_names(self):
        return []

    def verdict_log(self, fileobj, batch_size):
        ports = [name for _id, name in self.ports]
        return VerdictLog(fileobj, ports, self.service_names(),
                          [r.label for r in Reason], batch_size)
