"""`kdp bench SUITE --plot FILE.png`: the results of a suite drawn with matplotlib (the
optional extra `plot`): lookups/s against table size (lpm), packets/s against batch size
(pipeline), kdp beside its peers (lpm single lookups, conntrack, read)."""
from kdp.errors import KdpError


def pyplot():
    try:
        import matplotlib
    except ImportError:
        raise KdpError("--plot needs matplotlib: pip install 'kdp[plot]'") from None
    matplotlib.use("Agg")               # files only: no display needed
    import matplotlib.pyplot as plt
    return plt


def _lpm(plt, res):
    sizes = {b["table"]: b["prefixes"] for b in res["build"]}
    family = {b["table"]: "IPv6" if "IPv6" in b.get("desc", "") else "IPv4" for b in res["build"]}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))

    def series(ax, rows, label):
        # one line per address family: IPv4 and IPv6 tables are different structures
        for fam, style in (("IPv4", "o-"), ("IPv6", "s--")):
            pts = sorted((sizes[t], y) for t, y in rows if family[t] == fam)
            if pts:
                ax.plot([x for x, _ in pts], [y / 1e6 for _, y in pts], style, label=f"{label}, {fam}")

    for q in sorted({r["queries"] for r in res["batch"]}):
        series(ax1, [(r["table"], r["lookups_per_s"]) for r in res["batch"] if r["queries"] == q],
               f"kdp batch, {q}")
    ax1.set(xscale="log", xlabel="prefixes in the table", ylabel="M lookups/s",
            title="LPM batch lookups, one core")
    for peer in ("kdp", "pytricia", "py-radix"):
        series(ax2, [(r["table"], r[peer]) for r in res["single"] if r.get(peer)], peer)
    ax2.set(xscale="log", xlabel="prefixes in the table", ylabel="M lookups/s",
            title="single lookups from Python")
    return fig, (ax1, ax2)


def _pipeline(plt, res):
    p = res["pipeline"]
    rows = p.get("by_batch") or []
    if not rows:
        raise KdpError("these pipeline results have no batch-size sweep to plot")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot([r["batch"] for r in rows], [r["packets_per_s"] / 1e6 for r in rows], marker="o",
            label="kdp, warm conntrack")
    ax.set(xscale="log", xlabel="batch size (packets)", ylabel="M packets/s",
           title=f"pipeline, {res['size']['services']:,} Services, one core")
    ax.set_xticks([r["batch"] for r in rows], [str(r["batch"]) for r in rows])
    return fig, (ax,)


def _bars(plt, title, labels, values, unit):
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(labels) + 1.5))
    ax.barh(range(len(labels)), values, color=["C0" if lab.startswith("kdp") else "C7" for lab in labels])
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xscale="log", xlabel=unit, title=title)
    ax.invert_yaxis()
    return fig, ()


def _conntrack(plt, res):
    rows = [r for r in res["results"] if r.get("rate")]
    return _bars(plt, f"conntrack, {res['flows']:,} flows", [f"{r['impl']}: {r['measure']}" for r in rows],
                 [r["rate"] for r in rows], "per second")


def _read(plt, res):
    rows = [r for r in res["results"] if r.get("pps")]
    return _bars(plt, "capture read + parse", [r["reader"] for r in rows], [r["pps"] for r in rows],
                 "packets/s")


PLOTS = {"lpm": _lpm, "pipeline": _pipeline, "conntrack": _conntrack, "read": _read}


def plot(suite, res, path):
    """Draw `res` (a suite's JSON result) into the PNG at `path`."""
    if suite not in PLOTS:
        raise KdpError(f"--plot draws {', '.join(PLOTS)}; not {suite}")
    plt = pyplot()
    fig, axes = PLOTS[suite](plt, res)
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path, format="png", dpi=100)
    except OSError as exc:
        raise KdpError(f"{path}: cannot write the plot: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
