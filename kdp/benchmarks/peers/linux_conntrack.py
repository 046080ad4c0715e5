"""Linux nf_conntrack's CPU cost per packet, measured by difference.

The reference kdp's flow table is compared with in `kdp bench conntrack`, and
a peer in the sense of kdp/benchmarks/peers/__init__.py (run only by that suite).
One process sends UDP datagrams over loopback inside a private network
namespace, with the same packets twice: once with conntrack on (an nftables
rule that matches on ``ct state``, so every packet is looked up, its UDP state
and timeout refreshed, new flows created and confirmed) and once with
``notrack`` at the raw priority; an input rule drops the datagrams in both
runs so no socket or ICMP work follows.  The difference in the process's CPU
time (user + system, read from CLOCK_PROCESS_CPUTIME_ID: nanosecond resolution,
where os.times() counts 10 ms ticks, coarser than a quick run) per packet is what
conntrack costs the kernel:

* ``new``: the first packet of each of N distinct flows (allocation, hashing
  both directions, insert at confirm);
* ``established``: packets of random flows among the N live ones (the same sequence
  again until the phase has taken at least 50 ms of CPU, so that a clock that moves in
  scheduler ticks, or a worker that lost its core, still gives a per-packet figure).

The measurement needs root, ``ip`` and ``nft``.  It raises the host's
``nf_conntrack_max`` and hash size to fit N flows for the run and puts both
back afterwards.  Per-packet costs move with the machine's load like every
figure here; the difference method cancels the socket and loopback path,
not the noise, so the run is repeated and the medians are reported.

When it cannot run here, `measure` raises PeerUnavailable; when a worker fails
(exit status, unreadable output, fewer flows tracked than sent), PeerFailed with
the worker's stderr, in which the worker names the command or the send that
failed. The host's limits are put back either way.
"""
import json
import os
import random
import shutil
import subprocess
import sys
import time
import uuid

from kdp.benchmarks.peers import PeerFailed, PeerUnavailable

SYSCTL = "/proc/sys/net/netfilter/"
DPORT_LO, DPORT_HI = 1000, 51000
#: CPU time the established phase runs at least (it repeats its packets until then)
MIN_PHASE_NS = 50_000_000
MAX_ROUNDS = 1000


def _tool(name):
    # root's tools live in sbin, which a user's PATH may leave out
    path = os.environ.get("PATH", os.defpath) + ":/usr/sbin:/sbin"
    return shutil.which(name, path=path) or name


def available():
    """None when the measurement can run here, else why not."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, nftables)"
    for tool in ("ip", "nft"):
        if shutil.which(_tool(tool)) is None:
            return f"needs the '{tool}' command"
    if not os.path.exists(SYSCTL + "nf_conntrack_max"):
        return "nf_conntrack is not available in this kernel"
    return None


def _ruleset(tracked):
    drop = (f"chain in {{ type filter hook input priority 0; "
            f"udp dport {DPORT_LO}-{DPORT_HI} drop; }}; ")
    if tracked:
        track = "chain out { type filter hook output priority 0; ct state new,established accept; }; "
    else:
        track = "chain raw { type filter hook output priority -300; notrack; }; "
    return "table ip kdpbench { " + drop + track + "}"


def _destinations(n):
    # one distinct flow per destination (address in 127/8, port), one source socket
    return [("127.%d.%d.%d" % (1 + (i >> 16) % 250, (i >> 8) & 255, i & 255),
             DPORT_LO + i % (DPORT_HI - DPORT_LO)) for i in range(n)]


def cpu_ns():
    """CPU time of this process (user + system), in nanoseconds."""
    return time.process_time_ns()


class WorkerError(Exception):
    """What failed inside the namespace, said in one message (the worker's stderr)."""


def _run_tool(argv):
    run = subprocess.run(argv, capture_output=True, text=True)
    if run.returncode != 0:
        raise WorkerError(f"`{' '.join(argv)}` exited with status {run.returncode}: "
                          f"{(run.stderr or run.stdout).strip()}")


def _worker(n, packets, tracked, seed):
    """Runs inside the namespace: returns the CPU ns per packet of both phases and the
    flows the namespace's conntrack holds at the end."""
    import socket
    _run_tool([_tool("ip"), "link", "set", "lo", "up"])
    _run_tool([_tool("nft"), _ruleset(tracked)])
    dsts = _destinations(n)
    rng = random.Random(seed)
    order = [dsts[rng.randrange(n)] for _ in range(packets)]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    send = s.sendto
    sent = 0
    try:
        t0 = cpu_ns()
        for d in dsts:
            send(b"x", d)
            sent += 1
        t1 = cpu_ns()
        # the established phase goes over `order` until the CPU clock has moved by
        # MIN_PHASE_NS: a few thousand sends are a few ms, and where the clock moves
        # in scheduler ticks (or the worker lost its core) one pass can read 0
        rounds = 0
        while True:
            for d in order:
                send(b"x", d)
                sent += 1
            rounds += 1
            t2 = cpu_ns()
            if t2 - t1 >= MIN_PHASE_NS or rounds >= MAX_ROUNDS:
                break
    except OSError as exc:
        state = ", ".join(f"{k} {_read(k):,}" for k in ("nf_conntrack_count", "nf_conntrack_max")
                          if os.path.exists(SYSCTL + k))
        raise WorkerError(f"sending datagram {sent + 1:,} ({n:,} new flows, then rounds of {packets:,}) "
                          f"({'tracked' if tracked else 'notrack'} run) failed: {exc}; "
                          f"in the namespace: {state}") from None
    return {"new_ns": (t1 - t0) / n, "established_ns": (t2 - t1) / (packets * rounds),
            "established_packets": packets * rounds, "flows_tracked": _read("nf_conntrack_count")}


def _read(name):
    with open(SYSCTL + name) as f:
        return int(f.read())


def _write(name, value):
    with open(SYSCTL + name, "w") as f:
        f.write(str(value))


def _worker_command(n, packets, tracked, seed):
    return [sys.executable, "-m", "kdp.benchmarks.peers.linux_conntrack", "--worker", str(n), str(packets),
            "1" if tracked else "0", str(seed)]


def _in_namespace(n, packets, tracked, seed):
    ns = "kdpct-" + uuid.uuid4().hex[:8]
    what = f"{'tracked' if tracked else 'notrack'} run, {n:,} flows, in network namespace {ns}"
    made = subprocess.run([_tool("ip"), "netns", "add", ns], capture_output=True, text=True)
    if made.returncode != 0:
        raise PeerFailed(f"`ip netns add {ns}` exited with status {made.returncode}",
                         made.stderr)
    try:
        out = subprocess.run([_tool("ip"), "netns", "exec", ns] + _worker_command(n, packets, tracked, seed),
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise PeerFailed(f"the worker ({what}) exited with status {out.returncode}",
                             out.stderr)
        try:
            return json.loads(out.stdout)
        except ValueError:
            raise PeerFailed(f"the worker ({what}) printed no result", out.stderr) from None
    finally:
        subprocess.run([_tool("ip"), "netns", "del", ns], check=False, capture_output=True)


def measure(n=1 << 20, packets=500_000, repeats=3):
    """Median CPU ns per packet that conntrack adds, for new and established
    flows at n live flows, and what each run saw."""
    why = available()
    if why:
        raise PeerUnavailable(why)
    saved = {k: _read(k) for k in ("nf_conntrack_max", "nf_conntrack_buckets")}
    runs = []
    try:
        _write("nf_conntrack_max", max(saved["nf_conntrack_max"], 2 * n))
        _write("nf_conntrack_buckets", max(saved["nf_conntrack_buckets"], n))
        for rep in range(repeats):
            off = _in_namespace(n, packets, False, rep)
            on = _in_namespace(n, packets, True, rep)
            if on["flows_tracked"] < n:
                raise PeerFailed(f"only {on['flows_tracked']:,} of {n:,} flows were tracked "
                                 f"with conntrack on")
            runs.append({"new_ns": on["new_ns"] - off["new_ns"],
                         "established_ns": on["established_ns"] - off["established_ns"],
                         "send_ns_untracked": off["established_ns"],
                         "flows_tracked": on["flows_tracked"],
                         "flows_tracked_notrack": off["flows_tracked"]})
    finally:
        _write("nf_conntrack_buckets", saved["nf_conntrack_buckets"])
        _write("nf_conntrack_max", saved["nf_conntrack_max"])

    def median(key):
        v = sorted(r[key] for r in runs)
        return v[len(v) // 2]
    return {"flows": n, "packets": packets, "runs": runs,
            "new_ns": median("new_ns"), "established_ns": median("established_ns"),
            "send_ns_untracked": median("send_ns_untracked")}


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--worker":
        n, packets, tracked, seed = (int(a) for a in sys.argv[2:])
        try:
            print(json.dumps(_worker(n, packets, bool(tracked), seed)))
        except WorkerError as exc:
            print(f"linux_conntrack worker: {exc}", file=sys.stderr)
            sys.exit(1)
    else:
        n = int(sys.argv[1]) if len(sys.argv) > 1 else 1 << 20
        print(json.dumps(measure(n), indent=1))
