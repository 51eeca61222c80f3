"""The PNG of `./iot show --png`: the overview's "<type> per sensor" panels, labelled as not Grafana's."""

# ruff: noqa: S608 - the InfluxQL comes from the committed dashboards; user input is validated and regex-escaped
from __future__ import annotations

import io
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ops import dashboards as dash

from .query import Options, Queries, ShowError, Snapshot, Source, parse_time


# -- the PNG ---------------------------------------------------------------------------------------------
def check_png_path(path: Path) -> Path:
    """A path the plot can be written to, checked before any query; ShowError otherwise."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ShowError(f"--png {path}: the file name must end in .png")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ShowError(f"--png {path}: no such directory {parent}")
    if path.is_dir():
        raise ShowError(f"--png {path}: is a directory")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ShowError(f"--png {path}: not writable")
    return path


def plot(source: Source, options: Options, snap: Snapshot, path: Path,
         progress: Callable[[str], None] = lambda _m: None) -> dict:
    """The overview's "$type per sensor" panels for SNAP's types, one subplot each, into PATH (PNG)."""
    try:
        import matplotlib
    except ImportError:
        raise ShowError("matplotlib is not installed: ./iot installs requirements-dev.txt into .venv") from None
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    q = Queries(options)
    interval = q.plot_interval_ms()
    statements = [q.per_sensor(t, interval) for t in snap.types]
    answers = source.query(statements)
    fig, axes = plt.subplots(len(snap.types), 1, figsize=(11, 2.9 * len(snap.types) + 0.9), sharex=True,
                             squeeze=False)
    lines = 0
    for ax, kind, series in zip(axes[:, 0], snap.types, answers, strict=True):
        for s in sorted(series, key=lambda s: (s.get("tags") or {}).get("sensor_id", "")):
            rows = [(parse_time(r[0]), r[1]) for r in s.get("values") or [] if r[1] is not None]
            if rows:
                ax.plot([r[0] for r in rows], [r[1] for r in rows], linewidth=0.9,  # a few points: show them
                        marker="o" if len(rows) <= 30 else None, markersize=2.5,
                        label=(s.get("tags") or {}).get("sensor_id", "?"))
                lines += 1
        ax.set_title(f"{kind} per sensor ({len(series)} sensors, mean per {dash.influx_duration(interval)})",
                     fontsize=10, loc="left")
        ax.grid(True, alpha=0.3)
        if 0 < len(series) <= 12:
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    start = datetime.fromtimestamp(snap.now.timestamp() - options.since_s, UTC)
    axes[-1, 0].set_xlim(start, snap.now)  # the whole range, as the dashboard's time picker
    span = options.since_s
    axes[-1, 0].xaxis.set_major_formatter(mdates.DateFormatter("%H:%M" if span <= 86400 else "%m-%d %H:%M", tz=UTC))
    axes[-1, 0].set_xlabel("time (UTC)")
    fig.suptitle(f"IoT overview: {snap.where}, last {snap.since}", fontsize=11)
    fig.text(0.01, 0.008, "Rendered by ./iot show --png from the IoT overview dashboard's \"<type> per sensor\" queries "
             f"(grafana-provisioning/dashboards/overview.json), not by Grafana. {snap.now:%Y-%m-%d %H:%M} UTC.",
             fontsize=8, color="dimgray")
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    try:
        save_png(buffer, path)
    except OSError as exc:
        raise ShowError(f"--png {path}: cannot write it ({exc.strerror or exc})") from None
    if not lines:
        raise ShowError(f"no series to plot in the last {options.since}")
    return {"path": path, "bytes": path.stat().st_size, "interval": dash.influx_duration(interval), "lines": lines}


def save_png(source, path: Path) -> None:
    """A PNG (file or buffer) saved to PATH with a 256-colour palette: the same picture, a third of the bytes
    (hundreds of thin lines compress badly in full colour). Pillow comes with matplotlib."""
    from PIL import Image

    with Image.open(source) as image:
        image.convert("RGB").quantize(colors=256).save(path, format="PNG", optimize=True)
