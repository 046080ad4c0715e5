"""`kdp bench replay`: what a user runs, end to end, beside tcpdump on the same capture.

Workload (generated into $TMPDIR, removed afterwards): the pipeline suite's cluster
(kdp/benchmarks/pipeline.py: 1,000 Services with 10,000 endpoints seen from node-0) as
one multi-document YAML file, and its capture: 1,000,000 Ethernet/IPv4/TCP packets of
~100,000 flows (100,000 packets with --quick). Each row runs a program and takes its
wall time, best of 3 (the file is in the page cache after the first run), and the CPU
time (user + system) of that run:

  kdp replay -o out.pcap             the CLI path whole: start-up, loading and compiling
                                     the cluster, read, pipeline, write, summary
  kdp replay -o out.pcap --log LOG   ... and the JSON verdict log
  kdp replay (no output)             read, pipeline and summary only
  tcpdump -r IN -w OUT               the same capture copied by tcpdump (the peer; its
                                     output removed before each run, untimed)
  start-up                           kdp replay of a capture with no packets: the time a
                                     user waits before the first packet (no cluster; the
                                     sample cluster, in a checkout; the 1,000-Service YAML;
                                     10,000 Services without --quick). Best of 3: the
                                     caches (parse, validated snapshot) are warm

  --workers 1 against --workers 2    `-o` and `-o --log` with one worker and with two
                                     (flows sharded, kdp/shards.py), runs alternating
                                     (1, 2, 1, 2, ...: a machine whose load changes
                                     changes both alike), best of 3 each; and the same in
                                     this process: packets / (first packet to last write,
                                     RunResult.seconds), best of 3, and the CPU time of
                                     all its threads (least of 3: what the neighbours'
                                     load does not change much). Before and after, how
                                     much of a second core the process gets (two threads
                                     hashing against one: 2.0 when it is free)

Then, in this process, where the time of `kdp replay -o --log` goes: loading and
compiling the cluster, read, pipeline, write, log: formatting and writing the lines
(kdp/benchmarks/pipeline.py's split loop, CPU time). Packets/s are packets read / seconds.
"""
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import yaml

QUICK = {"services": 1_000, "endpoints": 10_000, "packets": 100_000}
FULL = {"services": 1_000, "endpoints": 10_000, "packets": 1_000_000}
REPEAT = 3


def _kdp(*args):
    return [sys.executable, "-m", "kdp", *map(str, args)]


def _wall(cmd, repeat=REPEAT, before=None, cpu=None):
    """Best wall seconds of `repeat` runs of `cmd` (`before()` runs ahead of each, untimed);
    `cpu`: a list that gets the user + system seconds of the best run."""
    best = best_cpu = None
    for _ in range(repeat):
        if before is not None:
            before()
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        run = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=900)
        dt = time.perf_counter() - t
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if run.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, cmd))}: exit {run.returncode}: "
                               f"{run.stderr.decode(errors='replace')[-500:]}")
        if best is None or dt < best:
            best = dt
            best_cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    if cpu is not None:
        cpu.append(best_cpu)
    return best


def _alternating(cmds, repeat=REPEAT):
    """Best wall seconds of each command of `cmds`, their runs interleaved."""
    best = [None] * len(cmds)
    for _ in range(repeat):
        for k, cmd in enumerate(cmds):
            t = time.perf_counter()
            run = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=900)
            dt = time.perf_counter() - t
            if run.returncode != 0:
                raise RuntimeError(f"{' '.join(map(str, cmd))}: exit {run.returncode}: "
                                   f"{run.stderr.decode(errors='replace')[-500:]}")
            best[k] = dt if best[k] is None else min(best[k], dt)
    return best


def _two_threads():
    """How much of a second core this process gets now: two threads hashing (hashlib
    releases the GIL on big buffers) against one doing both; ~2 on an idle 2-core host."""
    import hashlib
    import threading
    data = b"x" * (32 << 20)

    def work():
        for _ in range(3):
            hashlib.sha256(data).digest()
    t = time.perf_counter()
    work()
    work()
    serial = time.perf_counter() - t
    t = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return serial / (time.perf_counter() - t)


def _workers_rows(cap, cluster, out, log, n):
    """--workers 1 against 2: the CLI's wall time and, in process, packets from the first
    packet to the last write (RunResult.seconds); runs alternating, best of REPEAT."""
    from kdp.benchmarks.pipeline import NODE
    from kdp.replay import replay
    rows = []
    base = ["replay", cap, "--cluster", cluster, "--node", NODE, "--no-progress"]
    for name, extra in (("-o out.pcap", ["-o", out]), ("-o out.pcap --log LOG", ["-o", out, "--log", log])):
        cli = _alternating([_kdp(*base, *extra, "--workers", w) for w in (1, 2)])
        inproc = [None, None]
        cpu = [None, None]
        notices = set()
        for _ in range(REPEAT):
            for k, w in enumerate((1, 2)):
                c = time.process_time()
                r = replay(cap, out, cluster=[cluster], node=NODE, log=log if "--log" in extra else None,
                           workers=w)
                c = time.process_time() - c         # every thread's, the data plane's build too
                notices.update(x for x in r.notices if x.startswith("--workers"))
                inproc[k] = r.seconds if inproc[k] is None else min(inproc[k], r.seconds)
                cpu[k] = c if cpu[k] is None else min(cpu[k], c)
        rows.append({"what": f"kdp replay {name}", "cli_seconds": cli,
                     "in_process_packets_per_s": [n / s for s in inproc], "in_process_cpu_seconds": cpu,
                     "cli_ratio": cli[0] / cli[1], "in_process_ratio": inproc[0] / inproc[1],
                     "notices": sorted(notices)})
    return rows


def _write_cluster(path, services, endpoints):
    from kdp.benchmarks.pipeline import cluster_docs
    docs = cluster_docs(services, endpoints)
    with open(path, "w") as f:
        yaml.safe_dump_all(docs, f, sort_keys=False)
    return docs


def _empty_capture(path):
    from kdp.benchmarks.synth import write_ipv4_pcap
    import numpy as np
    z = np.zeros(0, dtype=np.int64)
    write_ipv4_pcap(path, z, z, z, z, z, z, z, z, z, z)


def _tcpdump(inp, out, cpu):
    """tcpdump -r IN -w OUT; its output is removed before each run (untimed), so that it
    writes a new file, as kdp does (kdp removes an existing output itself, in its time)."""
    from kdp.benchmarks.peers import PeerUnavailable
    if shutil.which("tcpdump") is None:
        raise PeerUnavailable("the tcpdump program is not on PATH")

    def remove():
        if os.path.exists(out):
            os.unlink(out)
    return _wall(["tcpdump", "-r", inp, "-w", out], before=remove, cpu=cpu)


def run(quick=False):
    from kdp.benchmarks.peers import attempt
    from kdp.benchmarks.pipeline import NODE, _targets, synth_capture, _replay_split
    from kdp.control import Cluster, compile as compile_cluster
    size = QUICK if quick else FULL
    res = {"size": size, "runs": [], "startup": [], "peers_not_run": []}
    with tempfile.TemporaryDirectory(prefix="kdp-bench-replay-") as tmp:
        cluster = os.path.join(tmp, "cluster.yaml")
        docs = _write_cluster(cluster, size["services"], size["endpoints"])
        tables = compile_cluster(Cluster.from_documents(docs, node=NODE))
        cap = os.path.join(tmp, "in.pcap")
        res["capture"] = synth_capture(cap, size["packets"], tables, _targets(docs))
        n = size["packets"]
        out, log = os.path.join(tmp, "out.pcap"), os.path.join(tmp, "log.jsonl")
        base = ["replay", cap, "--cluster", cluster, "--node", NODE, "--no-progress"]
        for name, extra in (("kdp replay -o out.pcap", ["-o", out]),
                            ("kdp replay -o out.pcap --log LOG", ["-o", out, "--log", log]),
                            ("kdp replay (no output)", [])):
            cpu = []
            s = _wall(_kdp(*base, *extra), cpu=cpu)
            res["runs"].append({"what": name, "seconds": s, "cpu_seconds": cpu[0], "packets_per_s": n / s})
        res["two_threads_before"] = _two_threads()
        res["workers"] = _workers_rows(cap, cluster, out, log, n)
        res["two_threads_after"] = _two_threads()
        res["load"] = os.getloadavg()
        cpu = []
        s = attempt("tcpdump", lambda: _tcpdump(cap, os.path.join(tmp, "tcpdump.pcap"), cpu),
                    res["peers_not_run"])
        if s is not None:
            res["runs"].append({"what": "tcpdump -r IN -w OUT", "seconds": s, "cpu_seconds": cpu[0],
                                "packets_per_s": n / s})
        empty = os.path.join(tmp, "empty.pcap")
        _empty_capture(empty)
        startups = [("no cluster", None)]
        sample = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                              "pcaps", "sample-cluster")
        if os.path.isdir(sample):       # a checkout (pip install . leaves the samples out)
            startups.append(("the sample cluster (pcaps/sample-cluster)", sample))
        startups.append((f"{size['services']:,} Services (YAML)", cluster))
        if not quick:
            big = os.path.join(tmp, "big.yaml")
            _write_cluster(big, 10_000, 100_000)
            startups.append(("10,000 Services (YAML)", big))
        for name, path in startups:
            node = "node-1" if path == sample else NODE
            args = ["replay", empty, "--no-progress"] + (["--cluster", path, "--node", node] if path else [])
            res["startup"].append({"what": name, "seconds": _wall(_kdp(*args))})
        t = time.perf_counter()
        compile_cluster(Cluster.load([cluster], node=NODE))
        res["load_compile_s"] = time.perf_counter() - t
        from kdp.dataplane import Dataplane
        split = _replay_split(cap, out, Dataplane(tables), log=log)
        res["split_s"] = split
        res["split_per_packet_ns"] = {k: v / n * 1e9 for k, v in split.items()}
    return res


def main(args):
    import json
    res = run(quick=getattr(args, "quick", False))
    if getattr(args, "json", False):
        print(json.dumps(res, indent=2))
        return 0
    from kdp.commands.common import console
    from rich.table import Table
    con = console()
    n = res["size"]["packets"]
    tb = Table(title=f"kdp replay from the command line, {n:,} packets, "
                     f"{res['size']['services']:,} Services (wall time, best of {REPEAT})")
    for c in ("what", "seconds", "CPU seconds", "M packets/s"):
        tb.add_column(c, justify="left" if c == "what" else "right")
    for r in res["runs"]:
        tb.add_row(r["what"], f"{r['seconds']:.3f}", f"{r['cpu_seconds']:.3f}",
                   f"{r['packets_per_s'] / 1e6:.2f}")
    con.print(tb)
    tb = Table(title="--workers 1 against --workers 2 (flows sharded), runs alternating, best of "
                     f"{REPEAT}; load {res['load'][0]:.2f}; two threads ran at {res['two_threads_before']:.2f}x "
                     f"/ {res['two_threads_after']:.2f}x one (before / after; 2.0: a free second core)")
    for c in ("what", "CLI s (1 / 2)", "CLI ratio", "in process M packets/s (1 / 2)", "in process ratio",
              "in process CPU s (1 / 2)"):
        tb.add_column(c, justify="left" if c == "what" else "right")
    for r in res["workers"]:
        tb.add_row(r["what"], f"{r['cli_seconds'][0]:.3f} / {r['cli_seconds'][1]:.3f}", f"{r['cli_ratio']:.2f}x",
                   " / ".join(f"{x / 1e6:.2f}" for x in r["in_process_packets_per_s"]),
                   f"{r['in_process_ratio']:.2f}x",
                   " / ".join(f"{x:.3f}" for x in r["in_process_cpu_seconds"]))
    con.print(tb)
    for r in res["workers"]:
        for note in r["notices"]:
            con.print(f"notice ({r['what']}): {note}")
    tb = Table(title="start-up: kdp replay of a capture without packets (wall)")
    tb.add_column("cluster")
    tb.add_column("seconds", justify="right")
    for r in res["startup"]:
        tb.add_row(r["what"], f"{r['seconds']:.3f}")
    con.print(tb)
    split = res["split_per_packet_ns"]
    con.print("in-process, ns a packet (CPU): " + ", ".join(f"{k} {v:.0f}" for k, v in split.items())
              + f"; loading and compiling the cluster {res['load_compile_s']:.3f} s")
    from kdp.benchmarks.peers import print_not_run
    print_not_run(res["peers_not_run"])
    return 0
