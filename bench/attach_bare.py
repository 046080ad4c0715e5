"""What the TAP devices allow here: a bare forwarder (bench/tap_forward.c) beside kdp
attach and the kernel path, in the same run, on `kdp bench attach`'s namespaces.

    sudo PYTHONPATH=$PWD python bench/attach_bare.py [--rounds N] [--paths kdp,bare-threads,...]
        [--udp] [--conn] [--json]

Paths, one after another in each round (the order rotates between rounds):
  kdp           `kdp attach` as `kdp bench attach` runs it (the kdp found on PYTHONPATH;
                KDP_ATTACH_ARGS adds arguments to every kdp path)
  kdp:A+B       the same with the arguments A B added (e.g. kdp:--busy-poll=0)
  kdp-main      the same with PYTHONPATH=$KDP_MAIN (a copy of main built alike), if set
  kernel        the router namespace, veth pairs, nft DNAT
  bare-threads  tap_forward threads: a thread per direction, blocking read -> write
  bare-spin     tap_forward spin: a thread per direction, reads retried without sleeping
                for 50 us before a blocking poll() (as kdp's --busy-poll 50)
  bare-poll     tap_forward poll: one thread, poll() then read -> write

The bare forwarder does no NAT: its client talks to the backend's address, not the VIP
(the kernel path and kdp through the ClusterIP). iperf3 TCP one stream (-t 3) always;
--udp adds UDP 64 B at full rate, --conn the connect/accept/close loop (bare paths: to the
backend's address). Beside each figure: the machine's busy cores and the forwarder's
(kdp's process, or tap_forward's) over the steady middle. Not part of kdp.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from kdp.benchmarks import attach as ab

HERE = os.path.dirname(os.path.abspath(__file__))


class BarePath:
    """Two namespaces joined by tap_forward; close() removes them."""

    def __init__(self, mode, binary):
        tag = uuid.uuid4().hex[:6]
        self.client, self.server = f"bc{tag}", f"bs{tag}"
        self.spaces = [self.client, self.server]
        self.procs, self.summary_path = [], None
        cdev, sdev = f"tfc{tag}", f"tfs{tag}"
        fwd = subprocess.Popen([binary, mode, cdev, sdev, "60"], stdout=subprocess.PIPE, text=True)
        self.procs.append(fwd)
        self.kdp_pid = fwd.pid
        try:
            if fwd.stdout.readline().strip() != "ready":
                raise RuntimeError("tap_forward did not start")
            macs = {}
            for ns, dev, ip in ((self.client, cdev, ab.CLIENT), (self.server, sdev, ab.BACKEND)):
                ab._Path._pod(self, ns, dev, ip, "169.254.1.1")
                link = json.loads(ab._sh("ip", "-n", ns, "-j", "link", "show", "dev", dev).stdout)
                macs[ns] = link[0]["address"]
            # no ARP crosses: each side's gateway is the other TAP's MAC, so a frame
            # forwarded untouched is addressed to the device that receives it
            for ns, dev, peer in ((self.client, cdev, self.server), (self.server, sdev, self.client)):
                ab._sh("ip", "-n", ns, "neigh", "replace", "169.254.1.1", "lladdr", macs[peer], "dev", dev,
                       "nud", "permanent")
        except BaseException:
            self.close()
            raise

    def close(self):
        ab._Path.close(self)


def tcp(path, target):
    server = subprocess.Popen([ab._tool("ip"), "netns", "exec", path.server, ab._tool("iperf3"), "-s", "-1", "-J"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    path.procs.append(server)
    time.sleep(0.5)
    client, cpu = ab._steady(path, [ab._tool("iperf3"), "-c", target, "-t", str(ab.SECONDS), "-J"])
    out, _ = server.communicate(timeout=ab.SECONDS + 30)
    if client.returncode != 0:
        raise RuntimeError(f"iperf3: {client.stdout[-300:]}")
    return {"gbit_per_s": json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9, **cpu.columns("tcp")}


def udp(path, target):
    server = subprocess.Popen([ab._tool("ip"), "netns", "exec", path.server, ab._tool("iperf3"), "-s", "-1", "-J"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    path.procs.append(server)
    time.sleep(0.5)
    client, cpu = ab._steady(path, [ab._tool("iperf3"), "-c", target, "-t", str(ab.SECONDS), "-J",
                                    "-u", "-l", "64", "-b", "0"])
    out, _ = server.communicate(timeout=ab.SECONDS + 30)
    if client.returncode != 0:
        raise RuntimeError(f"iperf3: {client.stdout[-300:]}")
    s = json.loads(out)["end"]["sum"]
    return {"packets_per_s": (s["packets"] - s["lost_packets"]) / s["seconds"], **cpu.columns("udp")}


def conn(path, target):
    server = subprocess.Popen([ab._tool("ip"), "netns", "exec", path.server, sys.executable, "-c", ab.ACCEPT_LOOP,
                               ab.BACKEND], stdout=subprocess.PIPE, text=True)
    path.procs.append(server)
    if server.stdout.readline().strip() != "ready":
        raise RuntimeError("the accept loop did not start")
    run, cpu = ab._steady(path, [sys.executable, "-c", ab.CONNECT_LOOP, target, str(ab.SECONDS)])
    if run.returncode != 0:
        raise RuntimeError(f"connect loop: {run.stderr[-300:]}")
    return {"connections_per_s": float(run.stdout), **cpu.columns("conn")}


PATH_ARGS = []          # the arguments of the kdp path being set up (kdp:A+B)


def one(kind, binary, args, tmp):
    env_before = os.environ.get("PYTHONPATH")
    PATH_ARGS[:] = kind.partition(":")[2].split("+") if kind.startswith("kdp:") else []
    if kind == "kdp-main":
        os.environ["PYTHONPATH"] = os.environ["KDP_MAIN"]
    try:
        if kind.startswith("bare-"):
            path, target = BarePath(kind[5:], binary), ab.BACKEND
        else:
            path, target = ab._Path("kernel" if kind == "kernel" else "kdp", tmp), ab.VIP
    finally:
        if env_before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = env_before
    try:
        row = {"path": kind, **tcp(path, target)}
        if args.udp:
            row.update(udp(path, target))
        if args.conn:
            row.update(conn(path, target))
        return row
    finally:
        path.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--paths", default="kdp,kernel,bare-threads,bare-spin,bare-poll")
    ap.add_argument("--udp", action="store_true")
    ap.add_argument("--conn", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    kinds = args.paths.split(",")
    binary = os.path.join(tempfile.gettempdir(), f"tap_forward-{os.getpid()}")
    subprocess.run(["cc", "-O2", "-pthread", "-o", binary, os.path.join(HERE, "tap_forward.c")], check=True)
    extra = os.environ.get("KDP_ATTACH_ARGS", "").split()
    # kdp.benchmarks.attach starts `kdp attach` with a fixed argument list: add ours
    real = subprocess.Popen

    def popen(cmd, *a, **kw):
        if isinstance(cmd, list) and cmd[1:3] == ["-m", "kdp"]:
            cmd = cmd + extra + PATH_ARGS
        return real(cmd, *a, **kw)
    ab.subprocess.Popen = popen
    rows = []
    try:
        for r in range(args.rounds):
            order = kinds[r % len(kinds):] + kinds[:r % len(kinds)]
            for kind in order:
                with tempfile.TemporaryDirectory(prefix="kdp-bare-") as tmp:
                    load = os.getloadavg()[0]
                    try:
                        row = one(kind, binary, args, tmp)
                    except (RuntimeError, subprocess.TimeoutExpired, ValueError, KeyError, OSError) as exc:
                        row = {"path": kind, "error": str(exc)[:300]}
                    row.update(round=r, load=round(load, 2), at=time.strftime("%H:%M:%S", time.gmtime()))
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        os.unlink(binary)
    print("medians:")
    for kind in kinds:
        mine = [x for x in rows if x["path"] == kind and "error" not in x]
        line = {k: round(statistics.median(x[k] for x in mine), 3) for k in
                ("gbit_per_s", "tcp_machine_cores", "tcp_kdp_cores", "packets_per_s", "connections_per_s")
                if mine and all(k in x for x in mine)}
        print(kind, len(mine), json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
