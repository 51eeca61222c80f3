"""The text screen of `./iot show`: sparklines, the latest values, the top N, colour only on a TTY."""

# ruff: noqa: S608 - the InfluxQL comes from the committed dashboards; user input is validated and regex-escaped
from __future__ import annotations

import math
import os
import re
import shutil
from datetime import datetime

from .query import GROUP_ROWS, SPARK, STALE_S, Snapshot


# -- drawing text ----------------------------------------------------------------------------------------
class Style:
    """ANSI colour, only when asked for (a TTY and no NO_COLOR)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def _wrap(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.enabled and text else text

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def cyan(self, text: str) -> str:
        return self._wrap("36", text)

    def yellow(self, text: str) -> str:
        return self._wrap("33", text)


def use_colour(stream, environ=os.environ) -> bool:
    """https://no-color.org: NO_COLOR set (to anything but empty) means none; never into a pipe or file."""
    if environ.get("NO_COLOR"):
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def resample(values: list[int], width: int) -> list[float]:
    """VALUES squeezed into at most WIDTH columns, each the mean of consecutive values."""
    if width <= 0 or not values:
        return []
    if len(values) <= width:
        return [float(v) for v in values]
    out = []
    for i in range(width):
        lo, hi = i * len(values) // width, (i + 1) * len(values) // width
        chunk = values[lo:hi] or [values[lo]]
        out.append(sum(chunk) / len(chunk))
    return out


def sparkline(values: list[float], top: float | None = None) -> str:
    """One character per value, ▁ to █ scaled to TOP (default: their max); a zero (nothing stored) is ·."""
    top = max(values, default=0) if top is None else top
    out = []
    for v in values:
        if v <= 0 or top <= 0:
            out.append("·")
        else:
            out.append(SPARK[min(len(SPARK) - 1, max(0, math.ceil(v / top * len(SPARK)) - 1))])
    return "".join(out)


def format_value(value: float) -> str:
    """At most two decimals, no trailing zeros: 21.5, 1013.25, 45."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def format_age(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def group_of(sensor: str) -> str:
    """The id's prefix up to its first - or _ (sim-, tls-, e2e-); else the id without trailing digits."""
    m = re.match(r"^[^-_]*[-_]", sensor)
    return m.group(0) if m else (sensor.rstrip("0123456789") or sensor)


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(1, width - 1)] + "…"


def render_screen(snap: Snapshot, style: Style, width: int = 100, list_all: bool = False) -> str:
    """The screen: header, per-minute sparklines, latest values (large groups summarised), top N."""
    width = max(60, width)
    lines = [style.bold(f"IoT overview: {snap.where}, last {snap.since}, {snap.now:%Y-%m-%d %H:%M:%S} UTC"),
             style.dim("(the IoT overview dashboard's queries, run by ./iot show: not Grafana)"), ""]
    sensors = len(snap.latest)
    stats = [f"active sensors (last 5 min)  {style.bold(str(snap.active))}", f"sensors in range  {sensors}",
             f"readings in range  {snap.in_range:,}"]
    plain = 4 * 2 + sum(len(re.sub(r"\033\[[0-9;]*m", "", x)) for x in stats)
    lines += ["    ".join(stats)] if plain <= width else stats
    lines += ["", style.bold(f"readings per minute, last {snap.since}")
              + style.dim("  (oldest left; the newest minute is still filling)")]
    label_w = max(len(t) for t in snap.types)
    room = width - 4 - label_w - 14
    if any(len(c) > room for c in snap.per_minute.values()):
        room -= 13  # the " (N min/col)" note
    for t in snap.types:
        counts = snap.per_minute.get(t, [])
        cols = resample(counts, room)
        last_full = counts[-2] if len(counts) >= 2 else (counts[-1] if counts else 0)
        per_col = "" if len(counts) <= room else style.dim(f" ({-(-len(counts) // max(1, len(cols)))} min/col)")
        lines.append(f"  {t:<{label_w}}  {style.cyan(sparkline(cols))}  {last_full:>7,}/min{per_col}")
    lines += ["", *_latest_table(snap, style, list_all)]
    lines += ["", *_top_table(snap, style, width)]
    if snap.districts:
        lines += ["", style.bold("Toulouse districts") + style.dim("  (the processor's latest aggregates: districts dashboard)")]
        for t in snap.types:
            d = snap.districts.get(t)
            if d:
                lines.append(f"  {t:<{label_w}}  {d['districts']} districts, {d['stations']} stations reporting, "
                             f"district means {format_value(d['low'])} to {format_value(d['high'])}")
    return "\n".join(lines) + "\n"


def _latest_table(snap: Snapshot, style: Style, list_all: bool) -> list[str]:
    groups: dict[str, list[str]] = {}
    for sensor in sorted(snap.latest):
        groups.setdefault(group_of(sensor), []).append(sensor)
    listed = [s for g in groups.values() if list_all or len(g) <= GROUP_ROWS for s in g]
    summarised = {g: ids for g, ids in groups.items() if not (list_all or len(ids) <= GROUP_ROWS)}
    labels = {g: f"{g}* ({len(ids)} sensors)" for g, ids in summarised.items()}
    name_w = max([len(s) for s in listed] + [len(v) + 4 for v in labels.values()] + [6])
    col_w = max([len(t) for t in snap.types] + [8])
    now = snap.now

    def age(seen: datetime) -> str:
        text = format_age((now - seen).total_seconds())
        return style.yellow(f"{text:>9}") if (now - seen).total_seconds() > STALE_S else f"{text:>9}"

    head = f"  {'sensor':<{name_w}}" + "".join(f"  {t:>{col_w}}" for t in snap.types) + f"  {'last seen':>9}"
    out = [style.bold("latest value per sensor"), style.dim(head)]
    for s in listed:
        per = snap.latest[s]
        cells = "".join(f"  {format_value(per[t][0]) if t in per else '-':>{col_w}}" for t in snap.types)
        out.append(f"  {s:<{name_w}}{cells}  {age(max(v[1] for v in per.values()))}")
    for g, ids in summarised.items():
        for which, pick in (("min", min), ("max", max)):
            cells = ""
            for t in snap.types:
                vals = [snap.latest[s][t][0] for s in ids if t in snap.latest[s]]
                cells += f"  {format_value(pick(vals)) if vals else '-':>{col_w}}"
            seen = [max(v[1] for v in snap.latest[s].values()) for s in ids]
            newest_or_oldest = max(seen) if which == "min" else min(seen)  # min row: the youngest age
            label = f"{labels[g] if which == 'min' else '':<{name_w - 4}}{which:>4}"
            out.append(f"  {label}{cells}  {age(newest_or_oldest)}")
    if summarised:
        example = next(iter(summarised))
        out.append(style.dim(f"  groups of more than {GROUP_ROWS} sensors are summarised: "
                             f"--sensor '{example}*' lists them"))
    return out


def _top_table(snap: Snapshot, style: Style, width: int) -> list[str]:
    n = max((len(v) for v in snap.top.values()), default=0)
    out = [style.bold(f"top {n} per type") + style.dim("  (highest value in range, one sensor once)")]
    value_w = max([len(format_value(v)) for rows in snap.top.values() for v, _ in rows] + [5])
    id_w = max([len(s) for rows in snap.top.values() for _, s in rows] + [6])
    col = id_w + value_w + 3
    if (width - 2) // (col + 2) < len(snap.types):  # too narrow for a column per type: shorten the ids
        id_w = max(6, (width - 2) // len(snap.types) - value_w - 5)
        col = id_w + value_w + 3
    per_line = max(1, (width - 2) // (col + 2))
    for start in range(0, len(snap.types), per_line):
        chunk = snap.types[start:start + per_line]
        out.append(style.dim("  " + "  ".join(f"{t:<{col}}" for t in chunk).rstrip()))
        for i in range(n):
            cells = []
            for t in chunk:
                rows = snap.top.get(t, [])
                cells.append(f"{_fit(rows[i][1], id_w):<{id_w}} {format_value(rows[i][0]):>{value_w + 2}}"
                             if i < len(rows) else " " * col)
            out.append(("  " + "  ".join(cells)).rstrip())
    return out


def terminal_width(default: int = 100) -> int:
    return shutil.get_terminal_size((default, 40)).columns
