"""The fleet's command line and environment -> a validated Config; any problem is a UsageError whose
message is the one line printed before exiting 2.

Broker: MQTT_HOST, MQTT_PORT, MQTT_USERNAME, MQTT_PASSWORD_FILE (or MQTT_PASSWORD), MQTT_CLIENT_ID: the
same names and rules as api/iot_stream/mqtt.py, which this image cannot import. Fleet: FLEET_INTERVAL,
FLEET_DURATION, FLEET_COUNT, FLEET_STATIONS, FLEET_SEED, FLEET_NO_FAULTS. The command line wins.
Like the course's simulator, -h/-p are host and port, so help is --help only.
"""
from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass

PROG = "python -m iot_simulator.fleet"
DEFAULT_CLIENT_ID = "iot-fleet"
EXIT_USAGE = 2


class UsageError(Exception):
    """A bad option, variable or secret file; str() is the one line the user sees."""


@dataclass(frozen=True)
class Config:
    host: str
    port: int
    username: str | None
    password: str | None
    client_id: str
    interval: float
    duration: float | None
    count: int | None
    stations: int | None
    seed: int | None
    faults: bool
    ack_log: str | None
    max_pending: int
    drain_timeout: float
    progress: float
    keepalive: int = 30


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, add_help=False,
                description="Toulouse Métropole's 77 weather stations, emulated, publishing to an MQTT broker "
                            "(QoS 1, persistent session). Données: Toulouse Métropole, open data, ODbL.",
                epilog="Summary on exit: one JSON line on stdout (published, acked, unacked). Exit 0 when it ran, "
                       "2 on bad usage. Every reading is iot/{district}/{sensor_id}/{type}, its station's metadata "
                       "the retained meta/sensors/{sensor_id}.")
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("-h", "--host", help="broker host [MQTT_HOST, default localhost]")
    p.add_argument("-p", "--port", help="broker port [MQTT_PORT, default 1883]")
    p.add_argument("--interval", metavar="SECONDS", help="seconds between two readings of a station [FLEET_INTERVAL, default 1]")
    p.add_argument("--duration", metavar="SECONDS", help="stop after this long [FLEET_DURATION, default: run forever]")
    p.add_argument("--count", metavar="N", help="stop after N ticks of every station [FLEET_COUNT]")
    p.add_argument("--stations", metavar="N", help="only the first N stations of stations.json [FLEET_STATIONS, default all 77]")
    p.add_argument("--seed", metavar="N", help="seed for reproducible values and faults [FLEET_SEED]")
    p.add_argument("--no-faults", action="store_true", default=None,
                   help="no outages and no -50 °C glitches [FLEET_NO_FAULTS=1]")
    p.add_argument("--ack-log", metavar="PATH", help="append one line per acknowledged reading: sensor_id type ts value")
    p.add_argument("--max-pending", metavar="N",
                   help="readings handed to the client and not yet acknowledged beyond which the fleet skips ticks "
                        "(bounded memory while the broker is away) [FLEET_MAX_PENDING, default 20000]")
    p.add_argument("--progress", metavar="SECONDS",
                   help="seconds between progress lines on stderr [FLEET_PROGRESS, default 60; 0 none]")
    return p


def _number(name: str, raw: str, kind=float, low: float | None = None, high: float | None = None, strict=False):
    try:
        v = kind(raw)
    except (TypeError, ValueError):
        what = "an integer" if kind is int else "a number"
        raise UsageError(f"{name}={raw!r}: must be {what}") from None
    if kind is float and not math.isfinite(v):
        raise UsageError(f"{name}={raw!r}: must be finite")
    if low is not None and (v < low or (strict and v == low)):
        raise UsageError(f"{name}={raw!r}: must be {'greater than' if strict else 'at least'} {low:g}")
    if high is not None and v > high:
        raise UsageError(f"{name}={raw!r}: must be at most {high:g}")
    return v


def _bool(name: str, raw: str) -> bool:
    t = raw.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off", ""):
        return False
    raise UsageError(f"{name}={raw!r}: must be true or false (1/0)")


def _secret(path: str, name: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().strip()
    except OSError as exc:
        raise UsageError(f"{name}={path}: cannot read it ({exc.strerror})") from None
    if not value:
        raise UsageError(f"{name}={path}: the file is empty")
    return value


def parse(argv: list[str], environ=os.environ) -> Config:
    a = build_parser().parse_args(argv)

    def pick(flag_value, flag: str, env: str, default=None):
        """(name for messages, raw text): the flag if given, else the variable, else the default."""
        if flag_value is not None:
            return flag, flag_value
        if environ.get(env, "") != "":
            return env, environ[env]
        return env, default

    name, host = pick(a.host, "--host", "MQTT_HOST", "localhost")
    host = host.strip()
    if not host or any(c in host for c in "/?#@ "):
        raise UsageError(f"{name}={host!r}: not a host name or address")
    name, raw = pick(a.port, "--port", "MQTT_PORT", "1883")
    port = _number(name, raw, int, 1, 65535)
    username = environ.get("MQTT_USERNAME") or None
    password = environ.get("MQTT_PASSWORD") or None
    if environ.get("MQTT_PASSWORD_FILE"):
        password = _secret(environ["MQTT_PASSWORD_FILE"], "MQTT_PASSWORD_FILE")
    if password and not username:
        raise UsageError("MQTT_PASSWORD_FILE is set but MQTT_USERNAME is not")
    client_id = environ.get("MQTT_CLIENT_ID", DEFAULT_CLIENT_ID).strip()
    if not client_id or len(client_id) > 92:
        raise UsageError(f"MQTT_CLIENT_ID={client_id!r}: must be 1-92 characters")

    # 10 ms at least: timestamps have millisecond resolution and must differ between a station's ticks.
    name, raw = pick(a.interval, "--interval", "FLEET_INTERVAL", "1")
    interval = _number(name, raw, float, 0.01)
    name, raw = pick(a.duration, "--duration", "FLEET_DURATION")
    duration = None if raw is None else _number(name, raw, float, 0, strict=True)
    name, raw = pick(a.count, "--count", "FLEET_COUNT")
    count = None if raw is None else _number(name, raw, int, 1)
    name, raw = pick(a.stations, "--stations", "FLEET_STATIONS")
    stations = None if raw is None else _number(name, raw, int, 1)
    name, raw = pick(a.seed, "--seed", "FLEET_SEED")
    seed = None if raw is None else _number(name, raw, int)
    no_faults = a.no_faults if a.no_faults is not None else _bool("FLEET_NO_FAULTS", environ.get("FLEET_NO_FAULTS", ""))
    name, raw = pick(a.max_pending, "--max-pending", "FLEET_MAX_PENDING", "20000")
    max_pending = _number(name, raw, int, 100, 60000)  # below paho's 65,535 message ids
    name, raw = pick(a.progress, "--progress", "FLEET_PROGRESS", "60")
    progress = _number(name, raw, float, 0)
    if a.ack_log is not None:
        try:
            with open(a.ack_log, "a", encoding="utf-8"):
                pass
        except OSError as exc:
            raise UsageError(f"--ack-log={a.ack_log}: cannot write it ({exc.strerror})") from None
    return Config(host=host, port=port, username=username, password=password, client_id=client_id,
                  interval=interval, duration=duration, count=count, stations=stations, seed=seed,
                  faults=not no_faults, ack_log=a.ack_log, max_pending=max_pending, drain_timeout=10.0,
                  progress=progress)
