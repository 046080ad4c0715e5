"""What an install ships: the compiled modules' sources (.pyx, .pxd, kernel headers) but
not Cython's generated C (a build product, 15 MB), so build_py (what a wheel holds
besides the extension modules) copies no .c or .html file."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_packaged_files_hold_no_generated_c(tmp_path):
    run = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "-d", str(tmp_path / "lib")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    files = [p.relative_to(tmp_path / "lib").as_posix() for p in (tmp_path / "lib").rglob("*") if p.is_file()]
    assert "kdp/_fast/pipeline.pyx" in files and "kdp/_fast/lpm6_kernels.h" in files
    assert not [f for f in files if f.endswith((".c", ".html"))]

