"""The Raspberry Pi agent end to end: a real `python -m iot_device` process, its temperature file written
by the test, the real api (`python -m iot_api`) and a real InfluxDB.

The issue's test is the first one: the api down for a while, the agent stopped (SIGTERM) and killed
(SIGKILL, as a power cut) and restarted meanwhile, then the api up: every reading the agent took is in
InfluxDB exactly once, with its value and the timestamp it was taken at.
"""
from __future__ import annotations

import calendar
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import ROOT, wait_until

GOOD_TOKEN = "w-device-" + "a" * 24


class Agent:
    """One device: its temperature file, its queue file, and the agent processes run on them."""

    def __init__(self, tmp_path: Path, url: str, sensor_id: str, **env):
        self.dir = tmp_path
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.temp = tmp_path / "thermal_zone0_temp"
        self.queue = tmp_path / "state" / "queue.sqlite3"
        self.log = tmp_path / "agent.log"
        self.sensor_id = sensor_id
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("DEVICE_") and k not in ("STATE_DIRECTORY", "JOURNAL_STREAM")}
        self.env.update(DEVICE_API_URL=url, DEVICE_TEMP_PATH=str(self.temp), DEVICE_QUEUE_PATH=str(self.queue),
                        DEVICE_SENSOR_ID=sensor_id, DEVICE_INTERVAL="0.2", DEVICE_BACKOFF_MIN="0.05",
                        DEVICE_BACKOFF_MAX="0.3", DEVICE_TIMEOUT="3", DEVICE_LOG_LEVEL="debug", **env)
        self.proc: subprocess.Popen | None = None
        self.set_millidegrees(40000)

    def set_millidegrees(self, value: int) -> None:
        # Replaced atomically, as the kernel's file never shows a half-written number.
        tmp = self.temp.with_suffix(".new")
        tmp.write_text(f"{value}\n")
        os.replace(tmp, self.temp)

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "iot_device"], env=self.env, cwd=ROOT,
                                         stdout=log, stderr=log)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if sig == signal.SIGTERM:
            assert code == 0, self.log.read_text()[-2000:]
            assert time.monotonic() - t0 < 3, "SIGTERM did not stop the agent promptly"
        return code

    def run(self, *args, **env) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "iot_device", *args], env={**self.env, **env}, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    def status(self) -> dict:
        proc = self.run("status")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def queued_rows(self) -> list[tuple[str, float]]:
        """(ts, value) of every queued reading, read straight from the agent's SQLite file."""
        with sqlite3.connect(f"file:{self.queue}?mode=ro", uri=True) as db:
            return db.execute("SELECT ts, value FROM queue ORDER BY id").fetchall()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def make_agent(tmp_path):
    agents: list[Agent] = []

    def _make(url: str, sensor_id: str, **env) -> Agent:
        agent = Agent(tmp_path / f"dev{len(agents)}", url, sensor_id, **env)
        agents.append(agent)
        return agent

    yield _make
    for agent in agents:
        agent.close()


def to_us(ts: str) -> int:
    """RFC 3339 UTC (InfluxDB trims trailing zeros of the fraction) -> integer microseconds."""
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z", ts)
    assert m, ts
    secs = calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S"))
    frac = (m.group(7) or "").ljust(9, "0")
    return secs * 1_000_000 + int(frac) // 1000


def stored(influxdb, db: str, sensor_id: str) -> list[tuple[int, float, str]]:
    """(time in µs, value, type) of every point of one sensor in InfluxDB."""
    series = influxdb.query('SELECT "value", "type" FROM "data" WHERE "sensor_id" = $s', db=db,
                            params={"s": sensor_id})
    return [(to_us(t), v, typ) for s in series for t, v, typ in s["values"]]


# -- the test -------------------------------------------------------------------------------------


def test_offline_restarts_and_a_kill_lose_nothing_and_store_nothing_twice(start_api, influxdb, make_agent):
    api = start_api()
    api.stop()  # the api is down; its URL will serve again later
    agent = make_agent(api.url, "pi-offline")
    values = {1: 41000, 2: 42125, 3: 43500, 4: 44750}  # millidegrees, one per agent run

    # Offline: three runs of the agent, the second one killed with SIGKILL (a power cut).
    for run, sig in ((1, signal.SIGTERM), (2, signal.SIGKILL), (3, signal.SIGTERM)):
        agent.set_millidegrees(values[run])
        agent.start()
        before = len(agent.queued_rows()) if agent.queue.exists() else 0
        wait_until(lambda b=before: agent.queue.exists() and len(agent.queued_rows()) >= b + 4, 10,
                   f"run {run} queued readings")
        agent.stop(sig)

    offline = agent.queued_rows()  # nothing was delivered: this is every reading taken so far
    values_seen = {v for _, v in offline}
    assert values_seen == {values[1] / 1000, values[2] / 1000, values[3] / 1000}, values_seen
    assert len({ts for ts, _ in offline}) == len(offline) >= 12
    status = agent.status()
    assert status["queued"] == len(offline) == status["enqueued_total"]
    assert status["sent_total"] == 0 and "cannot reach" in status["last_error"]
    assert influxdb.count(api.db, 'WHERE "sensor_id" = $s', {"s": "pi-offline"}) == 0

    # Online: the api comes back, the agent runs on and delivers the backlog and new readings.
    api.start()
    agent.set_millidegrees(values[4])
    agent.start()
    wait_until(lambda: influxdb.count(api.db, 'WHERE "sensor_id" = $s', {"s": "pi-offline"}) >= len(offline) + 3,
               20, "backlog and new readings in InfluxDB")
    agent.stop()

    status = agent.status()
    points = stored(influxdb, api.db, "pi-offline")
    assert status["queued"] == 0 and status["rejected"] == 0 and status["dropped_total"] == 0
    # Exactly once: as many points as readings taken, one per timestamp, none missing.
    assert len(points) == status["enqueued_total"] == status["sent_total"]
    assert len({t for t, _, _ in points}) == len(points)
    by_time = {t: v for t, v, _ in points}
    for ts, value in offline:  # every offline reading, with its own timestamp and value
        assert by_time.get(to_us(ts)) == value, (ts, value)
    later = sorted(t for t in by_time if t > max(to_us(ts) for ts, _ in offline))
    assert len(later) == len(points) - len(offline) >= 3
    assert all(by_time[t] == values[4] / 1000 for t in later)
    assert {typ for _, _, typ in points} == {"temp"}
    log = agent.log.read_text()
    assert "Traceback" not in log and "sent " in log


def test_values_in_celsius_are_the_files_millidegrees_over_1000(api, influxdb, make_agent):
    agent = make_agent(api.url, "pi-values", DEVICE_TYPE="cpu_temp")
    samples = [48312, 51000, 0, -5250, 85999, 37]
    for millideg in samples:
        agent.set_millidegrees(millideg)
        proc = agent.run("--once")
        assert proc.returncode == 0, proc.stderr
    points = sorted(stored(influxdb, api.db, "pi-values"))
    assert [v for _, v, _ in points] == [m / 1000 for m in samples]
    assert [v for _, v, _ in points][:2] == [48.312, 51.0]
    assert {typ for _, _, typ in points} == {"cpu_temp"}
    # the timestamps are the device's clock when it read the file: recent, in order
    now_us = time.time() * 1e6
    assert all(now_us - 60e6 < t <= now_us + 1e6 for t, _, _ in points)


def test_a_wrong_token_keeps_readings_queued_until_the_token_file_is_fixed(start_api, influxdb, make_agent,
                                                                            tmp_path):
    tokens = tmp_path / "api-tokens"
    tokens.write_text(f"write {GOOD_TOKEN}\n")
    api = start_api(env={"API_TOKENS_FILE": str(tokens)})
    token_file = tmp_path / "device-token"
    token_file.write_text("w-wrong-" + "b" * 24 + "\n")
    agent = make_agent(api.url, "pi-token", DEVICE_TOKEN_FILE=str(token_file))
    agent.start()
    wait_until(lambda: agent.queue.exists() and len(agent.queued_rows()) >= 5, 10, "readings queued")
    status = agent.status()
    assert status["sent_total"] == 0 and "HTTP 401" in status["last_error"]
    assert influxdb.count(api.db, 'WHERE "sensor_id" = $s', {"s": "pi-token"}) == 0
    assert "api refused the token (HTTP 401" in agent.log.read_text()

    # The operator fixes the token file; the running agent picks it up (no restart) and delivers all.
    fixed = tmp_path / "device-token.new"
    fixed.write_text(GOOD_TOKEN + "\n")
    os.replace(fixed, token_file)
    wait_until(lambda: agent.status()["queued"] == 0, 10, "queue drained after the token fix")
    agent.stop()
    status = agent.status()
    assert influxdb.count(api.db, 'WHERE "sensor_id" = $s', {"s": "pi-token"}) == status["enqueued_total"] >= 5
    assert status["rejected"] == 0
    assert GOOD_TOKEN not in agent.log.read_text()


def test_readings_the_api_refuses_go_to_dead_letter_and_the_rest_is_delivered(api, influxdb, make_agent):
    from iot_device.queue import Queue

    agent = make_agent(api.url, "pi-dead")
    # Readings already in the queue (say from a device whose clock was wrong): 25 the api refuses
    # (before API_MIN_TS), more than the 20 problems it lists per answer, mixed with 10 good ones.
    q = Queue(str(agent.queue))
    now = time.time()
    good, bad = [], []
    for i in range(35):
        if i % 7 in (1, 3, 5, 6) or i < 8:
            ts = f"1999-12-31T23:59:{i:02d}.000000Z"
            bad.append(ts)
        else:
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 100 + i)) + ".000000Z"
            good.append(ts)
        q.enqueue({"ts": ts, "type": "temp", "value": 20.0 + i, "sensor_id": "pi-dead"})
    q.close()
    assert len(bad) >= 21 and len(good) >= 5

    proc = agent.run("--once")
    assert proc.returncode == 0, proc.stderr  # the queue is empty: delivered or dead-lettered
    status = agent.status()
    assert status["queued"] == 0 and status["rejected"] == len(bad) == status["rejected_total"]
    assert influxdb.count(api.db, 'WHERE "sensor_id" = $s', {"s": "pi-dead"}) == len(good) + 1  # + the --once reading
    dead = json.loads(agent.run("rejected", "--limit", "1000").stdout)
    assert sorted(d["ts"] for d in dead) == sorted(bad)
    assert all(d["status"] == 422 and d["message"].startswith("ts: ") for d in dead)
    assert "API_MIN_TS" in dead[0]["message"]


def test_batches_larger_than_the_api_accepts_are_halved(start_api, influxdb, make_agent):
    from iot_device.queue import Queue

    api = start_api(env={"API_MAX_BATCH": "8"})
    agent = make_agent(api.url, "pi-batch", DEVICE_BATCH="50")
    q = Queue(str(agent.queue))
    base = time.time() - 60
    for i in range(30):
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base)) + f".{i:06d}Z"
        q.enqueue({"ts": ts, "type": "temp", "value": float(i), "sensor_id": "pi-batch"})
    q.close()
    proc = agent.run("--once")
    assert proc.returncode == 0, proc.stderr
    # 31 queued (30 + the --once reading): 31 -> 413 -> 15 -> 413 -> 7, then batches of 7
    assert "sending batches of 15 from now on" in proc.stderr
    assert "sending batches of 7 from now on" in proc.stderr
    assert influxdb.count(api.db, 'WHERE "sensor_id" = $s', {"s": "pi-batch"}) == 31
    assert agent.status()["rejected"] == 0


def test_influxdb_down_means_503_and_the_agent_retries_until_stored(start_api, private_influxdb, make_agent):
    api = start_api(influx=private_influxdb)
    agent = make_agent(api.url, "pi-influx-down")
    private_influxdb.stop()
    agent.start()
    wait_until(lambda: agent.queue.exists() and "HTTP 503" in (agent.status().get("last_error") or ""), 15,
               "a 503 from the api while InfluxDB is down")
    assert "readings kept" in agent.log.read_text()
    private_influxdb.start()
    wait_until(lambda: agent.status()["queued"] == 0, 20, "queue drained once InfluxDB is back")
    agent.stop()
    status = agent.status()
    n = private_influxdb.count(api.db, 'WHERE "sensor_id" = $s', {"s": "pi-influx-down"})
    assert n == status["enqueued_total"] == status["sent_total"] >= 2
