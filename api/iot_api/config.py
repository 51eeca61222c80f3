"""Settings from environment variables (12-factor); every secret can also come from `<NAME>_FILE`.

The variables, their kinds, defaults and docs are declared once in iot_api.settings (SETTINGS); this
module reads them into `Settings` and checks the rules across them. A bad value stops the api at start
with one line naming the variable: `ConfigError`, exit status 2.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

from .settings import BY_ENV as SETTINGS_BY_ENV
from .settings import SETTINGS, Hidden, integer


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


def read(env, name: str) -> Any:
    """The variable NAME of iot_api.settings.SETTINGS, parsed by its kind; unset or empty: its default
    (None when it has none). A bad value is a ConfigError naming the variable."""
    setting = SETTINGS_BY_ENV[name]
    raw = _secret(env, name) if setting.secret else (env.get(name, "").strip() or None)
    text = raw if raw is not None else setting.default
    if text is None:
        return None
    try:
        return setting.kind.parse(text)
    except Hidden as exc:  # the value is not echoed
        raise ConfigError(f"{name}: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{name}={text!r}: {exc}") from None


def _int(env, name: str, default: int, lo: int, hi: int) -> int:
    """An integer variable outside SETTINGS (the MQTT services' own), checked like the api's."""
    raw = env.get(name, "").strip()
    try:
        return integer(lo, hi).parse(raw) if raw else default
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r}: {exc}") from None


def _user(env, name: str, password_name: str) -> tuple[str | None, str | None]:
    """A user and its password (each also from a _FILE): both or neither."""
    user, password = read(env, name), read(env, password_name)
    if bool(user) != bool(password):
        raise ConfigError(f"{name} and {password_name} (or their _FILE forms) go together")
    return user, password


def load(env: dict | None = None) -> Settings:
    """Every variable of iot_api.settings.SETTINGS read and checked, then the rules across them."""
    env = os.environ if env is None else env
    v = {s.env: read(env, s.env) for s in SETTINGS if not s.secret}
    workers, instance = v["API_WORKERS"], v["API_INSTANCE"]
    if (instance + 1) * workers > 1000:
        raise ConfigError(f"API_INSTANCE={instance} with API_WORKERS={workers}: (instance + 1) x workers must "
                          "be at most 1000 (each worker needs its own id for server timestamps)")
    if env.get("API_MAX_PENDING_POINTS", "").strip() and v["API_MAX_PENDING_POINTS"] < v["API_FLUSH_MAX_POINTS"]:
        raise ConfigError(f"API_MAX_PENDING_POINTS={str(v['API_MAX_PENDING_POINTS'])!r}: must be between "
                          f"{v['API_FLUSH_MAX_POINTS']} and 100000000 (at least API_FLUSH_MAX_POINTS)")
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
    retention, retention_ns = v["API_RETENTION"]

    return Settings(
        host=v["API_HOST"],
        port=v["API_PORT"],
        workers=workers,
        instance=instance,
        log_level=v["API_LOG_LEVEL"],
        access_log=v["API_ACCESS_LOG"],
        max_connections=v["API_MAX_CONNECTIONS"],
        keepalive_timeout_s=v["API_KEEPALIVE_TIMEOUT"] / 1e9,
        header_timeout_s=v["API_HEADER_TIMEOUT"] / 1e9,
        body_timeout_s=v["API_BODY_TIMEOUT"] / 1e9,
        influxdb_url=v["INFLUXDB_URL"],
        influxdb_db=v["INFLUXDB_DB"],
        influxdb_rp=v["INFLUXDB_RP"],
        measurement=v["INFLUXDB_MEASUREMENT"],
        influxdb_user=user,
        influxdb_password=password,
        influxdb_admin=admin if admin[0] else None,
        influxdb_reader=reader if reader[0] else None,
        influxdb_timeout_s=v["INFLUXDB_TIMEOUT"] / 1e9,
        retention=retention,
        retention_ns=retention_ns,
        max_batch=v["API_MAX_BATCH"],
        max_body_bytes=v["API_MAX_BODY_BYTES"],
        group_commit=v["API_GROUP_COMMIT"],
        flush_max_points=v["API_FLUSH_MAX_POINTS"],
        flush_max_delay_s=v["API_FLUSH_MAX_DELAY"] / 1e9,
        flush_in_flight=v["API_FLUSH_IN_FLIGHT"],
        max_pending_points=v["API_MAX_PENDING_POINTS"],
        min_ts_ns=v["API_MIN_TS"],
        max_future_ns=v["API_MAX_FUTURE"],
        retry_after_s=v["API_RETRY_AFTER"],
        startup_backoff_max_s=v["API_STARTUP_BACKOFF_MAX"] / 1e9,
        tokens_file=v["API_TOKENS_FILE"],
        read_limit_max=v["API_READ_LIMIT_MAX"],
        top_cache_s=v["API_TOP_CACHE"] / 1e9,
    )


@functools.cache
def of_process() -> Settings:
    """This process's settings, read once: a worker's app and its HTTP protocol share them. Checked by
    __main__ before uvicorn starts, so a worker never meets a bad value here."""
    return load()
