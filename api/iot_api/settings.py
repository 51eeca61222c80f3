"""The api's settings, declared once: SETTINGS, one `Setting` a line.

Each line names the environment variable, how its text is checked and parsed (`Kind`), its default, a
one-line doc and, when the stacks set it, where its value comes from in stacks/values. Everything else
is made from this table:
- iot_api.config reads the variables with these kinds and defaults (and checks the rules across them);
- ops/values_schema.py checks each values key named here with the same kind, so a value the api would
  refuse stops `./iot render` instead of the container;
- the api's environment in the rendered Compose files and Swarm stack is `stack_environment(values)`;
- docs/api.md's variables table is `markdown_table()` (`python -m iot_api.settings docs/api.md`
  rewrites it; a unit test fails when it is stale).

Pure: no I/O but that `__main__`, no import of ops/ (the api's image holds only api/).
"""
from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .timefmt import MIN_NS, parse_duration, parse_rfc3339

S = 10**9  # nanoseconds per second


class Hidden(ValueError):
    """A bad value whose text must not be echoed (a URL might hold a password)."""


@dataclass(frozen=True)
class Kind:
    """How a variable's text is checked: `parse(text)` returns the value or raises ValueError with the
    message that follows "NAME='text': "; `accepted` says it for the docs and the values schema."""
    accepted: str
    parse: Callable[[str], Any]
    yaml: type = str  # the type its values key has in stacks/values


def integer(lo: int, hi: int) -> Kind:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"must be an integer between {lo} and {hi}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return value
    return Kind(f"an integer between {lo} and {hi}", parse, int)


def _boolean(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


BOOL = Kind("true or false", _boolean, bool)


def duration(*, at_least_ms: int = 0, at_most: str | None = None, why: str = "") -> Kind:
    """A duration (`500ms`, `30s`, `1h`) in nanoseconds; AT_MOST (a duration) with WHY it is the bound."""
    most_ns = parse_duration(at_most) if at_most else None

    def parse(text: str) -> int:
        ns = parse_duration(text)
        if ns is None:
            raise ValueError("INF is not allowed here")
        if ns < at_least_ms * 1_000_000:
            raise ValueError(f"must be at least {at_least_ms} ms")
        if most_ns is not None and ns > most_ns:
            raise ValueError(f"at most {at_most}{why}")
        return ns
    bounds = f", at least {at_least_ms}ms" if at_least_ms else ""
    bounds += f", at most {at_most}" if at_most else ""
    return Kind(f"a duration (500ms, 30s, 1h, 2d){bounds}", parse)


def _retention(text: str) -> tuple[str, int | None]:
    """As given (INF upper-cased) for CREATE RETENTION POLICY, and in nanoseconds (None: forever)."""
    ns = parse_duration(text)
    if ns is not None and ns < 3600 * S:
        raise ValueError("InfluxDB needs at least 1h (or INF)")
    if ns is not None and ns % S:
        raise ValueError("use whole seconds, minutes, hours, days or weeks")
    return (text.upper() if ns is None else text), ns


RETENTION = Kind("an InfluxQL duration of at least 1h (30d, 2w, 1h) or INF", _retention)


def _timestamp(text: str) -> int:
    ns = parse_rfc3339(text)
    if ns < MIN_NS:
        raise ValueError("InfluxDB cannot store times before 1677-09-21")
    return ns


TIMESTAMP = Kind("an RFC 3339 time like 2000-01-01T00:00:00Z", _timestamp)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")


def _ident(text: str) -> str:
    if not _NAME.fullmatch(text):
        raise ValueError("must be a name of letters, digits, _ and - (max 64)")
    return text


IDENT = Kind("a name of letters, digits, _ and - (max 64)", _ident)


def choice(*options: str) -> Kind:
    def parse(text: str) -> str:
        if text.lower() not in options:
            raise ValueError(f"must be {', '.join(options[:-1])} or {options[-1]}")
        return text.lower()
    return Kind(f"one of {', '.join(options)}", parse)


def _url(text: str) -> str:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0-65535
    except ValueError as exc:  # the URL is not echoed: it might hold a password
        raise Hidden(f"{exc} (must be an http(s) URL like http://influxdb:8086)") from None
    if parts.username is not None or parts.password is not None:
        raise Hidden("credentials do not go in the URL (a URL ends up in logs): set INFLUXDB_USER and "
                     "INFLUXDB_PASSWORD or INFLUXDB_PASSWORD_FILE")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL like http://influxdb:8086")
    return text.rstrip("/")


URL = Kind("an http(s) URL without credentials", _url)
TEXT = Kind("any text", str)
PATH = Kind("a file path", str)


def _secret_text(text: str) -> str:
    # Passwords go into InfluxQL statements (CREATE USER cannot bind them): no control characters.
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise Hidden("must not contain control characters (value not shown)")
    return text


SECRET = Kind("text without control characters", _secret_text)


@dataclass(frozen=True)
class Setting:
    env: str                  # the variable; a secret is also read from the file <env>_FILE names
    kind: Kind
    default: str | None       # as the variable would write it; None: unset
    doc: str                  # one line, for docs/api.md
    stack: str | None = None  # what the stacks set: "{values.key}", text with {keys} in it, or fixed text
    when: str | None = None   # a boolean values key: the stacks set it only when that key is true
    swarm: bool = False       # the stacks set it in the Swarm stack only
    secret: bool = False      # also <env>_FILE (Docker/Swarm secrets); the stacks set <env>_FILE to `file`
    file: str | None = None   # the secret file the stacks point <env>_FILE at

    @property
    def values_key(self) -> str | None:
        """The values key whose value the stacks pass as is, or None (fixed text, or made of several)."""
        m = _KEY.fullmatch(self.stack or "")
        return m.group(1) if m else None


_KEY = re.compile(r"\{([a-z_]+(?:\.[a-z_]+)+)\}")  # {api.port}; Swarm's {{.Task.Slot}} is no key
_TIMEOUT = duration(at_least_ms=100)  # a wait: 0 or a few ns would never let anything finish

SETTINGS: tuple[Setting, ...] = (
    Setting("API_HOST", TEXT, "0.0.0.0", "address to listen on"),
    Setting("API_PORT", integer(1, 65535), "1337", "port to listen on", stack="{api.port}"),
    Setting("API_WORKERS", integer(1, 64), "1", "worker processes (metrics are aggregated across them)",
            stack="{api.workers}"),
    Setting("API_INSTANCE", integer(0, 999), "0", "this api's number among its replicas: with the worker's slot it "
            "makes server times unique, so readings without `ts` from two workers or replicas never overwrite each "
            "other; `(API_INSTANCE + 1) x API_WORKERS` at most 1000", stack="{{.Task.Slot}}", swarm=True),
    Setting("INFLUXDB_URL", URL, "http://influxdb:8086", "InfluxDB 1.x (or 2.x/3 through their 1.x API); no "
            "credentials in it (they go in `INFLUXDB_USER` and `INFLUXDB_PASSWORD`)",
            stack="http://influxdb:{influxdb.port}"),
    Setting("INFLUXDB_DB", IDENT, "iot", "database of the readings (created by the api)", stack="{influxdb.db}"),
    Setting("INFLUXDB_RP", IDENT, "iot_rp", "retention policy of the readings (created by the api)",
            stack="{influxdb.rp}"),
    Setting("INFLUXDB_MEASUREMENT", IDENT, "data", "measurement of the readings", stack="{influxdb.measurement}"),
    Setting("INFLUXDB_USER", SECRET, None, "the api's InfluxDB user (the writer), when auth is on; it needs ALL "
            "(read and write) on the database", stack="{influxdb.users.writer}", when="influxdb.auth", secret=True),
    Setting("INFLUXDB_PASSWORD", SECRET, None, "its password", when="influxdb.auth", secret=True,
            file="/run/secrets/influxdb_writer_password"),
    Setting("INFLUXDB_ADMIN_USER", SECRET, None, "with it the api manages the users: creates this admin when InfluxDB "
            "has no user yet, then the database, `INFLUXDB_USER` (granted ALL) and `INFLUXDB_READER_USER` (granted "
            "READ), setting their current passwords at every start (rotation)", stack="{influxdb.users.admin}",
            when="influxdb.auth", secret=True),
    Setting("INFLUXDB_ADMIN_PASSWORD", SECRET, None, "its password (a wrong one: not ready, logged, never the "
            "password)", when="influxdb.auth", secret=True, file="/run/secrets/influxdb_admin_password"),
    Setting("INFLUXDB_READER_USER", SECRET, None, "the read-only user (Grafana), created by the api; needs "
            "`INFLUXDB_ADMIN_USER`", stack="{influxdb.users.reader}", when="influxdb.auth", secret=True),
    Setting("INFLUXDB_READER_PASSWORD", SECRET, None, "its password", when="influxdb.auth", secret=True,
            file="/run/secrets/influxdb_reader_password"),
    Setting("INFLUXDB_TIMEOUT", _TIMEOUT, "5s", "per InfluxDB request"),
    Setting("API_STARTUP_BACKOFF_MAX", _TIMEOUT, "10s",
            "longest wait between two attempts to reach and set up InfluxDB at start"),
    Setting("API_RETENTION", RETENTION, "INF", "retention policy duration; older readings get a 422",
            stack="{influxdb.retention}"),
    Setting("API_MIN_TS", TIMESTAMP, "2000-01-01T00:00:00Z", "earlier timestamps are refused (device clock not set)"),
    Setting("API_MAX_FUTURE", duration(), "1h", "timestamps further ahead are refused"),
    Setting("API_MAX_BATCH", integer(1, 1_000_000), "5000", "readings per request at most"),
    Setting("API_MAX_BODY_BYTES", integer(1024, 256 * 1_048_576), "1048576", "request body size at most"),
    Setting("API_GROUP_COMMIT", BOOL, "true", "`false`: one InfluxDB write per request (the benchmark's baseline)"),
    Setting("API_FLUSH_MAX_POINTS", integer(1, 1_000_000), "5000", "group commit: readings per InfluxDB write at most"),
    Setting("API_FLUSH_MAX_DELAY", duration(), "0ms", "group commit: optional wait to gather more readings"),
    Setting("API_FLUSH_IN_FLIGHT", integer(1, 64), "2", "group commit: InfluxDB writes in flight"),
    Setting("API_MAX_PENDING_POINTS", integer(1, 100_000_000), "100000", "queued readings beyond which the api answers "
            "503 (InfluxDB slower than the load: logged as `queue full` at most every 5 s, counted in "
            "`iot_api_readings_rejected_total{reason=\"overloaded\"}`); at least `API_FLUSH_MAX_POINTS`"),
    Setting("API_RETRY_AFTER", integer(1, 3600), "2", "seconds, in `Retry-After`"),
    Setting("API_TOKENS_FILE", PATH, None, "tokens file: lines `write <token>`, `read <token>`, `read,write <token>`; "
            "without it the api runs open and says so in its log", stack="/run/secrets/api_tokens"),
    Setting("API_READ_LIMIT_MAX", integer(1, 1_000_000), "10000", "page size cap of the read endpoints"),
    Setting("API_MAX_CONNECTIONS", integer(1, 100_000), "1000", "concurrent connections"),
    Setting("API_KEEPALIVE_TIMEOUT", _TIMEOUT, "30s", "an idle keep-alive connection is closed after this"),
    Setting("API_HEADER_TIMEOUT", _TIMEOUT, "10s", "a request's headers must arrive within this (slow clients "
            "hold no connection slot forever)"),
    Setting("API_BODY_TIMEOUT", _TIMEOUT, "10s", "then its whole body, else 408"),
    Setting("API_TOP_CACHE", duration(at_most="1h", why=" (the past-minute ranking would be stale)"), "1s",
            "`GET /top` answers are shared for this long (`0s`: every request queries)"),
    Setting("API_LOG_LEVEL", choice("debug", "info", "warning", "error"), "info", "logs are JSON lines on stderr",
            stack="{api.log_level}"),
    Setting("API_ACCESS_LOG", BOOL, "false", "one log line per request"),
)
BY_ENV: dict[str, Setting] = {s.env: s for s in SETTINGS}


def _lookup(values: Mapping, key: str) -> Any:
    for part in key.split("."):
        values = values[part]
    return values


def env_text(value: Any) -> str:
    """A values scalar as an environment variable writes it (YAML true -> "true")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def stack_environment(values: Mapping, *, swarm: bool = False) -> dict[str, str]:
    """The api's environment in the rendered stacks, from the values of an env (its top-level mapping)."""
    env: dict[str, str] = {}
    for s in SETTINGS:
        if (s.swarm and not swarm) or (s.when and not _lookup(values, s.when)):
            continue
        if s.file:
            env[s.env + "_FILE"] = s.file
        elif s.stack is not None:
            env[s.env] = _KEY.sub(lambda m: env_text(_lookup(values, m.group(1))), s.stack)
    return env


def markdown_table() -> str:
    """docs/api.md's table of the variables."""
    rows = ["| variable | default | accepted | the stacks set it from | meaning |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        name = f"`{s.env}` (`_FILE`)" if s.secret else f"`{s.env}`"
        default = f"`{s.default}`" if s.default is not None else "none"
        if s.file:
            source = f"secret `{s.file}`"
        elif s.stack is None:
            source = ""
        else:
            source = f"`{s.values_key or s.stack}`"
        source += " (Swarm only)" if s.swarm else ""
        source += f" when `{s.when}`" if s.when else ""
        rows.append(f"| {name} | {default} | {s.kind.accepted} | {source.strip()} | {s.doc} |")
    return "\n".join(rows) + "\n"


def rewrite_table(page: str, heading: str = "Environment variables") -> str:
    """PAGE with the first table under `## HEADING` replaced by `markdown_table()`."""
    lines = page.splitlines(keepends=True)
    at = next((i for i, line in enumerate(lines) if line.startswith("#") and line.lstrip("#").strip() == heading), None)
    start = next((i for i in range(at, len(lines)) if lines[i].startswith("|")), None) if at is not None else None
    if start is None:
        raise ValueError(f"no table under a '## {heading}' heading")
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "".join(lines[:start]) + markdown_table() + "".join(lines[end:])


if __name__ == "__main__":  # python -m iot_api.settings docs/api.md: rewrite the page's table
    for path in sys.argv[1:]:
        try:
            with open(path, encoding="utf-8") as fh:
                text = rewrite_table(fh.read())
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
        except (OSError, ValueError) as exc:
            sys.exit(f"error: {path}: {exc}")
        print(f"wrote {path}")
