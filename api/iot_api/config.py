"""Settings from environment variables (12-factor); every secret can also come from `<NAME>_FILE`.

A bad value stops the api at start with one line naming the variable: `ConfigError`, exit status 2.
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from .timefmt import MIN_NS, parse_duration, parse_rfc3339

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    workers: int
    log_level: str
    access_log: bool
    max_connections: int
    keepalive_timeout_s: float  # idle keep-alive connection closed after this
    header_timeout_s: float     # a request's headers must arrive within this (slowloris)
    body_timeout_s: float       # a request's body must arrive within this, else 408
    influxdb_url: str
    influxdb_db: str
    influxdb_rp: str
    measurement: str
    influxdb_user: str | None
    influxdb_password: str | None
    influxdb_admin: tuple[str, str] | None   # (user, password): the api creates the users
    influxdb_reader: tuple[str, str] | None  # (user, password): created by the api (Grafana's)
    influxdb_timeout_s: float
    retention: str  # InfluxQL duration ("INF", "30d", …) as given, for CREATE RETENTION POLICY
    retention_ns: int | None
    max_batch: int
    max_body_bytes: int
    group_commit: bool
    flush_max_points: int
    flush_max_delay_s: float
    flush_in_flight: int
    max_pending_points: int
    min_ts_ns: int
    max_future_ns: int
    retry_after_s: int
    startup_backoff_max_s: float
    tokens_file: str | None
    read_limit_max: int
    instance: int               # this api's number among its replicas (Swarm: {{.Task.Slot}}); with the
                                # worker's slot it makes server timestamps unique (readings._Clock)
    top_cache_s: float          # GET /top answers are shared for this long (0: every request queries)


def _secret(env, name: str) -> str | None:
    """NAME, or the content of the file NAME_FILE points at (Docker/Swarm secrets)."""
    path = env.get(name + "_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read().strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE={path!r}: cannot read it ({exc.strerror})") from None
    return env.get(name) or None


def _user(env, name: str, password_name: str) -> tuple[str | None, str | None]:
    """A user and its password (each also from a _FILE). Passwords go into InfluxQL statements
    (CREATE USER cannot bind them): control characters are refused, naming the variable only."""
    user, password = _secret(env, name), _secret(env, password_name)
    if bool(user) != bool(password):
        raise ConfigError(f"{name} and {password_name} (or their _FILE forms) go together")
    for var, value in ((name, user), (password_name, password)):
        if value and any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ConfigError(f"{var}: must not contain control characters (value not shown)")
    return user, password


def _int(env, name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: must be an integer between {lo} and {hi}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={raw!r}: must be between {lo} and {hi}")
    return value


def _bool(env, name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r}: must be true or false")


def _duration(env, name: str, default: str, allow_inf: bool = False, minimum_ns: int = 0) -> tuple[str, int | None]:
    raw = env.get(name, "").strip() or default
    try:
        ns = parse_duration(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r}: {exc}") from None
    if ns is None and not allow_inf:
        raise ConfigError(f"{name}={raw!r}: INF is not allowed here")
    if ns is not None and ns < minimum_ns:
        raise ConfigError(f"{name}={raw!r}: must be at least {minimum_ns // 1_000_000} ms")
    return raw, ns


def _ident(env, name: str, default: str) -> str:
    raw = env.get(name, "").strip() or default
    if not _IDENT.fullmatch(raw):
        raise ConfigError(f"{name}={raw!r}: must be a name of letters, digits, _ and - (max 64)")
    return raw


def load(env: dict | None = None) -> Settings:
    env = os.environ if env is None else env
    url = env.get("INFLUXDB_URL", "").strip() or "http://influxdb:8086"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0-65535
    except ValueError as exc:  # the URL is not echoed: it might hold a password
        raise ConfigError(f"INFLUXDB_URL: {exc} (must be an http(s) URL like http://influxdb:8086)") from None
    if parts.username is not None or parts.password is not None:
        raise ConfigError("INFLUXDB_URL: credentials do not go in the URL (a URL ends up in logs): set "
                          "INFLUXDB_USER and INFLUXDB_PASSWORD or INFLUXDB_PASSWORD_FILE")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"INFLUXDB_URL={url!r}: must be an http(s) URL like http://influxdb:8086")

    retention, retention_ns = _duration(env, "API_RETENTION", "INF", allow_inf=True)
    if retention_ns is not None and retention_ns < 3600 * 10**9:
        raise ConfigError(f"API_RETENTION={retention!r}: InfluxDB needs at least 1h (or INF)")
    if retention_ns is not None and retention_ns % (10**9):
        raise ConfigError(f"API_RETENTION={retention!r}: use whole seconds, minutes, hours, days or weeks")

    min_ts_raw = env.get("API_MIN_TS", "").strip() or "2000-01-01T00:00:00Z"
    try:
        min_ts_ns = parse_rfc3339(min_ts_raw)
    except ValueError as exc:
        raise ConfigError(f"API_MIN_TS={min_ts_raw!r}: {exc}") from None
    if min_ts_ns < MIN_NS:
        raise ConfigError(f"API_MIN_TS={min_ts_raw!r}: InfluxDB cannot store times before 1677-09-21")
    _, max_future_ns = _duration(env, "API_MAX_FUTURE", "1h")
    _, timeout_ns = _duration(env, "INFLUXDB_TIMEOUT", "5s", minimum_ns=10**8)
    _, delay_ns = _duration(env, "API_FLUSH_MAX_DELAY", "0ms")
    _, backoff_ns = _duration(env, "API_STARTUP_BACKOFF_MAX", "10s", minimum_ns=10**8)
    # Slow clients: each connection holds a slot of API_MAX_CONNECTIONS, so none may hold it forever.
    _, keepalive_ns = _duration(env, "API_KEEPALIVE_TIMEOUT", "30s", minimum_ns=10**8)
    workers = _int(env, "API_WORKERS", 1, 1, 64)
    instance = _int(env, "API_INSTANCE", 0, 0, 999)
    if (instance + 1) * workers > 1000:
        raise ConfigError(f"API_INSTANCE={instance} with API_WORKERS={workers}: (instance + 1) x workers must "
                          "be at most 1000 (each worker needs its own id for server timestamps)")
    top_cache_raw, top_cache_ns = _duration(env, "API_TOP_CACHE", "1s")
    if top_cache_ns > 3600 * 10**9:
        raise ConfigError(f"API_TOP_CACHE={top_cache_raw!r}: at most 1h (the past-minute ranking would be stale)")
    _, header_ns = _duration(env, "API_HEADER_TIMEOUT", "10s", minimum_ns=10**8)
    _, body_ns = _duration(env, "API_BODY_TIMEOUT", "10s", minimum_ns=10**8)

    log_level = (env.get("API_LOG_LEVEL", "").strip() or "info").lower()
    if log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"API_LOG_LEVEL={log_level!r}: must be debug, info, warning or error")
    user, password = _user(env, "INFLUXDB_USER", "INFLUXDB_PASSWORD")
    admin = _user(env, "INFLUXDB_ADMIN_USER", "INFLUXDB_ADMIN_PASSWORD")
    reader = _user(env, "INFLUXDB_READER_USER", "INFLUXDB_READER_PASSWORD")
    if admin[0] and not user:
        raise ConfigError("INFLUXDB_ADMIN_USER needs INFLUXDB_USER and INFLUXDB_PASSWORD: the admin "
                          "creates that user for the api's own writes and reads")
    if reader[0] and not admin[0]:
        raise ConfigError("INFLUXDB_READER_USER needs INFLUXDB_ADMIN_USER: only the admin can create it")
    names = [n for n in (admin[0], user if admin[0] else None, reader[0]) if n]
    if len(set(names)) != len(names):
        raise ConfigError("INFLUXDB_ADMIN_USER, INFLUXDB_USER and INFLUXDB_READER_USER must differ")
    tokens_file = env.get("API_TOKENS_FILE", "").strip() or None
    flush_max_points = _int(env, "API_FLUSH_MAX_POINTS", 5000, 1, 1_000_000)

    return Settings(
        host=env.get("API_HOST", "").strip() or "0.0.0.0",
        port=_int(env, "API_PORT", 1337, 1, 65535),
        workers=workers,
        instance=instance,
        log_level=log_level,
        access_log=_bool(env, "API_ACCESS_LOG", False),
        max_connections=_int(env, "API_MAX_CONNECTIONS", 1000, 1, 100_000),
        keepalive_timeout_s=keepalive_ns / 1e9,
        header_timeout_s=header_ns / 1e9,
        body_timeout_s=body_ns / 1e9,
        influxdb_url=url.rstrip("/"),
        influxdb_db=_ident(env, "INFLUXDB_DB", "iot"),
        influxdb_rp=_ident(env, "INFLUXDB_RP", "iot_rp"),
        measurement=_ident(env, "INFLUXDB_MEASUREMENT", "data"),
        influxdb_user=user,
        influxdb_password=password,
        influxdb_admin=admin if admin[0] else None,
        influxdb_reader=reader if reader[0] else None,
        influxdb_timeout_s=timeout_ns / 1e9,
        retention=retention.upper() if retention_ns is None else retention,
        retention_ns=retention_ns,
        max_batch=_int(env, "API_MAX_BATCH", 5000, 1, 1_000_000),
        max_body_bytes=_int(env, "API_MAX_BODY_BYTES", 1_048_576, 1024, 256 * 1_048_576),
        group_commit=_bool(env, "API_GROUP_COMMIT", True),
        flush_max_points=flush_max_points,
        flush_max_delay_s=delay_ns / 1e9,
        flush_in_flight=_int(env, "API_FLUSH_IN_FLIGHT", 2, 1, 64),
        max_pending_points=_int(env, "API_MAX_PENDING_POINTS", 100_000, flush_max_points, 100_000_000),
        min_ts_ns=min_ts_ns,
        max_future_ns=max_future_ns,
        retry_after_s=_int(env, "API_RETRY_AFTER", 2, 1, 3600),
        startup_backoff_max_s=backoff_ns / 1e9,
        tokens_file=tokens_file,
        read_limit_max=_int(env, "API_READ_LIMIT_MAX", 10_000, 1, 1_000_000),
        top_cache_s=top_cache_ns / 1e9,
    )


@functools.cache
def of_process() -> Settings:
    """This process's settings, read once: a worker's app and its HTTP protocol share them. Checked by
    __main__ before uvicorn starts, so a worker never meets a bad value here."""
    return load()
