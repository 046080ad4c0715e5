"""The library as the README shows it: its Python example runs as written, the compiled
classes' stubs list their public API, and results() reads a batch back as enums,
addresses and names."""
import ast
import inspect
import os
import re
from pathlib import Path

import pytest

import kdp
from kdp.reasons import Reason, Verdict

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_batch_example_runs(capsys):
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        exec(compile(block, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    words = capsys.readouterr().out.split()
    # to the local backend's pod port, or in IP-in-IP to node-2's over the uplink
    assert words[:4] in (["forward", "forwarded", "shop/web:http", "web-1"],
                         ["forward", "forwarded_ipip", "shop/web:http", "uplink"])


STUBS = {kdp.Batch: "kdp/_fast/packet.pyi", kdp.Lpm4: "kdp/_fast/lpm.pyi", kdp.Lpm6: "kdp/_fast/lpm6.pyi",
         kdp.Conntrack: "kdp/_fast/conntrack.pyi", kdp.CaptureWriter: "kdp/io/pcapwrite.pyi"}


@pytest.mark.parametrize("cls", list(STUBS), ids=lambda c: c.__name__)
def test_each_public_compiled_class_has_its_api_in_a_stub(cls):
    tree = ast.parse((ROOT / STUBS[cls]).read_text())
    body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    stubbed = {n.name for n in body.body if isinstance(n, ast.FunctionDef)} | \
        {t.target.id for t in body.body if isinstance(t, ast.AnnAssign)}
    public = {name for name in vars(cls) if not name.startswith("_")}
    assert public <= stubbed, sorted(public - stubbed)


def test_results_names_what_the_pipeline_decided():
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    dp = kdp.Dataplane.from_snapshot([ROOT / "pcaps" / "sample-cluster"], node="node-1")
    b = kdp.Batch(4)
    b.append(bytes(Ether() / IP(src="10.244.1.50", dst="10.96.0.99") / UDP(sport=1, dport=9)))
    b.append(b"\x00" * 10)                       # a truncated frame
    dp.process(b)
    fwd, bad = kdp.results(b, dp)
    assert fwd.dst == __import__("ipaddress").ip_address("10.96.0.99") and fwd.in_port == "default/client"
    assert (bad.verdict, bad.reason, bad.src) == (Verdict.DROP, Reason.TRUNCATED_L2, None)
    assert "process" in inspect.getdoc(kdp.Dataplane) and inspect.getdoc(kdp.Dataplane.process)
