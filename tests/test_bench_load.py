"""The load line every bench run ends with: CPU time against wall time says whether the
core was the run's own. Checked with a busy loop (a core to itself) and a sleep (no CPU)."""
import time

from kdp.benchmarks import load


def test_a_busy_run_is_undisturbed_and_a_sleeping_one_is_disturbed():
    w = load.Watch()
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:
        pass
    busy = w.stop()
    w = load.Watch()
    time.sleep(0.3)
    idle = w.stop()
    assert busy["cpu_per_wall"] > 0.5 and idle["cpu_per_wall"] < 0.2 and idle["disturbed"]
    assert "DISTURBED" in load.describe(idle) and busy["loadavg_before"].count(" ") == 3
    assert load.label(1.0, 0.5) == " (disturbed: CPU/wall 0.50)" and load.label(1.0, 0.95) == ""
