"""Graceful stop under load: SIGTERM to a real api process (1 and 2 uvicorn workers) while many
clients post. Every reading answered 201 must be in InfluxDB afterwards (compared as an exact set of
(sensor, type, nanosecond timestamp)), nothing may be stored that was never sent, and the process must
exit 0 within the stop grace period Docker gives it (the stacks' `api.stop_grace_period`).

A short API_FLUSH_MAX_DELAY keeps readings queued in the group-commit writer at any moment, so the
signal always lands with work in flight that the lifespan shutdown has to flush.
"""
from __future__ import annotations

import http.client
import json
import signal
import threading
import time

import pytest
from iot_api.timefmt import parse_duration
from iot_simulator.timestamps import format_ns

from ops import render

CLIENTS = 32
LOAD_BEFORE_SIGNAL = 1500  # acknowledged readings before the signal: the load is really running


class Client(threading.Thread):
    """One keep-alive connection posting unique single readings until told to stop or refused."""

    def __init__(self, port: int, number: int, stop: threading.Event):
        super().__init__(daemon=True)
        self.port, self.sensor, self.stop = port, f"term-{number:02d}", stop
        self.sent: set[tuple[str, str, int]] = set()
        self.acked: set[tuple[str, str, int]] = set()
        self.statuses: dict[int | str, int] = {}
        self.ns = time.time_ns() - 60 * 10**9 + number  # distinct per client, increasing per reading

    def run(self):
        conn = None
        while not self.stop.is_set():
            self.ns += 1000
            key = (self.sensor, "temp", self.ns)
            body = json.dumps({"sensor_id": self.sensor, "type": "temp", "value": 20.5, "ts": format_ns(self.ns)})
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self.sent.add(key)
                conn.request("POST", "/data", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                status = resp.status
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                status = type(exc).__name__  # refused or reset: not acknowledged
                if conn is not None:
                    conn.close()
                conn = None
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status == "ConnectionRefusedError":
                break  # the server is gone: nothing more to acknowledge
            if status != 201 and not isinstance(status, int):
                time.sleep(0.01)
            if status == 201:
                self.acked.add(key)
        if conn is not None:
            conn.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_under_load_stores_every_acknowledged_reading_and_exits_0_in_time(start_api, influxdb, workers):
    grace_s = parse_duration(render.load_values("test")["api"]["stop_grace_period"]) / 1e9
    api = start_api(env={"API_WORKERS": str(workers), "API_FLUSH_MAX_DELAY": "20ms"})
    if workers > 1:  # both workers up: each logs its own InfluxDB setup
        deadline = time.monotonic() + 30
        while api.log().count('"msg":"InfluxDB ready"') < workers and time.monotonic() < deadline:
            time.sleep(0.1)
    stop = threading.Event()
    clients = [Client(api.port, n, stop) for n in range(CLIENTS)]
    for c in clients:
        c.start()
    deadline = time.monotonic() + 60
    while sum(len(c.acked) for c in clients) < LOAD_BEFORE_SIGNAL and time.monotonic() < deadline:
        time.sleep(0.05)
    acked_before = sum(len(c.acked) for c in clients)
    assert acked_before >= LOAD_BEFORE_SIGNAL, f"no real load: {acked_before} acknowledged in 60 s"

    proc = api.proc
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=grace_s + 30)
    except Exception:
        proc.kill()
        raise
    took = time.monotonic() - signalled
    stop.set()
    for c in clients:
        c.join(timeout=60)
    api.proc = None

    sent = set().union(*(c.sent for c in clients))
    acked = set().union(*(c.acked for c in clients))
    statuses: dict = {}
    for c in clients:
        for k, v in c.statuses.items():
            statuses[k] = statuses.get(k, 0) + v
    log = api.log()
    print(f"workers={workers}: stopped {took:.2f} s after SIGTERM, exit {code}; sent {len(sent)}, "
          f"acknowledged {len(acked)} ({len(acked) - acked_before} after the signal); answers {statuses}")
    assert code == 0, log[-3000:]
    assert took < grace_s, f"took {took:.1f} s to stop: Docker would SIGKILL it after {grace_s:.0f} s"
    assert log.count('"msg":"stopped","drained":true') == workers, log[-3000:]

    stored_list = influxdb.points(api.db, "WHERE \"sensor_id\" =~ /^term-/")
    stored = set(stored_list)
    assert len(stored_list) == len(stored)
    missing = acked - stored
    assert not missing, f"{len(missing)} readings answered 201 are not stored, e.g. {sorted(missing)[:3]}"
    assert stored <= sent, f"{len(stored - sent)} stored readings were never sent"
    assert set(statuses) <= {201, "ConnectionRefusedError", "ConnectionResetError", "RemoteDisconnected",
                             "BrokenPipeError"}, statuses
