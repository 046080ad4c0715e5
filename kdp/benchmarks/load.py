"""The machine's load while a benchmark ran, so that a figure can be reproduced.

A rate measured on a core that other work also took is not the core's rate. Two
witnesses, both cheap and both readable without privileges:

* /proc/loadavg before and after the run (1/5/15-minute averages, runnable/total);
* the CPU time this process (and the children it waited for: a peer run as a program)
  spent against the wall time that passed. A single-threaded measurement that had its
  core to itself spends ~1 CPU second a wall second; when another process took the core,
  the ratio falls. Below DISTURBED (0.9) a figure is labelled "disturbed".

`Watch` measures a whole run (kdp/commands/bench.py wraps every suite in one);
`timed` gives the same ratio for one timed region, for suites that label their rows.
"""
import os
import resource
import time

#: CPU time / wall time under which a measurement is labelled disturbed
DISTURBED = 0.9


def loadavg():
    """The first four fields of /proc/loadavg ("1.02 0.88 0.61 3/412"), or "" when absent."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:4])
    except OSError:
        return ""


def _cpu_s():
    """CPU seconds (user + system) of this process and of the children it has waited for."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class Watch:
    """Load of one run: `start()`, then `stop()` returns a dict
    {loadavg_before, loadavg_after, wall_s, cpu_s, cpu_per_wall, disturbed, cores}."""

    def __init__(self):
        self.before = loadavg()
        self.cpu0 = _cpu_s()
        self.t0 = time.perf_counter()

    def stop(self):
        wall = time.perf_counter() - self.t0
        cpu = _cpu_s() - self.cpu0
        ratio = cpu / wall if wall > 0 else 0.0
        return {"loadavg_before": self.before, "loadavg_after": loadavg(), "wall_s": wall,
                "cpu_s": cpu, "cpu_per_wall": ratio, "disturbed": ratio < DISTURBED,
                "cores": os.cpu_count()}


def describe(load):
    """One line for people: what the machine did while the run ran."""
    verdict = (f"DISTURBED (CPU/wall < {DISTURBED}: other work took the core; rerun "
               f"on a quiet machine before quoting these figures)" if load["disturbed"]
               else "undisturbed")
    return (f"load while it ran: /proc/loadavg {load['loadavg_before']} before, "
            f"{load['loadavg_after']} after ({load['cores']} cores); CPU {load['cpu_s']:.2f} s "
            f"in {load['wall_s']:.2f} s wall = {load['cpu_per_wall']:.2f}: {verdict}")


def timed(fn):
    """(wall seconds, CPU seconds of this thread) of one call of fn(): the CPU clock is
    the thread's, so a timed region's own ratio is not blurred by the rest of the run."""
    c0 = time.thread_time()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.thread_time() - c0


def label(wall, cpu):
    """"" for a region that had its core, else " (disturbed: CPU/wall 0.73)"."""
    if wall <= 0 or cpu / wall >= DISTURBED:
        return ""
    return f" (disturbed: CPU/wall {cpu / wall:.2f})"
