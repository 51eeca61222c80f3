"""What the parts of the benchmark share: its errors, the request bodies, the real servers it measures."""
from __future__ import annotations

import json
import socket
import subprocess
import time
from contextlib import contextmanager

from ops.errors import OpsError
from ops.servers import ROOT, ApiServer, InfluxServer, free_port, http, wait_until  # noqa: F401  (shared with the tests)

SINGLE_BODY = b'{"type":"temp","value":34,"sensor_id":123}'  # no ts: the api stamps it, a new point each time
WRITE_CONNECTIONS = 64  # the connections of the headline figures, of the writes under reads and of the soak
NOGC = "api single, one write per request"  # the name of the group-commit-off baseline in the results


def batch_bodies(n: int, t0: int = 1_767_225_600 * 10**9) -> tuple[bytes, bytes]:
    """The same n readings (a millisecond apart from T0) as a JSON batch for the api and as line protocol
    for InfluxDB's own /write: the batch scenarios compare the two."""
    readings = [{"ts": f"2026-01-01T00:00:{i // 1000:02d}.{i % 1000:03d}Z", "type": "temp",
                 "value": 20 + (i % 15), "sensor_id": f"bench-{i % 100}"} for i in range(n)]
    lines = "".join(f"data,sensor_id=bench-{i % 100},type=temp value={float(20 + i % 15)!r} {t0 + i * 10**6}\n"
                    for i in range(n))
    return json.dumps(readings).encode(), lines.encode()


def rfc3339_ms(ns: int) -> str:
    """A reading's `ts` to the millisecond (what devices send) for the time NS."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns // 10**6 % 1000:03d}Z"


class BenchError(OpsError):
    """A tool error (a server or wrk failed, readings went missing): one line, exit status 1."""


class OptionError(BenchError):
    """A bad option: one line, exit status 2."""

    exit_code = 2


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


def _connects(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


@contextmanager
def listening(cmd: list[str], port: int, what: str, **popen):
    """A server process (cmd, listening on loopback PORT) for the duration of a `with` block: started,
    waited for until it listens or dies (a bad option, the port taken meanwhile), stopped at the end."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **popen)
    try:
        try:
            wait_until(lambda: proc.poll() is not None or _connects(port), 20, f"{what} listening", interval=0.1)
        except TimeoutError as exc:
            raise BenchError(f"{what} did not start: {exc}") from None
        if proc.poll() is not None:
            raise BenchError(f"{what} did not start: {proc.stderr.read().decode()[-300:]}")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
