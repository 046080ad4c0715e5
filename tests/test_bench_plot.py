"""kdp bench --plot: the PNG is written and holds what the suite measured (matplotlib's
own reading of the file back; the drawn lines' data are the JSON's numbers)."""
import json
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def kdp(*args):
    return subprocess.run([sys.executable, "-m", "kdp", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_pipeline_plot_draws_packets_per_second_against_batch_size(tmp_path, monkeypatch):
    from kdp.benchmarks import plot as plotmod
    res = {"size": {"services": 10}, "pipeline": {"by_batch": [
        {"batch": 16, "packets_per_s": 2e6}, {"batch": 256, "packets_per_s": 9e6}]}}
    drawn = {}
    real = plotmod._pipeline

    def spy(plt, r):
        fig, axes = real(plt, r)
        line = axes[0].get_lines()[0]
        drawn["x"], drawn["y"] = list(line.get_xdata()), list(line.get_ydata())
        return fig, axes
    monkeypatch.setitem(plotmod.PLOTS, "pipeline", spy)
    out = tmp_path / "p.png"
    plotmod.plot("pipeline", res, out)
    assert drawn == {"x": [16, 256], "y": [2.0, 9.0]}
    img = mpimg.imread(out)
    assert img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 0     # a picture, not blank


def test_bench_lpm_plot_from_the_command_line(tmp_path):
    out = tmp_path / "lpm.png"
    run = kdp("bench", "lpm", "--quick", "--json", "--plot", out)
    assert run.returncode == 0, run.stderr
    res = json.loads(run.stdout)
    assert res["batch"] and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert mpimg.imread(out).std() > 0


@pytest.mark.parametrize("args, message", [(["dns", "--plot", "x.png"], "--plot draws"),
                                           (["lpm", "--quick", "--plot", "/nonexistent/dir/x.png"], "cannot write the plot")])
def test_plot_errors_are_clear(args, message):
    run = kdp("bench", *args)
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr
