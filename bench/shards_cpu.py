"""CPU time by thread of `kdp replay --workers 1` against `--workers 2`, in process.

What a shared or loaded machine does not change much: the CPU each thread spends (its
wall time depends on whether the neighbours leave it a core). For each run: its total
CPU and the replay's thread's, both without the data plane's build, and the bound two
free cores would give if the threads overlapped perfectly: max(the busiest thread's CPU,
all threads' CPU / 2). One worker's CPU over that bound is the most two workers could
gain here; bench/README.md, "A second core", quotes it.

    PYTHONPATH=. python bench/shards_cpu.py CAPTURE CLUSTER NODE [--log] [--rounds 3] [--dir DIR]

CAPTURE, CLUSTER, NODE: for the benchmark's workload, those `kdp bench replay` generates
(kdp/benchmarks/replay.py: FULL, _write_cluster, synth_capture; node-0). The output and
the log go to a temporary directory. The threads are timed by wrapping kdp.shards'
worker loops (_Worker._run, ChunkedRun._worker; time.thread_time), so the numbers are of
the checkout on PYTHONPATH (a tree without ChunkedRun is timed as before). A replay in
chunks (a classic pcap, with --log too) also prints its CPU by phase (ChunkRun.phase_cpu:
index and key on worker 0, process, format and the log's lines by worker, the writer
thread's write of the records and of the log).
"""
import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time


def _instrument(acc):
    import kdp.shards as shards
    replay_mod = sys.modules["kdp.replay"]
    build = replay_mod._build_dataplane

    def timed_build(*a, **kw):
        t = time.thread_time()
        try:
            return build(*a, **kw)
        finally:
            acc["build"] += time.thread_time() - t
    replay_mod._build_dataplane = timed_build
    init = shards.ShardedRun.__init__

    def timed_init(self, *a, **kw):        # (the workers' pipelines: part of the build)
        t = time.thread_time()
        try:
            init(self, *a, **kw)
        finally:
            acc["build"] += time.thread_time() - t
    shards.ShardedRun.__init__ = timed_init
    loop = shards._Worker._run

    def timed_loop(self):
        t = time.thread_time()
        try:
            loop(self)
        finally:
            acc[f"worker{self.me}"] += time.thread_time() - t
    shards._Worker._run = timed_loop
    if hasattr(shards, "ChunkedRun"):           # (the chunked run: worker 0 is the replay's thread)
        cinit = shards.ChunkedRun.__init__

        def timed_cinit(self, *a, **kw):    # (the workers' pipelines: part of the build)
            t = time.thread_time()
            try:
                cinit(self, *a, **kw)
            finally:
                acc["build"] += time.thread_time() - t
        shards.ChunkedRun.__init__ = timed_cinit
        cloop = shards.ChunkedRun._worker

        def timed_cloop(run, me):
            t = time.thread_time()
            try:
                cloop(run, me)
            finally:
                acc[f"worker{me}"] += time.thread_time() - t
        shards.ChunkedRun._worker = staticmethod(timed_cloop)
        creplay = shards.ChunkedRun.replay

        def kept_replay(self, *a, **kw):    # (its phases' CPU: printed with the run)
            try:
                return creplay(self, *a, **kw)
            finally:
                acc["phases"] = self.run.phase_cpu
        shards.ChunkedRun.replay = kept_replay


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture")
    ap.add_argument("cluster")
    ap.add_argument("node")
    ap.add_argument("--log", action="store_true", help="write the verdict log too")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each, alternating (default 3)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--dir", help="write the output and the log here (replacing them) rather than in a new "
                                  "temporary directory, e.g. a tmpfs (/dev/shm): on this machine's ext4 /tmp the "
                                  "kernel's buffered writes of the same 700 MB cost 0.2 to 1.9 s of CPU from run "
                                  "to run (one worker's as much as the writer thread's)")
    args = ap.parse_args(argv)
    import kdp.replay  # noqa: F401  (the module, for _instrument)
    replay = sys.modules["kdp.replay"].replay
    from collections import defaultdict
    acc = defaultdict(float)
    _instrument(acc)
    rows = defaultdict(list)
    with (tempfile.TemporaryDirectory(prefix="kdp-shards-cpu-") if args.dir is None
          else contextlib.nullcontext(args.dir)) as tmp:
        for _ in range(args.rounds):
            for w in (1, 2):
                acc.clear()
                t0, c0 = time.thread_time(), time.process_time()
                r = replay(args.capture, os.path.join(tmp, "out.pcap"), cluster=[args.cluster], node=args.node,
                           log=os.path.join(tmp, "log.jsonl") if args.log else None, workers=w,
                           batch_size=args.batch_size)
                main_cpu = time.thread_time() - t0 - acc["build"]
                total = time.process_time() - c0 - acc["build"]
                workers = [acc[f"worker{k}"] for k in range(w) if f"worker{k}" in acc] if w > 1 else []
                bound = max([total / 2, main_cpu] + workers) if w > 1 else total
                rows[w].append((r.seconds, total, main_cpu, bound))
                print(f"--workers {w}: in process {r.seconds:.3f} s; CPU {total:.3f} s, the replay's thread "
                      f"{main_cpu:.3f}" + (", workers " + " ".join(f"{x:.3f}" for x in workers) if workers else "")
                      + (f"; bound on 2 free cores {bound:.3f} s" if w > 1 else "")
                      + ("" if not [n for n in r.notices if n.startswith("--workers")] else f" ({r.notices})"),
                      flush=True)
                if w > 1 and "phases" in acc:
                    print("  in chunks, CPU s by phase: " + "; ".join(
                        f"{k} " + (" + ".join(f"{x:.3f}" for x in v) if isinstance(v, list) else f"{v:.3f}")
                        for k, v in acc["phases"].items()), flush=True)
    print(f"load {os.getloadavg()[0]:.2f}")
    for k, name in enumerate(("in process s", "CPU s", "replay's thread CPU s", "bound s")):
        one = [x[k] for x in rows[1]]
        two = [x[k] for x in rows[2]]
        print(f"{name}: one worker min {min(one):.3f} median {statistics.median(one):.3f}; "
              f"two workers min {min(two):.3f} median {statistics.median(two):.3f}")
    print("one worker's CPU / two workers' bound, by round: "
          + " ".join(f"{a[1] / b[3]:.2f}x" for a, b in zip(rows[1], rows[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
