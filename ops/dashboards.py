"""The provisioned Grafana dashboards as data: their panels' InfluxQL, and Grafana's macros expanded the way
its InfluxDB (InfluxQL) datasource expands them.

Grafana cannot run on these machines, so two things reproduce what it would send: `./iot show` (ops/show.py)
draws the dashboards' data in a terminal or a PNG, and tests/integration/test_grafana_queries.py runs every
panel query against a real InfluxDB. Both take the queries from the committed JSON
(grafana-provisioning/dashboards/, written by grafana-provisioning/generate.py), never from a copy.

Macros: `$timeFilter` (relative, the browser's `time >= now() - 1h`, or the absolute millisecond range the
backend sends), `$__interval` / `$__interval_ms`, and the multi-value variables (`$type`, `${sensor}`,
`${sensor:regex}`) inside a regex: one value (regex-escaped), several `(a|b)`, All (the variable's
allValue `.*`).
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

from ops.errors import OpsError

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "grafana-provisioning" / "dashboards"
ALL = "All"
# The datasource's jsonData.timeInterval (grafana-provisioning/datasources/influxdb.yaml): $__interval's floor.
MIN_INTERVAL_MS = 1000


class DashboardError(OpsError):
    """A dashboard, panel or macro that is not what the caller expects; str() is the one line to show."""


class Raw(str):
    """A variable value that already is a regex (e.g. from a glob): substituted as is, not escaped."""

    __slots__ = ()


def escape_regex(value: str) -> str:
    """Grafana's escapeRegex (@grafana/data), used for values substituted inside /.../."""
    return re.sub(r"[\\^$*+?.()|[\]{}/]", lambda m: "\\" + m.group(0), value)


def format_var(values: list[str] | str) -> str:
    """A multi/includeAll variable in a regex: All -> allValue `.*`, one value escaped, several `(a|b)`."""
    if values == ALL:
        return ".*"
    if isinstance(values, str):
        values = [values]
    parts = [v if isinstance(v, Raw) else escape_regex(v) for v in values]
    return parts[0] if len(parts) == 1 else "(" + "|".join(parts) + ")"


def expand(query: str, variables: dict[str, list[str] | str], time_filter: str,
           interval: str = "10s", interval_ms: int = 10_000) -> str:
    """QUERY with every macro and variable replaced; DashboardError if a `$…` is left."""
    out = query.replace("$timeFilter", time_filter)
    out = out.replace("$__interval_ms", str(interval_ms)).replace("$__interval", interval)
    for name in sorted(variables, key=len, reverse=True):
        out = re.sub(r"\$\{" + name + r"(:regex)?\}|\$" + name + r"\b", lambda _m, n=name: format_var(variables[n]),
                     out)
    left = re.search(r"\$[A-Za-z_{][A-Za-z0-9_:}]*", out)
    if left:
        raise DashboardError(f"unexpanded macro {left.group(0)} left in {out}")
    return out


def relative_time_filter(since: str) -> str:
    """The browser's form of `$timeFilter` for "last SINCE" (an InfluxQL duration such as 1h)."""
    return f"time >= now() - {since}"


def absolute_time_filter(since_s: float, now_ms: int | None = None) -> str:
    """The backend's form: an absolute millisecond range, ending a minute after now like Grafana's."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return f"time > {now_ms - int(since_s * 1000)}ms and time < {now_ms + 60_000}ms"


# Grafana's roundInterval (packages/grafana-data rangeutil): upper bound of a raw interval (ms) -> the
# interval it rounds to. Beyond the last bound: a year.
_ROUND = [(15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000), (3500, 2000),
          (7500, 5000), (12500, 10_000), (17500, 15_000), (25000, 20_000), (45000, 30_000), (90000, 60_000),
          (210_000, 120_000), (450_000, 300_000), (750_000, 600_000), (1_050_000, 900_000),
          (1_500_000, 1_200_000), (2_700_000, 1_800_000), (5_400_000, 3_600_000), (9_000_000, 7_200_000),
          (16_200_000, 10_800_000), (32_400_000, 21_600_000), (86_400_000, 43_200_000),
          (604_800_000, 86_400_000), (1_814_400_000, 604_800_000), (3_628_800_000, 2_592_000_000)]


def interval_ms(range_ms: float, max_points: int, min_ms: int = MIN_INTERVAL_MS) -> int:
    """$__interval_ms as Grafana computes it: the range over the panel's max data points, rounded, floored."""
    raw = range_ms / max(1, max_points)
    rounded = next((to for bound, to in _ROUND if raw < bound), 31_536_000_000)
    return max(rounded, min_ms)


def influx_duration(ms: int) -> str:
    """An interval in ms as InfluxQL writes it: 10s, 1m, 2h, 1d (the largest unit that divides it)."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


# -- the dashboards --------------------------------------------------------------------------------------
def load_dashboards(folder: Path = DASHBOARDS) -> dict[str, dict]:
    """File name -> dashboard JSON, every provisioned dashboard."""
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))}


def dashboard(uid: str, folder: Path = DASHBOARDS) -> dict:
    for board in load_dashboards(folder).values():
        if board.get("uid") == uid:
            return board
    raise DashboardError(f"no dashboard with uid {uid} in {folder}")


def panel(board: dict, title: str) -> dict:
    for item in board.get("panels", []):
        if item.get("title") == title:
            return item
    raise DashboardError(f"dashboard {board.get('uid')} has no panel {title!r} (grafana-provisioning/generate.py)")


def panel_query(board: dict, title: str, ref: str = "A") -> str:
    """The raw InfluxQL of a panel's target REF."""
    for target in panel(board, title).get("targets", []):
        if target.get("refId") == ref:
            return target["query"]
    raise DashboardError(f"panel {title!r} of {board.get('uid')} has no target {ref}")


def variable_query(board: dict, name: str) -> str:
    for var in board.get("templating", {}).get("list", []):
        if var.get("name") == name:
            return var["query"]
    raise DashboardError(f"dashboard {board.get('uid')} has no variable {name}")
