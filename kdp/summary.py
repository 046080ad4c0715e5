"""The end-of-run summary: every packet counted once, by stage and reason."""
from dataclasses import dataclass, field

import numpy as np

from kdp.reasons import Reason, Stage, Verdict


# the order a packet meets the stages in (the Stage enum appends new stages at its end)
PIPELINE_ORDER = (Stage.RX, Stage.PARSE, Stage.DECAP, Stage.DNS, Stage.CONNTRACK, Stage.SERVICE,
                  Stage.POLICY, Stage.NAT, Stage.ROUTE, Stage.ENCAP, Stage.TX)


@dataclass
class RunResult:
    """What a replay did. `counters[stage, reason]` adds up to `packets_in`."""
    packets_in: int
    counters: np.ndarray
    verdicts: np.ndarray            # uint64 [Verdict]
    packets_out: int = 0
    input_path: str = ""
    output_path: str | None = None
    warnings: list = field(default_factory=list)    # about the capture
    notices: list = field(default_factory=list)     # about the snapshot (skipped objects)
    seconds: float = 0.0
    flows: dict = field(default_factory=dict)
    dns: dict = field(default_factory=dict)         # DNS stage outcome -> queries (non-zero ones)
    services: dict = field(default_factory=dict)    # Service port -> {packets, new_flows, rejects}

    def rows(self):
        """(stage, reason, count) for every non-zero counter: stages in pipeline order,
        reasons in enum order."""
        for s in PIPELINE_ORDER:
            for r in np.nonzero(self.counters[s])[0]:
                yield s, Reason(int(r)), int(self.counters[s, r])

    def by_verdict(self):
        return {v.label: int(self.verdicts[v]) for v in
                (Verdict.FORWARD, Verdict.LOCAL, Verdict.REJECT, Verdict.REPLY, Verdict.DROP)}

    def to_json(self):
        return {
            "input": self.input_path,
            "output": self.output_path,
            "packets_in": self.packets_in,
            "packets_out": self.packets_out,
            "seconds": round(self.seconds, 6),
            "verdicts": self.by_verdict(),
            "counters": [
                {"stage": s.label, "reason": r.label, "packets": c} for s, r, c in self.rows()
            ],
            "conntrack": self.flows,
            "dns": self.dns,
            "services": [{"service": name, **counts} for name, counts in sorted(self.services.items())],
            "warnings": list(self.warnings),
            "notices": list(self.notices),
        }


def dns_outcomes(counters):
    """{outcome label: count} of the DNS stage's non-zero counters ("truncated" last)."""
    from kdp._fast.dns import OUTCOME_LABELS
    return {label: int(counters[i]) for i, label in enumerate(OUTCOME_LABELS) if counters[i]}


def warm_in_background():
    """Import rich and render a first table on another thread while the packets flow.
    Its first table costs ~40 ms (imports, caches built on first use) that would
    otherwise come after the last packet; the packets run without the GIL, so this work
    takes the second core's idle time (started once the data plane is built: the
    snapshot's loading holds the GIL)."""
    import threading

    def warm():
        import io
        from rich.console import Console
        from rich.table import Table
        table = Table(title="warm-up", show_footer=True)
        table.add_column("stage", footer="total")
        table.add_column("packets", justify="right", footer="1")
        table.add_row("route", "1")
        Console(file=io.StringIO(), width=10_000, markup=False, highlight=False).print(table)

    threading.Thread(target=warm, name="kdp-summary-warm-up", daemon=True).start()


def print_summary(result: RunResult, console=None, title=None):
    from rich.console import Console
    from rich.table import Table

    console = console or Console(stderr=False)
    table = Table(title=title or f"kdp replay: {result.input_path}", show_footer=True)
    table.add_column("stage", footer="total")
    table.add_column("reason")
    table.add_column("packets", justify="right", footer=str(int(result.counters.sum())))
    for stage, reason, count in result.rows():
        table.add_row(stage.label, reason.label, str(count))
    console.print(table)
    if result.services:
        console.print(service_table(result.services))
    verdicts = ", ".join(f"{k} {v}" for k, v in result.by_verdict().items())
    rate = result.packets_in / result.seconds if result.seconds > 0 else 0.0
    console.print(f"{result.packets_in} packets in, {result.packets_out} written "
                  f"({verdicts}) in {result.seconds:.3f} s, {rate:,.0f} packets/s")
    if result.flows:
        ct = result.flows
        console.print(f"conntrack: {ct.get('lookups', 0)} packets looked up = {ct.get('hits', 0)} hits + "
                      f"{ct.get('misses', 0)} misses + {ct.get('related', 0)} related + "
                      f"{ct.get('errors_no_flow', 0)} ICMP errors of no flow; "
                      f"{ct.get('inserts', 0)} flows created, {ct.get('expiries', 0)} expired, "
                      f"{ct.get('evictions', 0)} evicted, {ct['flows']} live; {ct.get('invalid', 0)} invalid")
    if result.dns:
        console.print("dns: " + ", ".join(f"{k} {v}" for k, v in result.dns.items()))
    if result.output_path:
        console.print(f"output: {result.output_path}")
    print_diagnostics(result)
    return 0


SERVICE_ROWS = 20


def service_table(services, rows=SERVICE_ROWS):
    """The busiest `rows` Service ports of a summary, as a rich Table (the caption says
    how many more there are: --json lists them all)."""
    from rich.table import Table
    busiest = sorted(services.items(), key=lambda kv: (-kv[1]["packets"], kv[0]))
    more = len(busiest) - rows
    table = Table(title="per Service port" + (f" (the {rows} busiest)" if more > 0 else ""),
                  caption=f"{more} more Service ports: --json lists them all" if more > 0 else None)
    table.add_column("service")
    for column in ("packets", "new flows", "rejects"):
        table.add_column(column, justify="right")
    for name, c in busiest[:rows]:
        table.add_row(name, str(c["packets"]), str(c["new_flows"]), str(c["rejects"]))
    return table


def print_diagnostics(result):
    """Warnings and notices: diagnostics, so on standard error whatever stream the summary
    goes to."""
    import sys
    for w in result.warnings:
        print(f"kdp: warning: {w}", file=sys.stderr)
    for n in result.notices:
        print(f"kdp: notice: {n}", file=sys.stderr)
