"""`./iot show`: the data of a running stack in the terminal (or a PNG), from the dashboards' own queries.

Grafana cannot run on every machine (not on this project's: no package, no registry). What it would
draw is still here: the panels' InfluxQL, in grafana-provisioning/dashboards/*.json. This module runs
those queries with Grafana's macros expanded (ops/dashboards.py, the expansion the dashboard tests use)
and draws the answers as text: the IoT overview's "Active sensors", "Readings in range", "Readings per
minute" (a sparkline per type), "Latest value per sensor" (small groups of sensors listed, large ones
such as the 77 stations of the MQTT fleet summarised), "Top 10 sensors: highest $type" (N = --top),
and the districts dashboard's "Stations reporting (latest)" / "Latest per district". `--png` plots the
overview's "$type per sensor" panels with matplotlib (Agg), captioned as what it is: not Grafana.

Where the data comes from:
- a Compose stack (default): InfluxDB is not published, so the statements go through the stack's api
  container (`docker exec … python3`, ops/db.py's query script) as the InfluxDB **reader** user
  (Grafana's: read-only), its password read from secrets/ENV/influxdb_reader_password and sent on stdin;
- `--influxdb-url URL`: that InfluxDB directly (no Docker), as the reader when influxdb.auth is on and
  the env's reader secret exists.
Statements go in batches (`;`-separated, one request each): one `docker exec` for the screen, one more
for the per-type panels, one for the plot.
"""
# ruff: noqa: S608 - the InfluxQL comes from the committed dashboards; user input is validated and regex-escaped
from __future__ import annotations

import base64
import dataclasses
import fnmatch
import io
import json
import math
import os
import re
import shlex
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ops import dashboards as dash
from ops import db, render
from ops import secrets as secrets_mod

ROOT = Path(__file__).resolve().parent.parent
OVERVIEW, DISTRICTS = "iot-overview", "iot-districts"
ACTIVE = "Active sensors (last 5 min)"
IN_RANGE = "Readings in range"
PER_MINUTE = "Readings per minute"
PER_SENSOR = "$type per sensor"
LATEST = "Latest value per sensor"
TOP = "Top 10 sensors: highest $type"
D_STATIONS = "Stations reporting (latest)"
D_LATEST = "Latest per district"
STALE_S = 300           # the "Active sensors" panel's 5 minutes: older is shown as stale
GROUP_ROWS = 12         # a group of sensors (same id prefix) larger than this is summarised
PNG_POINTS = 400        # the plot's max data points per series (Grafana: about the panel's width in pixels)
SINCE_RE = re.compile(r"^([1-9][0-9]{0,5})([smhdw])$")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
NAME_RE = re.compile(r"^[A-Za-z0-9_.:*-]{1,100}$")  # a type or sensor id (or glob) on the command line
SPARK = "▁▂▃▄▅▆▇█"


class ShowError(Exception):
    """Bad input or nothing to show; str() is the one line to print."""


# -- options ---------------------------------------------------------------------------------------------
def parse_since(text: str) -> int:
    """An InfluxQL duration (15m, 1h, 2d, 1w) -> seconds; ShowError otherwise."""
    m = SINCE_RE.match(str(text).strip())
    if not m:
        raise ShowError(f"--since {text}: use a duration like 15m, 1h, 6h, 2d or 1w (a whole number and one of s, m, h, d, w)")
    seconds = int(m.group(1)) * UNIT_S[m.group(2)]
    if seconds < 60:
        raise ShowError(f"--since {text}: at least 1m (the readings are counted per minute)")
    return seconds


def parse_top(text) -> int:
    """--top: a whole number from 1 to 100 (a string from the command line: a bad one is a line, not a traceback)."""
    try:
        n = int(str(text).strip())
    except ValueError:
        raise ShowError(f"--top {text}: a whole number from 1 to 100") from None
    if not 1 <= n <= 100:
        raise ShowError(f"--top {text}: a whole number from 1 to 100")
    return n


def split_names(items, what: str) -> list[str]:
    """Repeated and/or comma-separated names (--type temp,humidity --type pressure), checked."""
    out: list[str] = []
    for item in items or []:
        for name in str(item).split(","):
            name = name.strip()
            if not name:
                continue
            if not NAME_RE.match(name):
                raise ShowError(f"--{what} {name!r}: only letters, digits and _ . : - (and * as a wildcard)")
            if name not in out:
                out.append(name)
    return out


def sensor_variable(sensors: list[str]) -> list[str] | str:
    """--sensor values as the $sensor variable: exact ids escaped, globs (tls-*) as a regex; none: All."""
    if not sensors:
        return dash.ALL
    return [dash.Raw(fnmatch.translate(s).removeprefix("(?s:").removesuffix(")\\Z")) if "*" in s else s
            for s in sensors]


@dataclass(frozen=True)
class Options:
    since: str = "1h"
    top: int = 5
    types: tuple[str, ...] = ()      # empty: every type (All)
    sensors: tuple[str, ...] = ()    # empty: every sensor (All)

    @property
    def since_s(self) -> int:
        return parse_since(self.since)

    def check(self) -> Options:
        parse_since(self.since)
        if not isinstance(self.top, int) or not 1 <= self.top <= 100:
            raise ShowError(f"--top {self.top}: a whole number from 1 to 100")
        return self


# -- where the data comes from ---------------------------------------------------------------------------
class Source:
    """Runs batches of InfluxQL statements; each batch -> one list of series per statement."""

    label = ""

    def query(self, statements: list[str]) -> list[list[dict]]:
        raise NotImplementedError

    def dry_lines(self) -> list[str]:
        raise NotImplementedError


def _results(answer: dict, statements: list[str]) -> list[list[dict]]:
    """An InfluxDB /query answer -> series per statement ('database not found': none); ShowError on errors."""
    if answer.get("error"):
        raise ShowError(f"InfluxDB: {answer['error']}")
    results = answer.get("results", [])
    errors = [r.get("error") for r in results if r.get("error")]
    if errors and all(e == "not executed" or e.startswith("database not found") for e in errors):
        return [[] for _ in statements]  # no database yet (InfluxDB 1.6 answers a batch for one with "not executed")
    by_id: dict[int, list[dict]] = {}
    for i, result in enumerate(results):
        error = result.get("error")
        sid = result.get("statement_id", i)
        if error:
            raise ShowError(f"InfluxDB: {error} (query: {statements[sid] if sid < len(statements) else '?'})")
        by_id[sid] = result.get("series") or []
    return [by_id.get(i, []) for i in range(len(statements))]


class HttpSource(Source):
    """An InfluxDB 1.x reached directly: POST /query, Basic auth when credentials are given."""

    def __init__(self, url: str, database: str, user: str | None = None, password_file: Path | None = None):
        url = url.rstrip("/")
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ShowError(f"--influxdb-url {url}: expected http://HOST:PORT (InfluxDB 1.x)")
        self.url, self.db, self.user, self.password_file = url, database, user, password_file
        self.label = f"InfluxDB {url}, database {database}"

    def _password(self) -> str:
        try:
            return self.password_file.read_text().strip()
        except OSError as exc:
            raise ShowError(f"cannot read {self.password_file}: {exc.strerror}") from None

    def query(self, statements: list[str]) -> list[list[dict]]:
        form = urllib.parse.urlencode({"q": ";\n".join(statements), "db": self.db}).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if self.user and self.password_file:
            token = base64.b64encode(f"{self.user}:{self._password()}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        req = urllib.request.Request(self.url + "/query", data=form, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310 - an http(s) URL, checked above
                body = resp.read()
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace").strip()[:200]
            if err.code in (401, 403):
                who = f"as {self.user}" if self.user else "without credentials"
                raise ShowError(f"InfluxDB at {self.url} refused the query {who} ({err.code}): {detail}") from None
            raise ShowError(f"InfluxDB at {self.url} answered {err.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise ShowError(f"cannot reach InfluxDB at {self.url}: {reason}") from None
        try:
            answer = json.loads(body)
        except json.JSONDecodeError:
            raise ShowError(f"{self.url}/query did not answer JSON: is it InfluxDB 1.x?") from None
        return _results(answer, statements)

    def dry_lines(self) -> list[str]:
        who = f" as {self.user} (password from {_rel(self.password_file)})" if self.user else ""
        return [f"would run: POST {self.url}/query db={self.db}{who}, one request per batch of these statements:"]


class DockerSource(Source):
    """The env's Compose stack: statements run in its api container (InfluxDB is not published there)."""

    def __init__(self, target: db.Target, default_env: str = "dev"):
        self.target, self.default_env = target, default_env
        self.runner = db.Runner(dry=False, progress=lambda _m: None)
        self.label = f"the {target.env} stack ({target.name}), InfluxDB database {target.db}"
        self._container: str | None = None

    def up_hint(self) -> str:
        return "./iot up" + ("" if self.target.env == self.default_env else f" --env {self.target.env}")

    def container(self) -> str:
        if self._container is None:
            argv = ["docker", "ps", "-q", *self.target.filters("api")]
            try:
                out = self.runner.run(argv, echo=False, read=True, timeout=30).decode().split()
            except db.DbError as exc:
                raise ShowError(f"{exc} (without Docker: ./iot show --influxdb-url URL)") from None
            if not out:
                raise ShowError(f"the {self.target.env} stack is not running: {self.up_hint()}")
            self._container = out[0]
        return self._container

    def query(self, statements: list[str]) -> list[list[dict]]:
        influx = db.Influx(self.runner, self.target, self.container())
        try:
            answer_text = self.runner.run(db.query_argv(influx.api), echo=False, read=True, timeout=120, stdin=json.dumps(
                {"url": f"http://influxdb:{self.target.port}", "q": ";\n".join(statements), "db": self.target.db,
                 "u": influx.user, "p": influx.password}).encode())
        except db.DbError as exc:
            raise ShowError(f"querying InfluxDB through the api container: {exc}") from None
        try:
            answer = json.loads(answer_text.decode() or "{}")
        except json.JSONDecodeError:
            raise ShowError("InfluxDB answered something that is not JSON (through the api container)") from None
        return _results(answer, statements)

    def dry_lines(self) -> list[str]:
        ps = ["docker", "ps", "-q", *self.target.filters("api")]
        who = (f"as {self.target.admin_user}, password from {_rel(self.target.admin_password_file)} on stdin"
               if self.target.admin_user else "without credentials (influxdb.auth is off)")
        return [f"would run: {shlex.join(ps)}",
                f"would run: docker exec -i <that container> python3 -c <ops/db.py QUERY_SCRIPT> "
                f"(POST http://influxdb:{self.target.port}/query db={self.target.db}, {who}), "
                "one per batch of these statements:"]


def _rel(path: Path | None) -> str:
    if path is None:
        return "-"
    try:
        return str(Path(path).relative_to(ROOT))
    except ValueError:
        return str(path)


def source_for(env: str, overrides: dict | None = None, influxdb_url: str | None = None,
               default_env: str = "dev") -> Source:
    """The env's stack (through Docker), or the InfluxDB at INFLUXDB_URL; the reader's credentials when auth is on."""
    try:
        values = render.load_values(env, overrides or {})
    except render.RenderError as exc:
        raise ShowError(str(exc)) from None
    influx = values["influxdb"]
    reader = influx["users"]["reader"] if influx["auth"] else None
    password_file = ROOT / "secrets" / env / secrets_mod.INFLUXDB_READER_PASSWORD
    if influxdb_url:
        use = bool(reader) and password_file.is_file()
        return HttpSource(influxdb_url, influx["db"], reader if use else None, password_file if use else None)
    target = dataclasses.replace(db.target_for(env, overrides or {}, "compose"), admin_user=reader,
                                 admin_password_file=password_file if reader else None)
    if reader and not password_file.is_file():
        raise ShowError(f"influxdb.auth is on but {_rel(password_file)} does not exist: has the {env} stack "
                        f"ever run? (./iot up{'' if env == default_env else f' --env {env}'})")
    return DockerSource(target, default_env)


# -- the queries ---------------------------------------------------------------------------------------
@dataclass
class Queries:
    """The dashboards' statements for OPTIONS, macros expanded (relative $timeFilter, as a browser sends)."""

    options: Options
    overview: dict = field(default_factory=lambda: dash.dashboard(OVERVIEW))
    districts: dict = field(default_factory=lambda: dash.dashboard(DISTRICTS))

    def variables(self, types: list[str] | None = None) -> dict:
        chosen = types if types is not None else (list(self.options.types) or dash.ALL)
        return {"type": chosen, "sensor": sensor_variable(list(self.options.sensors))}

    def _x(self, query: str, variables: dict, interval_ms: int = dash.MIN_INTERVAL_MS) -> str:
        return dash.expand(query, variables, dash.relative_time_filter(self.options.since),
                           dash.influx_duration(interval_ms), interval_ms)

    def first(self) -> dict[str, str]:
        """Batch 1: the type variable's values, the stats, per-minute counts, latest values, district types."""
        v = self.variables()
        return {"types": self._x(dash.variable_query(self.overview, "type"), {}),
                "active": self._x(dash.panel_query(self.overview, ACTIVE), v),
                "in_range": self._x(dash.panel_query(self.overview, IN_RANGE), v),
                "per_minute": self._x(dash.panel_query(self.overview, PER_MINUTE), v),
                "latest": self._x(dash.panel_query(self.overview, LATEST), v),
                "district_types": self._x(dash.variable_query(self.districts, "type"), {})}

    def top(self, kind: str) -> str:
        query, n = re.subn(r'top\("max", "sensor_id", \d+\)', f'top("max", "sensor_id", {self.options.top})',
                           dash.panel_query(self.overview, TOP))
        if n != 1:
            raise dash.DashboardError(f"the {TOP!r} panel's query no longer has top(\"max\", \"sensor_id\", N)")
        return self._x(query, self.variables([kind]))

    def district(self, kind: str) -> tuple[str, str]:
        v = {"type": [kind], "district": dash.ALL}
        return (self._x(dash.panel_query(self.districts, D_STATIONS), v),
                self._x(dash.panel_query(self.districts, D_LATEST), v))

    def per_sensor(self, kind: str, interval: int) -> str:
        return self._x(dash.panel_query(self.overview, PER_SENSOR), self.variables([kind]), interval)

    def plot_interval_ms(self) -> int:
        return dash.interval_ms(self.options.since_s * 1000, PNG_POINTS)


# -- what the screen shows -----------------------------------------------------------------------------
@dataclass
class Snapshot:
    where: str
    since: str
    now: datetime
    types: list[str]                                     # shown (selected, with data)
    active: int
    in_range: int
    per_minute: dict[str, list[int]]                     # type -> counts per minute, oldest first
    latest: dict[str, dict[str, tuple[float, datetime]]]  # sensor -> type -> (value, time)
    top: dict[str, list[tuple[float, str]]]              # type -> (value, sensor), highest first
    districts: dict[str, dict] = field(default_factory=dict)  # type -> {districts, stations, low, high}


def parse_time(text: str) -> datetime:
    """RFC 3339 from InfluxDB (nanosecond fractions allowed) -> aware datetime (microseconds)."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$", text)
    if not m:
        raise ShowError(f"InfluxDB answered a time this cannot read: {text!r}")
    micro = int((m.group(2) or "0")[:6].ljust(6, "0"))
    return datetime.fromisoformat(m.group(1)).replace(microsecond=micro, tzinfo=UTC)


def _rows(series: list[dict]) -> list[dict]:
    out = []
    for s in series:
        for row in s.get("values") or []:
            out.append({**dict(zip(s["columns"], row, strict=False)), **(s.get("tags") or {})})
    return out


def collect(source: Source, options: Options, now: datetime | None = None) -> Snapshot:
    """Run the queries and gather what the screen shows; ShowError when there is nothing to show."""
    options.check()
    q = Queries(options)
    first = q.first()
    answers = dict(zip(first, source.query(list(first.values())), strict=True))
    every = sorted(row["value"] for row in _rows(answers["types"]))
    if not every:
        raise ShowError(f"no readings in {source.label} yet: the stack's simulator sends its first seconds after "
                        "./iot up; or send some with ./iot simulate")
    unknown = [t for t in options.types if t not in every]
    if unknown:
        raise ShowError(f"unknown type {unknown[0]!r}: the data has {', '.join(every)}")
    in_range = sum(int(r["readings"] or 0) for r in _rows(answers["in_range"]))
    latest: dict[str, dict[str, tuple[float, datetime]]] = {}
    for row in _rows(answers["latest"]):
        latest.setdefault(row["sensor_id"], {})[row["type"]] = (float(row["value"]), parse_time(row["time"]))
    if not in_range or not latest:
        which = f" of {' '.join('--sensor ' + s for s in options.sensors)}" if options.sensors else ""
        raise ShowError(f"no readings{which} in the last {options.since} in {source.label}: "
                        "try a longer --since (e.g. --since 7d)" + (" or another --sensor" if which else ""))
    per_minute: dict[str, list[int]] = {}
    for s in answers["per_minute"]:
        per_minute[(s.get("tags") or {}).get("type", "?")] = [int(r[1] or 0) for r in s.get("values") or []]
    types = sorted({t for per in latest.values() for t in per})
    district_types = {row["value"] for row in _rows(answers["district_types"])}

    batch: dict[str, str] = {f"top:{t}": q.top(t) for t in types}
    for t in types:
        if t in district_types and not options.sensors:  # the districts do not know sensors
            batch[f"dstations:{t}"], batch[f"dlatest:{t}"] = q.district(t)
    second = dict(zip(batch, source.query(list(batch.values())), strict=True))
    top = {t: sorted(((float(r["value"]), str(r["sensor_id"])) for r in _rows(second[f"top:{t}"])),
                     key=lambda p: (-p[0], p[1])) for t in types}
    districts = {}
    for t in types:
        rows = _rows(second.get(f"dlatest:{t}", []))
        if rows:
            means = [float(r["mean"]) for r in rows]
            stations = sum(int(r["stations"] or 0) for r in _rows(second[f"dstations:{t}"]))
            districts[t] = {"districts": len(rows), "stations": stations, "low": min(means), "high": max(means)}
    return Snapshot(where=source.label, since=options.since, now=now or datetime.now(UTC), types=types,
                    active=sum(int(r["sensors"] or 0) for r in _rows(answers["active"])), in_range=in_range,
                    per_minute=per_minute, latest=latest, top=top, districts=districts)


def dry_run(source: Source, options: Options, png: Path | None = None) -> list[str]:
    """What collect() (and the plot) would run, without running anything."""
    options.check()
    q = Queries(options)
    lines = source.dry_lines()
    lines += [f"  batch 1: {s}" for s in q.first().values()]
    lines += ["  batch 2, for each TYPE of the first statement's answer:"]
    placeholder = dash.Raw("TYPE")
    lines += [f"    {q.top(placeholder)}", *(f"    {s}" for s in q.district(placeholder))]
    if png:
        lines += ["  batch 3 (the plot), for each TYPE:", f"    {q.per_sensor(placeholder, q.plot_interval_ms())}",
                  f"would write {png}"]
    return lines


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


def terminal_width(default: int = 100) -> int:
    return shutil.get_terminal_size((default, 40)).columns


def now_utc() -> datetime:
    return datetime.fromtimestamp(time.time(), UTC)
