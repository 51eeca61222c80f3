"""The data side of `./iot show`: options, where the data comes from (a stack's api container or an
InfluxDB URL), the dashboards' queries and one snapshot of their answers."""

# ruff: noqa: S608 - the InfluxQL comes from the committed dashboards; user input is validated and regex-escaped
from __future__ import annotations

import dataclasses
import fnmatch
import json
import re
import shlex
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ops import dashboards as dash
from ops import db, http_client, render
from ops import secrets as secrets_mod
from ops.errors import OpsError

ROOT = Path(__file__).resolve().parents[2]  # the repository (ops/show/query.py)
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


class ShowError(OpsError):
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
        form = {"q": ";\n".join(statements), "db": self.db}
        # Basic auth as UTF-8 bytes: requests would encode a str as latin-1 (and fail on other characters).
        auth = (self.user.encode(), self._password().encode()) if self.user and self.password_file else None
        try:
            resp = http_client.request("POST", self.url + "/query", data=form, auth=auth, timeout=120)
        except OSError as err:  # no answer: requests' errors are OSErrors
            raise ShowError(f"cannot reach InfluxDB at {self.url}: {http_client.reason(err)}") from None
        if resp.status_code >= 400:
            detail = resp.content.decode(errors="replace").strip()[:200]
            if resp.status_code in (401, 403):
                who = f"as {self.user}" if self.user else "without credentials"
                raise ShowError(f"InfluxDB at {self.url} refused the query {who} ({resp.status_code}): {detail}")
            raise ShowError(f"InfluxDB at {self.url} answered {resp.status_code}: {detail}")
        try:
            answer = resp.json()
        except ValueError:
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
        container = self.container()  # first: a stack that is not running is the likelier, more useful answer
        secret = self.target.admin_password_file
        if secret is not None and not Path(secret).is_file():
            raise ShowError(f"influxdb.auth is on but {_rel(secret)} does not exist: has the {self.target.env} stack "
                            f"ever run? ({self.up_hint()})")
        influx = db.Influx(self.runner, self.target, container)
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


def now_utc() -> datetime:
    return datetime.fromtimestamp(time.time(), UTC)
