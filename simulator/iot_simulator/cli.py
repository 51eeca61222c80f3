"""Command line (and environment) to a validated Config.

Compatible with the course's script: `-h HOST -p PORT`, so help is `--help` only. Every option can
also come from SIMULATOR_<OPTION> (e.g. SIMULATOR_DEVICES=50, SIMULATOR_DRAIN_TIMEOUT=10), which is how
a container is configured; an option given on the command line wins over its variable.
Any problem is one line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import ipaddress
import math
import os
import re
import sys
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from .stats import EXIT_USAGE
from .values import TypeSpec, parse_types

PROG = "iot-simulator"
ENV_PREFIX = "SIMULATOR_"
SENSOR_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")  # the api's rule for a sensor id
MAX_DEVICES = 100_000


class UsageError(Exception):
    """A bad option or variable; the message is the one line the user sees."""


@dataclass(frozen=True)
class Config:
    url: str  # full URL of the POST endpoint, .../data
    devices: int
    sensor_ids: list
    interval: float
    types: list[TypeSpec]
    count: int | None
    duration: float | None
    batch: int
    token: str | None
    seed: int | None
    uniform: bool
    buffer: int
    timeout: float
    connections: int
    backoff: float
    max_backoff: float
    drain_timeout: float
    progress_interval: float
    json: bool
    verbose: bool

    @property
    def bounded(self) -> bool:
        return self.count is not None or self.duration is not None


# -- value parsers: each raises ValueError with a message that completes "argument --x: ..." ---------
def _int_at_least(low: int, high: int | None = None):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise ValueError(f"must be an integer, got {text!r}") from None
        if v < low:
            raise ValueError(f"must be at least {low}, got {v}")
        if high is not None and v > high:
            raise ValueError(f"must be at most {high}, got {v}")
        return v
    return parse


def _seconds(low: float, strict: bool = False):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise ValueError(f"must be a number of seconds, got {text!r}") from None
        if not math.isfinite(v) or v < low or (strict and v == low):
            raise ValueError(f"must be {'greater than' if strict else 'at least'} {low:g} seconds, got {text}")
        return v
    return parse


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"must be true or false (1/0, yes/no), got {text!r}")


def _text(text: str) -> str:
    return text


def _argtype(parse):
    """Adapt a parser to argparse (which wants ArgumentTypeError for a custom message)."""
    def wrapped(text: str):
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    wrapped.parse = parse
    return wrapped


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise UsageError(message)


# (flags, dest, parser or "flag", metavar, help). The env variable is derived from the long flag.
DEFAULT_HOST, DEFAULT_PORT = "localhost", 1337
OPTIONS = [
    (("-h", "--host"), "host", _text, "HOST", f"api host (default {DEFAULT_HOST}), as in the course's script"),
    (("-p", "--port"), "port", _int_at_least(1, 65535), "PORT", f"api port (default {DEFAULT_PORT})"),
    (("--url",), "url", _text, "URL",
     "api base URL, e.g. http://api:1337 (overrides -h/-p; readings go to URL/data)"),
    (("--devices",), "devices", _int_at_least(1, MAX_DEVICES), "N",
     "number of simulated devices in this process (default 1)"),
    (("--sensor-prefix",), "sensor_prefix", _text, "PREFIX",
     ("sensor ids PREFIX0001, PREFIX0002... (default 'sim-' when --devices > 1; "
      "a single device is sensor 123, like the course)")),
    (("--sensor-id",), "sensor_id", _text, "ID", "sensor id of a single device (default 123)"),
    (("--interval",), "interval", _seconds(0), "SECONDS",
     "time between two readings of a device (default 1; 0 = as fast as possible, load mode)"),
    (("--types",), "types", _text, "LIST",
     ("comma-separated reading types: temp, pressure, humidity, co2, or NAME:MIN:MAX "
      "(default temp). Each tick of a device yields one reading per type, same timestamp")),
    (("--count",), "count", _int_at_least(1), "N",
     ("stop after N ticks per device, i.e. N readings per device and type "
      "(total = devices x types x N); default: run forever")),
    (("--duration",), "duration", _seconds(0, strict=True), "SECONDS",
     "stop generating after this many seconds (with --count: whichever comes first)"),
    (("--batch",), "batch", _int_at_least(1, 100_000), "N",
     ("readings per request (default 1: one JSON object per POST, like the course; "
      "N > 1: a JSON array, sent when N readings are waiting or generation is over)")),
    (("--token",), "token", _text, "TOKEN",
     "api token, sent as 'Authorization: Bearer TOKEN' (visible in ps: prefer --token-file)"),
    (("--token-file",), "token_file", _text, "FILE", "read the api token from FILE (e.g. /run/secrets/api_token)"),
    (("--seed",), "seed", _int_at_least(-(2**63)), "N", "seed for reproducible values (timestamps stay real time)"),
    (("--uniform",), "uniform", "flag", None,
     "independent uniform values (the course's 20-34 integer temperatures) instead of a random walk"),
    (("--buffer",), "buffer", _int_at_least(1), "N",
     "max readings waiting per device (default 1000); when full, the device pauses generating and says so"),
    (("--timeout",), "timeout", _seconds(0, strict=True), "SECONDS",
     "connect and read timeout of a request (default 10); a timed-out request is retried"),
    (("--connections",), "connections", _int_at_least(1, 10_000), "N",
     "max simultaneous HTTP connections shared by all devices (default 100)"),
    (("--backoff",), "backoff", _seconds(0, strict=True), "SECONDS",
     "first retry delay, doubled at each failure, with jitter (default 0.5)"),
    (("--max-backoff",), "max_backoff", _seconds(0, strict=True), "SECONDS",
     "longest retry delay, also caps the api's Retry-After (default 15)"),
    (("--drain-timeout",), "drain_timeout", _seconds(0), "SECONDS",
     ("after generation ends, keep retrying pending readings up to this long (default 30; "
      "after Ctrl-C/SIGTERM at most 5)")),
    (("--progress-interval",), "progress_interval", _seconds(0), "SECONDS",
     "seconds between progress lines on stderr (default 5; 0 = none)"),
    (("--json",), "json", "flag", None, "print the final summary as one JSON line on stdout"),
    (("-v", "--verbose"), "verbose", "flag", None, "log every request's result"),
]

DEFAULTS = {"devices": 1, "sensor_id": "123", "interval": 1.0, "types": "temp", "batch": 1,
            "uniform": False, "buffer": 1000, "timeout": 10.0, "connections": 100, "backoff": 0.5,
            "max_backoff": 15.0, "drain_timeout": 30.0, "progress_interval": 5.0, "json": False,
            "verbose": False}
SIGNAL_DRAIN_MAX = 5.0  # `docker stop` waits 10 s before SIGKILL: drain well within it

EPILOG = f"""\
environment: every option also reads SIMULATOR_<OPTION> (e.g. SIMULATOR_URL, SIMULATOR_DEVICES,
SIMULATOR_TOKEN_FILE, SIMULATOR_UNIFORM=1); the command line wins.

delivery: a reading leaves a device's buffer only when the api answered 201 (stored) or a final 4xx
(rejected, counted, never resent). 503/5xx/408/429, timeouts and connection errors are retried with
exponential backoff and jitter, honouring Retry-After. Resending is safe: a reading is identified by
sensor, type and its nanosecond timestamp, so InfluxDB overwrites rather than duplicates it.

exit status: 0 every generated reading stored; 1 some rejected or still pending at the end;
{EXIT_USAGE} bad usage.

examples:
  {PROG} -h localhost -p 1337                       the course's simulator (sensor 123, 1 reading/s)
  {PROG} --url http://api:1337 --devices 1000 --types temp,humidity --interval 5
  {PROG} --devices 50 --count 100 --interval 0 --batch 20 --json    a bounded load run
"""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter,
                     description="Simulated IoT devices posting readings to the api (POST /data).",
                     epilog=EPILOG)
    parser.add_argument("--help", action="help", help="show this help and exit")
    for flags, dest, parse, metavar, help_ in OPTIONS:
        help_ += f" [{env_name(flags)}]"
        if parse == "flag":
            parser.add_argument(*flags, dest=dest, action="store_const", const=True, default=None, help=help_)
        else:
            parser.add_argument(*flags, dest=dest, type=_argtype(parse), metavar=metavar, default=None,
                                help=help_)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    return parser


def _version() -> str:
    from . import __version__
    return __version__


def env_name(flags: tuple[str, ...]) -> str:
    long = next(f for f in flags if f.startswith("--"))
    return ENV_PREFIX + long[2:].upper().replace("-", "_")


def parse_args(argv: list[str] | None = None, env: dict | None = None) -> Config:
    """Command line + environment -> Config; UsageError with a one-line message on any problem."""
    env = os.environ if env is None else env
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    given = {dest for _, dest, _, _, _ in OPTIONS if getattr(args, dest) is not None}  # on the command line
    values: dict = {}
    for flags, dest, parse, _, _ in OPTIONS:
        value = getattr(args, dest)
        if value is None and env.get(env_name(flags)) is not None:
            raw = env[env_name(flags)]
            try:
                value = _bool(raw) if parse == "flag" else parse(raw)
            except ValueError as exc:
                raise UsageError(f"{env_name(flags)}={raw!r}: {exc}") from None
        values[dest] = DEFAULTS.get(dest) if value is None else value
    return _validate(values, given, env)


def _validate(v: dict, given: set[str], env) -> Config:
    # URL: --url on the command line, else -h/-p on the command line, else SIMULATOR_URL, else host/port.
    if v["url"] is not None and ("url" in given or not ({"host", "port"} & given)):
        url = _data_url(v["url"])
    else:
        url = _data_url(_host_port_url(v["host"] or DEFAULT_HOST, v["port"] or DEFAULT_PORT))

    try:
        types = parse_types(v["types"])
    except ValueError as exc:
        raise UsageError(f"argument --types: {exc}") from None

    devices = v["devices"]
    if devices == 1 and v["sensor_prefix"] is None:
        sid = v["sensor_id"]
        if not SENSOR_ID_RE.match(sid):
            raise UsageError(f"argument --sensor-id: {sid!r} must be 1-64 letters, digits or _ . : -")
        # The course sends the integer 123; an all-digit id stays an integer on the wire.
        sensor_ids = [int(sid) if sid.isdigit() and len(sid) < 19 and (sid == "0" or sid[0] != "0") else sid]
    else:
        if "sensor_id" in given:
            raise UsageError("argument --sensor-id: only for a single device; with --devices use --sensor-prefix")
        prefix = "sim-" if v["sensor_prefix"] is None else v["sensor_prefix"]
        width = max(4, len(str(devices)))
        sensor_ids = [f"{prefix}{i:0{width}d}" for i in range(1, devices + 1)]
        if not SENSOR_ID_RE.match(sensor_ids[-1]):
            raise UsageError(f"argument --sensor-prefix: {prefix!r} gives ids like {sensor_ids[-1]!r}, "
                             "which must be 1-64 letters, digits or _ . : -")

    token = _token(v, given, env)

    if v["buffer"] < v["batch"]:
        raise UsageError(f"argument --buffer: {v['buffer']} is smaller than --batch {v['batch']}")
    if v["buffer"] < len(types):
        raise UsageError(f"argument --buffer: {v['buffer']} cannot hold one tick of {len(types)} types")
    if v["max_backoff"] < v["backoff"]:
        raise UsageError(f"argument --max-backoff: {v['max_backoff']:g} is smaller than --backoff {v['backoff']:g}")

    return Config(url=url, devices=devices, sensor_ids=sensor_ids, interval=v["interval"], types=types,
                  count=v["count"], duration=v["duration"], batch=v["batch"], token=token, seed=v["seed"],
                  uniform=v["uniform"], buffer=v["buffer"], timeout=v["timeout"],
                  connections=v["connections"], backoff=v["backoff"], max_backoff=v["max_backoff"],
                  drain_timeout=v["drain_timeout"], progress_interval=v["progress_interval"],
                  json=v["json"], verbose=v["verbose"])


def _host_port_url(host: str, port: int) -> str:
    if not host or any(c in host for c in "/?#@ "):
        raise UsageError(f"argument -h/--host: {host!r} is not a host name or address")
    try:
        if ipaddress.ip_address(host.strip("[]")).version == 6:
            host = f"[{host.strip('[]')}]"
    except ValueError:
        pass
    return f"http://{host}:{port}"


def _data_url(base: str) -> str:
    """The POST URL from a base URL: http(s), a host, no query; `/data` appended to its path."""
    try:
        parts = urlsplit(base.strip())
        port = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        raise UsageError(f"argument --url: {base!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"argument --url: {base!r} must look like http://HOST:PORT")
    if parts.query or parts.fragment:
        raise UsageError(f"argument --url: {base!r} must not have a query or fragment")
    if port == 0:
        raise UsageError(f"argument --url: {base!r}: port 0")
    path = parts.path.rstrip("/")
    if not path.endswith("/data"):  # accept both http://api:1337 and http://api:1337/data
        path += "/data"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _token(v: dict, given: set[str], env) -> str | None:
    # Command line first (either form), then the environment; two sources at the same level is ambiguous.
    for level in ("cli", "env"):
        direct = v["token"] if ("token" in given) == (level == "cli") else None
        path = v["token_file"] if ("token_file" in given) == (level == "cli") else None
        if direct is not None and path is not None:
            where = "--token and --token-file" if level == "cli" else "SIMULATOR_TOKEN and SIMULATOR_TOKEN_FILE"
            raise UsageError(f"{where}: give one or the other")
        if path is not None:
            try:
                with open(path, encoding="utf-8") as fh:
                    direct = fh.read().strip()
            except OSError as exc:
                raise UsageError(f"token file {path}: {exc.strerror or exc}") from None
            if not direct:
                raise UsageError(f"token file {path} is empty")
        if direct is not None:
            if not direct or any(c in direct for c in "\r\n"):
                raise UsageError("token: must be one non-empty line")
            return direct
    return None
