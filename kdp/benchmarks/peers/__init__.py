"""The peers kdp is measured beside in `kdp bench`: foreign libraries, programs, the kernel.

    capture_readers   dpkt, scapy (Python packages), tcpdump (a program)    `kdp bench read`
    lpm_tries         pytricia, py-radix (Python packages)                  `kdp bench lpm`
    linux_conntrack   Linux nf_conntrack: root, `ip`, `nft`, a private      `kdp bench conntrack`
                      network namespace, the host's conntrack limits raised for the run
    dnspython_responder  a DNS responder built on dnspython (Python package)  `kdp bench dns`
                      (also the reference the DNS tests compare kdp's answers with)
    nca               network-config-analyzer (a program, in .venv-nca)     `kdp bench policy`

Who imports them: the suites of kdp.benchmarks, inside the functions that run a
measurement (so importing a suite or a workload imports none of this package), and bench/.
Nothing else in kdp does (tests/test_bench_isolation.py). A foreign package is imported
only when its peer runs.

A peer that cannot run here raises PeerUnavailable (package not installed, program not on
PATH, no root); one that started and failed raises PeerFailed with what it printed on
stderr. The suite calls each peer through `attempt`, which leaves a peer that raised out
of the table and records why in the suite's "peers_not_run" list, printed under the
table (`print_not_run`) and given in --json: a missing or failing peer never stops the
kdp figures, and never ends in a traceback.
"""
import sys

__all__ = ["PeerFailed", "PeerUnavailable", "attempt", "missing_package", "print_not_run"]

#: characters of a failed peer's stderr that are kept (its end: where the error is)
STDERR_KEPT = 4000


class PeerUnavailable(Exception):
    """The peer cannot run on this machine; the message says why."""


class PeerFailed(Exception):
    """The peer started and failed; `stderr` holds what it printed there."""

    def __init__(self, reason: str, stderr: str = ""):
        super().__init__(reason)
        self.stderr = stderr or ""


def missing_package(name: str) -> PeerUnavailable:
    return PeerUnavailable(f"the Python package '{name}' is not installed "
                           f"(pip install 'kdp[bench]' brings it)")


def attempt(peer: str, fn, not_run: list):
    """fn()'s result; None when the peer could not run or failed, after recording why in
    `not_run` (once per peer) as {"peer", "status": "unavailable"|"failed", "reason",
    "stderr"}."""
    try:
        return fn()
    except PeerUnavailable as exc:
        entry = {"peer": peer, "status": "unavailable", "reason": str(exc), "stderr": ""}
    except PeerFailed as exc:
        entry = {"peer": peer, "status": "failed", "reason": str(exc),
                 "stderr": exc.stderr[-STDERR_KEPT:]}
    except Exception as exc:  # noqa: BLE001 - a peer's own error must not stop the suite
        entry = {"peer": peer, "status": "failed", "reason": f"{type(exc).__name__}: {exc}",
                 "stderr": ""}
    if not any(e["peer"] == peer for e in not_run):
        not_run.append(entry)
    return None


def print_not_run(not_run: list, file=None) -> None:
    """One line per peer left out of the table, then its stderr, indented."""
    file = sys.stdout if file is None else file
    for e in not_run:
        verb = "not run" if e["status"] == "unavailable" else "failed, left out"
        print(f"{e['peer']}: {verb}: {e['reason']}", file=file)
        text = e["stderr"].rstrip()
        if text:
            print(f"  its stderr{' (end)' if len(text) >= STDERR_KEPT else ''}:", file=file)
            for line in text.splitlines():
                print("  | " + line, file=file)
