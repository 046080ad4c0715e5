"""Peer of `kdp bench policy`: network-config-analyzer (`nca`), a NetworkPolicy analyzer.

nca pins exact versions of its dependencies (PyYAML 6.0.2 among them, older than kdp's):
it lives in a virtualenv of its own, .venv-nca at the top of the repository, which
run-tests.sh makes; KDP_NCA names another `nca` executable, else PATH is searched.

`connectivity(manifests, tmpdir, timeout_s)` runs `nca --connectivity` on namespaces,
pods and policies (lists of mappings) and returns its wall seconds and the lines of its
connectivity map, or None when it gave no answer within timeout_s (it is stopped).
PeerUnavailable when nca is not installed; PeerFailed (its stderr kept) when it fails.
"""
import os
import shutil
import subprocess
import time

from kdp.benchmarks.peers import PeerFailed, PeerUnavailable

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def command():
    for cand in (os.environ.get("KDP_NCA"), os.path.join(ROOT, ".venv-nca", "bin", "nca"), shutil.which("nca")):
        if cand and os.path.exists(cand):
            return cand
    raise PeerUnavailable("nca (network-config-analyzer) is not installed: run-tests.sh makes "
                          ".venv-nca, or set KDP_NCA")


def connectivity(namespaces, pods, policies, tmpdir, timeout_s):
    """(seconds, lines) of `nca --connectivity` on the objects; None on a timeout."""
    import yaml
    nca = command()
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    files = {}
    for name, items in (("ns", namespaces), ("pods", pods), ("pol", policies)):
        files[name] = os.path.join(tmpdir, f"nca-{name}.yaml")
        with open(files[name], "w") as f:
            yaml.dump({"apiVersion": "v1", "kind": "List", "items": items}, f, Dumper=dumper)
    out = os.path.join(tmpdir, "nca-out.txt")
    t = time.perf_counter()
    try:
        run = subprocess.run([nca, "--debug", "--connectivity", files["pol"], "-n", files["ns"], "-p", files["pods"],
                              "--output_format", "txt_no_fw_rules", "--file_out", out],
                             capture_output=True, text=True, timeout=timeout_s)
        seconds = time.perf_counter() - t
    except subprocess.TimeoutExpired:
        return None
    finally:
        for path in files.values():
            os.unlink(path)
    lines = 0
    if os.path.exists(out):
        with open(out) as f:
            lines = sum(1 for _ in f)
        os.unlink(out)
    if run.returncode != 0:
        raise PeerFailed(f"nca exited with status {run.returncode} after {seconds:.0f} s", run.stderr)
    return seconds, lines
