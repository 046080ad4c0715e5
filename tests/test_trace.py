"""kdp trace: each stage's decision for chosen packets. Checked field by field against
the verdict log of a plain replay of the same capture (the independent record of what
became of each packet), and tracing must not change what the pipeline decides."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kdp.replay import replay
from kdp.trace import trace

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "pcaps" / "sample.pcap"
CLUSTER = ROOT / "pcaps" / "sample-cluster"
STAGES = ["rx", "parse", "ingress", "dns", "conntrack", "new flow", "nat", "route", "tx"]


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    path = tmp_path_factory.mktemp("trace") / "v.jsonl"
    replay(SAMPLE, cluster=[CLUSTER], node="node-1", log=path)
    return [json.loads(line) for line in path.read_text().splitlines()]


def _ep(addr, port):
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def test_every_packet_of_the_sample_traces_to_what_the_verdict_log_says(log):
    traces, chosen = trace(SAMPLE, cluster=[CLUSTER], node="node-1", packets=range(len(log)), limit=1000)
    assert chosen == len(traces) == len(log) == 35
    for t, line in zip(traces, log):
        stages = {s["stage"]: s["decision"] for s in t["stages"]}
        assert t["index"] == line["index"] and [s["stage"] for s in t["stages"]] == STAGES
        assert stages["tx"].startswith(f"{line['verdict']}: {line['reason']} ")
        if line["orig"] is None:
            continue
        assert stages["ingress"].startswith(f"in on {line['in_port']}")
        if line["service"] and line["ct"] == "new" and line["verdict"] == "forward":
            assert f"of {line['service']} -> backend" in stages["new flow"]
        if line["proto"] in ("tcp", "udp") and line["verdict"] == "forward":
            before = f"{_ep(line['orig']['src'], line['orig']['sport'])} > {_ep(line['orig']['dst'], line['orig']['dport'])}"
            after = f"{_ep(line['src'], line['sport'])} > {_ep(line['dst'], line['dport'])}"
            assert stages["nat"] == ("-" if before == after else f"{before} => {after}")
            assert f" out {line['out_port']}" in stages["route"]
        if line.get("tunnel"):
            assert f"to {line['tunnel']['dst']}" in stages["route"]
        if line["policy"] and line["verdict"] == "drop":
            assert any(d in stages["new flow"] for d in line["policy"].values() if d)


def test_tracing_changes_nothing_the_pipeline_decides(tmp_path):
    from kdp._fast.packet import Batch
    from kdp.dataplane import Dataplane
    from kdp.io.capture import open_capture
    from kdp.trace import Tracer
    outcomes = []
    for traced in (False, True):
        dp = Dataplane.from_snapshot([CLUSTER], "node-1")
        reader = open_capture(SAMPLE, ports=dp.ports)
        batch, rows = Batch(8), []
        while reader.fill(batch):
            dp.process(batch, trace=Tracer(range(len(batch))) if traced else None)
            rows += [bytes(batch.packet(i)) + bytes(batch.meta[i]) for i in range(len(batch))]
        reader.close()
        outcomes.append((rows, dp.counters.copy().tolist()))
    assert outcomes[0] == outcomes[1]


def test_filter_chooses_the_packets_and_the_cli_reports_bad_indices():
    traces, chosen = trace(SAMPLE, cluster=[CLUSTER], node="node-1", filter="udp port 53")
    assert chosen == len(traces) > 0
    assert all(":53 " in t["stages"][1]["decision"] or ":53 ttl" in t["stages"][1]["decision"] for t in traces)
    run = subprocess.run([sys.executable, "-m", "kdp", "trace", str(SAMPLE), "--cluster", str(CLUSTER),
                          "--packet", "3,99"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "no packet 99" in run.stderr and "Traceback" not in run.stderr
    run = subprocess.run([sys.executable, "-m", "kdp", "trace", str(SAMPLE), "--cluster", str(CLUSTER),
                          "--packet", "0", "--json"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and json.loads(run.stdout)[0]["index"] == 0


@pytest.mark.parametrize("stage", ["parse", "conntrack", "nat", "route", "tx"])
def test_an_error_in_the_tracer_reaches_the_caller_from_every_stage(stage):
    from kdp._fast.packet import Batch
    from kdp.dataplane import Dataplane
    from kdp.io.capture import open_capture

    class FailingTracer:
        def snap(self, name, batch):
            if name == stage:
                raise RuntimeError(f"tracer failed at {name}")

    dp = Dataplane.from_snapshot([CLUSTER], "node-1")
    reader = open_capture(SAMPLE, ports=dp.ports)
    batch = Batch(64)
    assert reader.fill(batch)
    reader.close()
    with pytest.raises(RuntimeError, match=f"tracer failed at {stage}"):
        dp.process(batch, trace=FailingTracer())
