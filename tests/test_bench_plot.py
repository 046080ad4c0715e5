"""kdp bench --plot: the rates of a suite's report drawn with matplotlib. The panels are
checked against the report they come from; the PNG is read back by matplotlib."""
import subprocess
import sys

import pytest

from kdp.benchmarks.plot import panels, plot
from kdp.errors import KdpError

REPORT = {
    "batch": [{"table": "k8s", "queries": "uniform", "lookups_per_s": 6.0e8, "best_lookups_per_s": 7.0e8},
              {"table": "v6", "queries": "hit90", "lookups_per_s": 1.0e8, "best_lookups_per_s": 1.2e8}],
    "single": [{"table": "k8s", "kdp": 9.0e6, "pytricia": 3.0e6}],
    "build": [{"table": "k8s", "prefixes": 1000, "build_s": 0.01}],
    "tunnels": {"packets": 1000, "seconds": {"plain": 0.001, "encap": 0.002}},
}


def test_panels_are_the_reports_rates_and_nothing_else():
    got = dict(panels(REPORT))
    assert got["batch"] == [("k8s uniform", {"lookups_per_s": 6.0e8, "best_lookups_per_s": 7.0e8}),
                            ("v6 hit90", {"lookups_per_s": 1.0e8, "best_lookups_per_s": 1.2e8})]
    assert got["single"] == [("k8s", {"kdp": 9.0e6, "pytricia": 3.0e6})]
    assert got["tunnels"] == [("plain", {"per_s": 1.0e6}), ("encap", {"per_s": 5.0e5})]
    assert "build" not in got                   # seconds without a count: no rate


def test_plot_writes_a_png_with_one_panel_per_list_of_rates(tmp_path):
    import matplotlib.image                     # the test extra has it (run-tests.sh installs it)
    path = tmp_path / "bench.png"
    assert plot(REPORT, path, "kdp bench lpm") == 3
    image = matplotlib.image.imread(str(path))
    assert image.shape[0] > 200 and image.shape[1] > 500


def test_a_report_without_rates_and_a_path_that_is_not_png_are_clear_errors(tmp_path):
    with pytest.raises(KdpError, match="no rates"):
        plot({"build": [{"table": "x", "build_s": 1.0}]}, tmp_path / "x.png", "t")
    run = subprocess.run([sys.executable, "-m", "kdp", "bench", "lpm", "--quick", "--plot", str(tmp_path / "x.jpg")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "PNG" in run.stderr
