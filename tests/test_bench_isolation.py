"""Benchmarks are not the product: the data plane, its faces and its commands never import
kdp.benchmarks, and the benchmark suites and generators import no peer (foreign package,
program or root-only harness) until a peer runs."""
import ast
import json
import re
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "pcaps"
# the Python packages the peers use (py-radix imports as radix, dnspython as dns)
FOREIGN_PEERS = ("dpkt", "scapy", "pytricia", "radix", "dns")


def modules_after(code: str, cwd) -> list:
    """sys.modules of a fresh interpreter after running `code` (the project's kdp)."""
    probe = code + "\nimport json, sys\nprint('MODULES' + json.dumps(sorted(sys.modules)))\n"
    run = subprocess.run([sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True,
                         timeout=120, env={"PATH": "/usr/local/bin:/usr/bin:/bin",
                                           "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr[-2000:]
    line = next(x for x in run.stdout.splitlines() if x.startswith("MODULES"))
    return json.loads(line[len("MODULES"):])


def benchmark_or_peer_modules(modules):
    return [m for m in modules if m.startswith("kdp.benchmarks")
            or m.split(".")[0] in FOREIGN_PEERS]


def test_importing_kdp_and_its_cli_imports_no_benchmark():
    mods = modules_after("import kdp, kdp.cli, kdp.io\nkdp.cli.build_parser()", ROOT)
    assert "kdp.cli" in mods and "kdp.commands.bench" in mods     # the parser has all commands
    assert benchmark_or_peer_modules(mods) == []


@pytest.mark.parametrize("argv", [
    ["replay", "{pcaps}/sample.pcap", "--cluster", "{pcaps}/sample-cluster", "--node", "node-1",
     "-o", "{tmp}/out.pcap", "--log", "{tmp}/verdicts.jsonl", "--no-progress"],
    ["replay", "{pcaps}/sample.pcapng", "-o", "{tmp}/out.pcapng", "--json"],
    ["show", "services", "--cluster", "{pcaps}/sample-cluster", "--node", "node-1"],
    ["show", "routes", "--cluster", "{pcaps}/sample-cluster", "--node", "node-1", "--json"],
    ["show", "dns", "--cluster", "{pcaps}/sample-cluster", "--node", "node-1"],
    ["bench", "--help"],
], ids=["replay", "replay-json", "show-services", "show-routes-json", "show-dns", "bench-help"])
def test_running_a_command_other_than_a_benchmark_imports_no_benchmark(argv, tmp_path):
    args = [a.format(pcaps=PCAPS, tmp=tmp_path) for a in argv]
    code = ("import contextlib, io, kdp.cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n"
            f"        status = kdp.cli.main({args!r})\n"
            "    except SystemExit as e:\n"
            "        status = e.code\n"
            "assert status == 0, status\n")
    mods = modules_after(code, tmp_path)
    assert f"kdp.commands.{argv[0]}" in mods
    if argv[0] == "replay":
        assert "kdp.io.pcap" in mods and Path(args[args.index("-o") + 1]).stat().st_size > 24
    assert benchmark_or_peer_modules(mods) == []


def test_importing_the_suites_and_generators_imports_no_peer():
    import kdp.benchmarks
    names = [f"kdp.benchmarks.{m.name}" for m in pkgutil.iter_modules(kdp.benchmarks.__path__)
             if m.name != "peers"]
    assert {"kdp.benchmarks.read", "kdp.benchmarks.lpm", "kdp.benchmarks.conntrack",
            "kdp.benchmarks.pipeline", "kdp.benchmarks.dns", "kdp.benchmarks.cluster",
            "kdp.benchmarks.synth"} <= set(names)
    mods = modules_after("import " + ", ".join(names), ROOT)
    assert set(names) <= set(mods)
    assert [m for m in mods if m.startswith("kdp.benchmarks.peers")
            or m.split(".")[0] in FOREIGN_PEERS] == []


def imported_modules(path: Path):
    """Every module name an import statement of the file names, at any depth."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names)


def test_no_module_outside_the_benchmarks_imports_them():
    # deferred imports inside functions count too: only the `bench` command reaches the
    # suites (by name, through importlib, when it runs)
    offenders = []
    sources = [p for p in (ROOT / "kdp").rglob("*.py") if "benchmarks" not in p.parts]
    assert len(sources) > 20
    for path in sources:
        for name in imported_modules(path):
            if name.startswith("kdp.benchmarks") or name.split(".")[0] in FOREIGN_PEERS:
                offenders.append(f"{path.relative_to(ROOT)}: {name}")
    for path in (ROOT / "kdp").rglob("*.pyx"):
        text = path.read_text()
        offenders += [f"{path.relative_to(ROOT)}: {p}" for p in ("kdp.benchmarks",) + FOREIGN_PEERS
                      if re.search(rf"^\s*(import|from)\s+{re.escape(p)}(\.|\s|$)", text, re.M)]
    assert offenders == []
