"""The plot of a run: stored readings/s and p99 latency against connections, single-reading POSTs.

Rendered with matplotlib's Agg backend (no display) from the JSON summary, so a stored run can be
plotted again (`./iot bench --plot-only`).
"""
from __future__ import annotations

from pathlib import Path

from . import floor
from .common import NOGC, WRITE_CONNECTIONS, BenchError
from .report import find


def require() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise BenchError("matplotlib is not installed: ./iot installs requirements-dev.txt into .venv") from None


def render(summary: dict, path: Path) -> Path:
    require()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    results = summary.get("results") or []
    single = sorted((r for r in results if r["name"] == "api single"), key=lambda r: r["connections"])
    if not single:
        raise BenchError("no single-reading results to plot (the single scenario did not run)")
    conns = [r["connections"] for r in single]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(7.5, 6.5), constrained_layout=True)
    top.plot(conns, [r["readings_per_s"] for r in single], "o-", color="tab:blue", label="api, group commit")
    bottom.plot(conns, [r["p99_ms"] for r in single], "o-", color="tab:blue")
    extra = [(find(results, NOGC, WRITE_CONNECTIONS), "s", "tab:red", "api, one write per request"),
             (find(results, "writes during GET /data"), "^", "tab:green", "writes while GET /data runs"),
             (find(results, "writes during GET /top"), "v", "tab:purple", "writes while GET /top runs")]
    for row, marker, color, label in extra:
        if row:
            top.plot([row["connections"]], [row["readings_per_s"]], marker, color=color, markersize=9, label=label)
            bottom.plot([row["connections"]], [row["p99_ms"]], marker, color=color, markersize=9)
    bare = find(results, floor.NAME, WRITE_CONNECTIONS)
    if bare:  # stores nothing: its answers/s, the ceiling of any api on this machine
        top.plot([bare["connections"]], [bare["requests_per_s"]], "D", color="tab:grey", markersize=8,
                 label="uvicorn storing nothing (answers/s)")
        bottom.plot([bare["connections"]], [bare["p99_ms"]], "D", color="tab:grey", markersize=8)
    top.axhline(10_000, color="grey", linestyle="--", linewidth=1, label="target ≥ 10,000/s at 64")
    bottom.axhline(25, color="grey", linestyle="--", linewidth=1, label="target p99 ≤ 25 ms at 64")
    top.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    top.set_ylabel("stored readings/s" + (" (floor: answers/s)" if bare else ""))
    top.set_ylim(bottom=0)
    bottom.set_ylabel("p99 latency (ms)")
    bottom.set_ylim(bottom=0)
    bottom.set_xscale("log", base=2)
    bottom.set_xticks(conns, [str(c) for c in conns])
    bottom.minorticks_off()
    bottom.set_xlabel("concurrent connections (wrk, keep-alive)")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    machine = summary.get("machine", {})
    top.set_title(f"Single-reading POST /data: {machine.get('cpus', '?')} cores, "
                  f"{summary.get('settings', {}).get('seconds_per_scenario', '?')} s per point, {summary.get('when', '')}",
                  fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
