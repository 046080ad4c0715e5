"""`kdp bench SUITE --plot FILE.png`: the suite's results drawn with matplotlib.

A suite's report (what --json prints) holds lists of rows, each row a dict of labels
(strings: the table, the query kind, the case) and figures (numbers). Every list
whose rows carry rates (keys ending in `_per_s`, or peers' names with a per-second
figure, as the LPM suite's single-lookup rows) becomes one panel: a horizontal bar
per row and rate, kdp and its peers side by side on one logarithmic axis (when the
figures span 100 times or more). A dict that times something (a count such as
"packets" or "queries" beside "*_s" seconds, or a "seconds" dict per case, as the
pipeline's tunnel cases) becomes a panel of count / seconds. Figures without a rate
(memory, build times alone) are left out: the tables print them.
"""

import re

PEER_KEYS = ("kdp", "pytricia", "py-radix", "dict", "linux", "dpkt", "scapy", "tcpdump", "dnspython", "nca")
PEERS = set(PEER_KEYS[1:])


def _rate_keys(row):
    return [k for k, v in row.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
            and (k.endswith("per_s") or k in PEER_KEYS)]


def _label(row):
    return " ".join(str(v) for k, v in row.items() if isinstance(v, str))


COUNT_KEYS = ("packets", "queries", "answered", "lookups", "flows")


def _timed_rates(d):
    """count / seconds for each timed figure of a dict that says how many things it timed
    (a "packets"/"queries"/... count beside "*_s" seconds, or a "seconds" dict)."""
    count = next((d[k] for k in COUNT_KEYS if isinstance(d.get(k), (int, float)) and d[k] > 0), None)
    if count is None:
        return {}
    out = {}
    for k, v in d.items():
        if k.endswith("_s") and isinstance(v, (int, float)) and v > 0:
            out[k[:-2]] = count / v
    seconds = d.get("seconds")
    if isinstance(seconds, dict):
        out.update({k: count / v for k, v in seconds.items()
                    if isinstance(v, (int, float)) and v > 0})
    return out


def panels(report, prefix=""):
    """(title, [(row label, {rate key: value})]) for every list of rows with rates, and
    for every dict with timed figures (count / seconds)."""
    out = []
    if isinstance(report, dict):
        timed = _timed_rates(report)
        if timed:
            out.append((prefix.rstrip(" /") or "rates", [(name, {"per_s": v}) for name, v in timed.items()]))
        for key, value in report.items():
            if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
                rows = [(_label(r), {k: float(r[k]) for k in _rate_keys(r)}) for r in value]
                rows = [(label, rates) for label, rates in rows if rates]
                if rows:
                    out.append((f"{prefix}{key}", rows))
            elif isinstance(value, dict):
                out += panels(value, prefix=f"{prefix}{key} / ")
    return out


def plot(report, path, title):
    """Write the report's panels to `path` (PNG); returns how many panels were drawn.
    Raises KdpError when matplotlib is missing or nothing in the report is a rate."""
    from kdp.errors import KdpError
    try:
        import matplotlib
        matplotlib.use("Agg")           # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise KdpError("--plot needs matplotlib: pip install 'kdp[plot]'") from None
    found = panels(report)
    if not found:
        raise KdpError(f"{title}: the report has no rates to plot")
    heights = [max(1.5, 0.35 * sum(len(rates) for _, rates in rows) + 1) for _, rows in found]
    fig, axes = plt.subplots(len(found), 1, figsize=(10, sum(heights)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (name, rows) in zip(axes[:, 0], found):
        labels, values = [], []
        for label, rates in rows:
            for key, value in rates.items():
                labels.append(label if len(rates) == 1 else f"{label} · {key}")
                values.append(value)
        # kdp's bars blue, its peers' orange
        ax.barh(range(len(values)), values,
                color=["#ff7f0e" if set(re.split(r"[ ·,]+", l)) & PEERS else "#1f77b4" for l in labels])
        ax.set_yticks(range(len(values)), labels, fontsize=8)
        ax.invert_yaxis()
        if max(values) > 0 and min(v for v in values if v > 0) * 100 < max(values):
            ax.set_xscale("log")
        ax.set_xlabel("per second")
        ax.set_title(name, fontsize=10)
    fig.suptitle(title)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise KdpError(f"{path}: cannot write the plot: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return len(found)
