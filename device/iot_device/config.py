"""Settings: environment variables (12-factor, what systemd's EnvironmentFile= gives us), with
command-line flags overriding them. Any bad value is a `ConfigError` whose message names the setting;
`__main__` prints it as one line and exits 2.

Standard library only, Python 3.9+: this runs on Raspberry Pi OS's own python3.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_TEMP_PATH = "/sys/class/thermal/thermal_zone0/temp"
DEFAULT_QUEUE_PATH = "/var/lib/iot-device/queue.sqlite3"
COMMANDS = ("run", "status", "rejected")

# The api's own rules for the two tag values (api/iot_api/readings.py). Repeated here rather than
# imported: the agent is copied to the Pi alone and must not need the api's package.
SENSOR_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")
TYPE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,31}\Z")


class ConfigError(Exception):
    """A setting is missing or wrong; the message says which and what is expected."""


@dataclass(frozen=True)
class Settings:
    command: str
    once: bool
    queue_path: str
    log_level: str
    limit: int
    # Only set for `run` (status/rejected must work for an operator who cannot read the token):
    api_url: str | None = None
    token: str | None = None
    token_file: str | None = None
    sensor_id: str = ""
    type: str = "temp"
    interval: float = 60.0
    temp_path: str = DEFAULT_TEMP_PATH
    batch: int = 100
    max_queue: int = 1_000_000
    timeout: float = 10.0
    backoff_min: float = 1.0
    backoff_max: float = 300.0

    @property
    def data_url(self) -> str:
        return (self.api_url or "") + "/data"


class _Parser(argparse.ArgumentParser):
    # argparse would print usage plus an error and exit; we want the one-line ConfigError instead.
    def error(self, message):
        raise ConfigError(message)


def _parser() -> _Parser:
    p = _Parser(
        prog="iot-device",
        description="Raspberry Pi agent: reads the CPU temperature, queues it on disk, sends it to the api. "
                    "Every flag overrides the environment variable named in its help.",
    )
    p.add_argument("command", nargs="?", default="run", choices=COMMANDS,
                   help="run (default): sample and send; status: print the queue state as JSON; "
                        "rejected: print the dead-letter readings as JSON")
    p.add_argument("--once", action="store_true",
                   help="take one reading, try once to send everything queued, exit "
                        "(0: queue empty, 1: no reading taken, 3: readings still queued)")
    p.add_argument("--api-url", help="DEVICE_API_URL, e.g. http://backend:1337 (required to run)")
    p.add_argument("--token-file", help="DEVICE_TOKEN_FILE: file holding the bearer token")
    p.add_argument("--sensor-id", help="DEVICE_SENSOR_ID (default: the hostname)")
    p.add_argument("--type", dest="type_", metavar="TYPE", help="DEVICE_TYPE (default: temp)")
    p.add_argument("--interval", help="DEVICE_INTERVAL: seconds between readings (default: 60)")
    p.add_argument("--temp-path", help=f"DEVICE_TEMP_PATH (default: {DEFAULT_TEMP_PATH})")
    p.add_argument("--queue-path", help=f"DEVICE_QUEUE_PATH (default: $STATE_DIRECTORY/queue.sqlite3, "
                                        f"else {DEFAULT_QUEUE_PATH})")
    p.add_argument("--batch", help="DEVICE_BATCH: readings per request (default: 100)")
    p.add_argument("--max-queue", help="DEVICE_MAX_QUEUE: readings kept on disk at most; when full the "
                                       "oldest are dropped (default: 1000000)")
    p.add_argument("--timeout", help="DEVICE_TIMEOUT: seconds per HTTP request (default: 10)")
    p.add_argument("--backoff-min", help="DEVICE_BACKOFF_MIN: first retry delay in seconds (default: 1)")
    p.add_argument("--backoff-max", help="DEVICE_BACKOFF_MAX: longest retry delay in seconds (default: 300)")
    p.add_argument("--log-level", help="DEVICE_LOG_LEVEL: debug, info, warning or error (default: info)")
    p.add_argument("--limit", help="with `rejected`: how many of the newest to print (default: 100)")
    return p


def load(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from `argv` (flags) over `env` (variables); ConfigError when anything is wrong."""
    env = os.environ if env is None else env
    args = _parser().parse_args(argv)

    def pick(flag, name: str) -> str | None:
        # An empty variable counts as unset: `DEVICE_X=` in an env file is a common way to "unset".
        value = flag if flag is not None else env.get(name)
        if value is None or not value.strip():
            return None
        return value.strip()

    state_dir = env.get("STATE_DIRECTORY", "").split(":")[0]  # systemd's StateDirectory=
    default_queue = os.path.join(state_dir, "queue.sqlite3") if state_dir else DEFAULT_QUEUE_PATH
    common = {
        "command": args.command,
        "once": args.once,
        "queue_path": pick(args.queue_path, "DEVICE_QUEUE_PATH") or default_queue,
        "log_level": _choice(pick(args.log_level, "DEVICE_LOG_LEVEL") or "info", "DEVICE_LOG_LEVEL",
                             ("debug", "info", "warning", "error")),
        "limit": _int(pick(args.limit, "") or "100", "--limit", 1, 1_000_000),
    }
    if args.command != "run":
        if args.once:
            raise ConfigError(f"--once goes with `run`, not `{args.command}`")
        return Settings(**common)

    api_url = _api_url(pick(args.api_url, "DEVICE_API_URL"))
    token, token_file = _token(args.token_file, env)
    sensor_id = pick(args.sensor_id, "DEVICE_SENSOR_ID")
    from_hostname = sensor_id is None
    if from_hostname:
        sensor_id = socket.gethostname()
    if not SENSOR_ID_RE.match(sensor_id):
        where = f"the hostname {sensor_id!r}" if from_hostname else f"DEVICE_SENSOR_ID={sensor_id!r}"
        raise ConfigError(f"{where} is not a valid sensor id (1-64 letters, digits and _ . : -)"
                          + ("; set DEVICE_SENSOR_ID" if from_hostname else ""))
    type_ = pick(args.type_, "DEVICE_TYPE") or "temp"
    if not TYPE_RE.match(type_):
        raise ConfigError(f"DEVICE_TYPE={type_!r}: must start with a letter and use at most 32 letters, "
                          "digits and _ . -")
    backoff_min = _float(pick(args.backoff_min, "DEVICE_BACKOFF_MIN") or "1", "DEVICE_BACKOFF_MIN",
                         0.001, 86400)
    backoff_max = _float(pick(args.backoff_max, "DEVICE_BACKOFF_MAX") or "300", "DEVICE_BACKOFF_MAX",
                         0.001, 86400)
    if backoff_max < backoff_min:
        raise ConfigError(f"DEVICE_BACKOFF_MAX={backoff_max:g} is below DEVICE_BACKOFF_MIN={backoff_min:g}")
    return Settings(
        **common,
        api_url=api_url,
        token=token,
        token_file=token_file,
        sensor_id=sensor_id,
        type=type_,
        interval=_float(pick(args.interval, "DEVICE_INTERVAL") or "60", "DEVICE_INTERVAL", 0.01, 86400),
        temp_path=pick(args.temp_path, "DEVICE_TEMP_PATH") or DEFAULT_TEMP_PATH,
        batch=_int(pick(args.batch, "DEVICE_BATCH") or "100", "DEVICE_BATCH", 1, 100_000),
        max_queue=_int(pick(args.max_queue, "DEVICE_MAX_QUEUE") or "1000000", "DEVICE_MAX_QUEUE",
                       1, 1_000_000_000),
        timeout=_float(pick(args.timeout, "DEVICE_TIMEOUT") or "10", "DEVICE_TIMEOUT", 0.1, 3600),
        backoff_min=backoff_min,
        backoff_max=backoff_max,
    )


def read_token_file(path: str, name: str = "DEVICE_TOKEN_FILE") -> str:
    """The token in a file (surrounding whitespace and the final newline ignored)."""
    try:
        with open(path, encoding="utf-8") as fh:
            token = fh.read().strip()
    except OSError as exc:
        raise ConfigError(f"{name}={path!r}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{name}={path!r}: not UTF-8 text") from None
    _check_token(token, f"{name}={path!r}: the token in it")
    return token


def _check_token(token: str, where: str) -> None:
    if not token:
        raise ConfigError(f"{where} is empty")
    if any(c.isspace() or not c.isprintable() for c in token):
        raise ConfigError(f"{where} contains spaces or control characters")


def _token(flag_file: str | None, env: Mapping[str, str]):
    """(token, token_file). The file is preferred (a secret in a file does not show in the process
    environment); it is re-read by the sender when it changes, so fixing it needs no restart."""
    path = flag_file if flag_file is not None else env.get("DEVICE_TOKEN_FILE", "")
    path = path.strip()
    token = env.get("DEVICE_TOKEN", "").strip()
    if path:
        if token and flag_file is None:
            raise ConfigError("DEVICE_TOKEN and DEVICE_TOKEN_FILE are both set: keep one")
        return read_token_file(path), path
    if token:
        _check_token(token, "DEVICE_TOKEN")
        return token, None
    return None, None


def _api_url(raw: str | None) -> str:
    if raw is None:
        raise ConfigError("DEVICE_API_URL is not set: the api's base URL, e.g. http://backend:1337")
    parts = urlsplit(raw)
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"DEVICE_API_URL={raw!r}: the port is not a number from 1 to 65535") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"DEVICE_API_URL={raw!r}: must be an http(s) URL like http://backend:1337")
    if parts.query or parts.fragment:
        raise ConfigError(f"DEVICE_API_URL={raw!r}: no query or fragment, just the base URL "
                          "(the agent adds /data)")
    return raw.rstrip("/")


def _float(raw: str, name: str, lo: float, hi: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: must be a number of seconds") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ConfigError(f"{name}={raw!r}: must be between {lo:g} and {hi:g}")
    return value


def _int(raw: str, name: str, lo: int, hi: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: must be a whole number between {lo} and {hi}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={raw!r}: must be between {lo} and {hi}")
    return value


def _choice(raw: str, name: str, choices: Sequence[str]) -> str:
    if raw.lower() not in choices:
        raise ConfigError(f"{name}={raw!r}: must be one of {', '.join(choices)}")
    return raw.lower()
