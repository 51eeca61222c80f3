"""What the parts of the benchmark share: its errors, the request bodies, the real servers it measures."""
from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from harness import ApiServer, InfluxServer, free_port, http, wait_until  # noqa: E402,F401  (the tests' real processes)

SINGLE_BODY = b'{"type":"temp","value":34,"sensor_id":123}'  # no ts: the api stamps it, a new point each time
WRITE_CONNECTIONS = 64  # the connections of the headline figures, of the writes under reads and of the soak
NOGC = "api single, one write per request"  # the name of the group-commit-off baseline in the results


def rfc3339_ms(ns: int) -> str:
    """A reading's `ts` to the millisecond (what devices send) for the time NS."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns // 10**6 % 1000:03d}Z"


class BenchError(Exception):
    """A tool error (a server or wrk failed, readings went missing): one line, exit status 1."""


class OptionError(BenchError):
    """A bad option: one line, exit status 2."""


def start_influx() -> InfluxServer:
    try:
        return InfluxServer()
    except (RuntimeError, TimeoutError, OSError) as exc:
        raise BenchError(f"influxd did not start: {exc}") from None


def start_api(influx: InfluxServer, db: str, workers: int, **env: str) -> ApiServer:
    """The api as in production (its defaults, `workers` processes), open: no tokens, no InfluxDB auth."""
    try:
        return ApiServer(influx.url, db, {"API_WORKERS": str(workers), "API_LOG_LEVEL": "warning", **env})
    except (RuntimeError, TimeoutError) as exc:
        raise BenchError(f"the api did not start: {exc}") from None
