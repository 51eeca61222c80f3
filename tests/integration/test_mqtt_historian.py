"""The historian's behaviour on the real components: mosquitto (the stacks' configuration), InfluxDB 1.x
and `python -m iot_stream historian` as a real process. Readings are published by a paho client in
the test at QoS 1; a reading counts as sent only once the broker PUBACKed it.

The helpers here (HistorianProcess, Publisher, ...) are shared with test_mqtt_no_loss.py.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from harness import ROOT, wait_until
from mqtt_harness import MosquittoServer
from paho.mqtt.enums import CallbackAPIVersion

# -- helpers (also imported by test_mqtt_no_loss.py) ---------------------------------------------------


def create_db(influx, db: str) -> None:
    influx.query(f'CREATE DATABASE "{db}"')  # the api creates it in a stack; autogen is the RP here


def broker_with_deadletter_reader(overrides: dict | None = None) -> MosquittoServer:
    """A broker exactly as the stacks configure it (users, ACL, persistence): its `web` user reads
    deadletter/#, as an operator watching the dead letters does."""
    return MosquittoServer(overrides=overrides)


class HistorianProcess:
    """`python -m iot_stream historian` against BROKER and INFLUX's DB; stats from its heartbeat file."""

    def __init__(self, broker: MosquittoServer, influx, db: str, env: dict | None = None, start: bool = True):
        self.tmp = broker.tmp
        self.heartbeat = self.tmp / f"historian-{uuid.uuid4().hex[:6]}.heartbeat"
        self.log_path = self.tmp / "historian.log"
        self.env = {**os.environ, **broker.env("historian"), "INFLUXDB_URL": influx.url, "INFLUXDB_DB": db,
                    "INFLUXDB_RP": "autogen", "INFLUXDB_MEASUREMENT": "data",
                    "HISTORIAN_HEARTBEAT_FILE": str(self.heartbeat), **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.runs = 0
        if start:
            self.start()

    def start(self, wait_subscribed: bool = True) -> None:
        self.heartbeat.unlink(missing_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "iot_stream", "historian"], env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.runs += 1
        if wait_subscribed:
            wait_until(lambda: self.alive() and self.stats().get("subscribed"), 20, "the historian subscribed")

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"historian exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        return True

    def stats(self) -> dict:
        try:
            return json.loads(self.heartbeat.read_text())
        except (OSError, ValueError):
            return {}

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        if not self.proc or self.proc.poll() is not None:
            return None if not self.proc else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"historian did not stop within {timeout} s after {sig!r}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def utc(ns: int) -> str:
    s, frac = divmod(ns, 10**9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{frac:09d}Z"


class Publisher:
    """A paho QoS 1 publisher (the fleet's role) that records exactly which readings the broker
    acknowledged: `acked()` is the set of (sensor_id, type, ns) whose PUBACK arrived. It reconnects
    by itself; paho re-sends unacknowledged messages after a reconnect."""

    def __init__(self, broker: MosquittoServer, role: str = "fleet"):
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-pub-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv311, clean_session=True)
        self.client.username_pw_set(*broker.credentials(role))
        self.client.max_inflight_messages_set(1000)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.sent: list[tuple[tuple, mqtt.MQTTMessageInfo]] = []
        # Message ids whose PUBACK arrived (on_publish). Not info.is_published(): it raises for a message
        # first published while disconnected even once paho re-sent it and the broker acknowledged it.
        self.pubacked: set[int] = set()
        self.client.on_publish = lambda c, u, mid, rc, p: self.pubacked.add(mid)
        self.publish_time: dict[tuple, float] = {}
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        # Readings of the past minutes: unique (sensor, time) points, well inside every limit.
        self.t0 = time.time_ns() - 600 * 10**9
        self.n = 0

    def reading(self, sensor: str = "tls-1", kind: str = "temp", district: str = "q01", ts_ns: int | None = None,
                value: float | None = None) -> tuple:
        """Publish one valid reading; returns its point (sensor_id, type, ns)."""
        self.n += 1
        ns = ts_ns if ts_ns is not None else self.t0 + self.n * 1000  # distinct microseconds
        key = (sensor, kind, ns)
        payload = json.dumps({"ts": utc(ns), "type": kind, "value": value if value is not None else 20 + self.n % 7,
                              "sensor_id": sensor})
        self.publish_time[key] = time.monotonic()
        self.sent.append((key, self.client.publish(f"iot/{district}/{sensor}/{kind}", payload, qos=1)))
        return key

    def raw(self, topic: str, payload: bytes | str, retain: bool = False) -> mqtt.MQTTMessageInfo:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        return info

    def many(self, n: int, sensors: int = 20, rate: float | None = None, stop: threading.Event | None = None) -> None:
        """N readings spread over SENSORS sensors; paced at RATE per second when given."""
        started = time.monotonic()
        for i in range(n):
            if stop is not None and stop.is_set():
                return
            self.reading(sensor=f"tls-{i % sensors}")
            if rate:
                ahead = started + (i + 1) / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)

    def acked(self) -> set[tuple]:
        pubacked = self.pubacked  # a test publishes far fewer than 65,535 messages: an id is never reused
        return {key for key, info in self.sent if info.mid in pubacked}

    def wait_all_acked(self, timeout: float = 60) -> set[tuple]:
        wait_until(lambda: len(self.acked()) == len(self.sent), timeout,
                   f"the broker's PUBACK of all {len(self.sent)} readings", interval=0.1)
        return self.acked()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Subscriber:
    """Records every message on TOPIC (a test observer, clean session)."""

    def __init__(self, broker: MosquittoServer, role: str, topic: str):
        self.messages: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-sub-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv311, clean_session=True)
        self.client.username_pw_set(*broker.credentials(role))
        subscribed = threading.Event()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        assert subscribed.wait(10), "the test's subscriber was not subscribed"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def stored(influx, db: str) -> list[tuple]:
    """Every stored reading as (sensor_id, type, ns), duplicates kept (a list, not a set)."""
    return influx.points(db)


def assert_exactly(influx, db: str, acked: set[tuple], timeout: float = 60) -> list[tuple]:
    """Wait until InfluxDB holds as many readings as the broker acknowledged, then: the same set, and
    no point twice (InfluxDB would hold one point per series and time anyway: the count proves it)."""
    try:
        wait_until(lambda: influx.count(db) >= len(acked), timeout, f"{len(acked)} readings stored", interval=0.2)
    except TimeoutError:
        pass  # the comparison below names what is missing
    points = stored(influx, db)
    assert len(points) == len(set(points)), "a point stored twice"
    missing, extra = acked - set(points), set(points) - acked
    assert not missing and not extra, f"{len(missing)} acknowledged readings missing (e.g. {sorted(missing)[:3]}), " \
                                      f"{len(extra)} stored that the broker never acknowledged (e.g. {sorted(extra)[:3]})"
    assert len(points) == len(acked)
    return points


# -- fixtures -------------------------------------------------------------------------------------------

@pytest.fixture
def broker():
    server = broker_with_deadletter_reader()
    yield server
    server.close()


@pytest.fixture
def db(influxdb, db_name):
    create_db(influxdb, db_name)
    return db_name


@pytest.fixture
def historian(broker, influxdb, db):
    proc = HistorianProcess(broker, influxdb, db)
    yield proc
    proc.stop(signal.SIGKILL)


@pytest.fixture
def publisher(broker):
    pub = Publisher(broker)
    yield pub
    pub.close()


# -- tests ----------------------------------------------------------------------------------------------

def test_readings_stored_and_acked_then_sigterm_exits_0(broker, influxdb, db, historian, publisher):
    """Valid readings are stored as the api would store them, and every one is acknowledged: a second
    historian on the same session gets nothing redelivered. SIGTERM ends with 0."""
    keys = [publisher.reading(sensor=f"tls-{i % 5}", kind=("temp", "humidity")[i % 2]) for i in range(300)]
    acked = publisher.wait_all_acked()
    assert acked == set(keys)
    assert_exactly(influxdb, db, acked)
    row = influxdb.query('SELECT "value" FROM "data" WHERE "sensor_id" = \'tls-0\' LIMIT 1', db=db)[0]
    assert row["columns"] == ["time", "value"]
    wait_until(lambda: historian.stats().get("acked") == 300, 10, "300 acks in the heartbeat")
    assert historian.stop() == 0
    historian.start()  # the same client id and session: anything unacknowledged would come again
    wait_until(lambda: historian.stats().get("connects") == 1, 10, "the second historian connected")
    time.sleep(0.5)  # redelivery is immediate on connect; nothing may come
    assert historian.stats()["received"] == 0, historian.stats()


def test_invalid_readings_dead_lettered_counted_valid_ones_kept(broker, influxdb, db, historian, publisher):
    """Every kind of bad message is acknowledged, counted and dead-lettered with its reason; the valid
    readings around them are stored; the historian never stops."""
    letters = Subscriber(broker, "web", "deadletter/#")
    try:
        good = [publisher.reading(sensor="tls-9")]
        now = time.time_ns()
        bad = {
            "iot/q01/tls-9/temp": ["{not json", "[]", '{"type": "temp", "value": 1, "sensor_id": "tls-9"}',  # no ts
                                   json.dumps({"ts": utc(now), "type": "temp", "value": "warm", "sensor_id": "tls-9"}),
                                   json.dumps({"ts": utc(now), "type": "temp", "value": 1, "sensor_id": "tls-8"}),
                                   json.dumps({"ts": utc(now), "type": "temp", "value": 1, "sensor_id": "tls-9", "x": 1}),
                                   json.dumps({"ts": utc(now + 7200 * 10**9), "type": "temp", "value": 1,
                                               "sensor_id": "tls-9"}),
                                   b"\xff\xfe", "x" * 70_000],
            "iot/q01/tls-9/pressure": [json.dumps({"ts": utc(now), "type": "temp", "value": 1, "sensor_id": "tls-9"})],
            "iot/q01/tls-9": [json.dumps({"ts": utc(now), "type": "temp", "value": 1, "sensor_id": "tls-9"})],
        }
        n_bad = 0
        for topic, payloads in bad.items():
            for payload in payloads:
                publisher.raw(topic, payload)
                n_bad += 1
        good.append(publisher.reading(sensor="tls-9"))
        publisher.wait_all_acked()
        wait_until(lambda: len(letters.messages) >= n_bad, 15, f"{n_bad} dead letters")
        assert_exactly(influxdb, db, set(good))
        wait_until(lambda: historian.stats().get("deadlettered") == n_bad, 5, "the dead letters counted")
        by_payload = {json.loads(p)["payload"][:20]: json.loads(p) for _, p in letters.messages}
        assert all(t.startswith("deadletter/iot/q01/tls-9") for t, _ in letters.messages)
        assert "malformed JSON" in by_payload["{not json"]["error"]
        no_ts = by_payload['{"type": "temp", "va']
        assert {"index": None, "field": "ts", "message": "is required on MQTT"} in no_ts["problems"]
        mismatch = [json.loads(p) for t, p in letters.messages if t == "deadletter/iot/q01/tls-9/pressure"][0]
        assert mismatch["error"] == "the topic and the payload disagree"
        assert mismatch["problems"][0]["field"] == "type"
        assert len(by_payload["x" * 20]["payload"]) <= 4096  # oversized: not parsed, text cut
        assert historian.alive()
        assert historian.stats()["acked"] == len(good) + n_bad  # the bad ones too: never redelivered
    finally:
        letters.close()


def test_aggregates_stored_in_district(broker, influxdb, db, historian):
    """The processor's retained agg/{district}/{type} lands in measurement `district`; a bad one is
    dead-lettered."""
    processor = Publisher(broker, role="processor")
    try:
        ts = time.time_ns() // 10**9 * 10**9 - 10 * 10**9
        agg = {"district": "q15", "type": "temp", "mean": 21.25, "min": 19.8, "max": 23, "n": 4, "window_s": 300,
               "ts": utc(ts)}
        processor.raw("agg/q15/temp", json.dumps(agg), retain=True).wait_for_publish(5)
        processor.raw("agg/q16/temp", json.dumps({**agg, "n": -1}), retain=True).wait_for_publish(5)
        wait_until(lambda: influxdb.query('SELECT * FROM "district"', db=db, epoch="ns"), 10, "the aggregate stored")
        series = influxdb.query('SELECT * FROM "district"', db=db, epoch="ns")[0]
        rows = [dict(zip(series["columns"], v, strict=True)) for v in series["values"]]
        assert rows == [{"time": ts, "district": "q15", "type": "temp", "mean": 21.25, "min": 19.8, "max": 23.0, "n": 4}]
        wait_until(lambda: historian.stats().get("deadlettered") == 1, 5, "the bad aggregate dead-lettered")
        assert historian.stats()["aggregates_stored"] == 1
        # The processor clears an emptied district with an empty retained payload: acked, nothing stored,
        # not a dead letter.
        processor.raw("agg/q15/temp", b"", retain=True).wait_for_publish(5)
        wait_until(lambda: historian.stats().get("aggregates_cleared") == 1, 5, "the cleared aggregate taken")
        wait_until(lambda: historian.stats().get("acked") == 3, 5, "the three aggregate messages acked")
        assert historian.stats()["deadlettered"] == 1
        assert len(influxdb.query('SELECT * FROM "district"', db=db)[0]["values"]) == 1
    finally:
        processor.close()


def test_refused_point_bisected_and_dead_lettered(broker, influxdb, db, historian, publisher):
    """A 400 partial write (a field type conflict: `value` stored as a string by someone else) refuses
    one point of a batch: that point is dead-lettered, the rest of the batch stored and acknowledged."""
    letters = Subscriber(broker, "web", "deadletter/#")
    try:
        # InfluxDB checks a field's type per measurement and shard (autogen: 7 days): 30 days ago, apart.
        conflict_ns = time.time_ns() - 30 * 86400 * 10**9
        status, _ = influxdb.write(db, f'data,sensor_id=tls-x,type=temp value="text" {conflict_ns - 1}')
        assert status == 204
        keys = [publisher.reading(sensor="tls-ok") for _ in range(50)]
        keys.append(publisher.reading(sensor="tls-x", ts_ns=conflict_ns))
        keys += [publisher.reading(sensor="tls-ok") for _ in range(50)]
        publisher.wait_all_acked()
        wait_until(lambda: letters.messages, 15, "the refused point dead-lettered")
        topic, payload = letters.messages[0]
        assert topic == "deadletter/iot/q01/tls-x/temp"
        assert "InfluxDB refused the point" in json.loads(payload)["error"]
        ok = [k for k in keys if k[0] == "tls-ok"]
        wait_until(lambda: influxdb.count(db, "WHERE sensor_id = 'tls-ok'") == len(ok), 10, "the rest stored")
        wait_until(lambda: historian.stats().get("acked") == len(keys), 5, "every message acked")
        assert historian.stats()["deadlettered"] == 1
    finally:
        letters.close()


def test_publish_to_queryable_latency_p95(broker, influxdb, db, historian, publisher):
    """Publish -> queryable in InfluxDB, per reading, at a steady 500 readings/s (the default batch of
    200 ms): p95 must be under 2 s. A poller records when each point first answers a query."""
    seen: dict[int, float] = {}
    done = threading.Event()

    def poll():
        while not done.is_set():
            now = time.monotonic()
            for _, _, ns in stored(influxdb, db):
                seen.setdefault(ns, now)
            time.sleep(0.02)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    publisher.many(1000, rate=500)
    acked = publisher.wait_all_acked()
    wait_until(lambda: len(seen) >= len(acked), 20, "every reading queryable")
    done.set()
    poller.join()
    latencies = sorted(seen[ns] - publisher.publish_time[key] for key in acked for ns in [key[2]])
    p50, p95, p99 = (latencies[int(len(latencies) * q) - 1] for q in (0.5, 0.95, 0.99))
    print(f"\npublish -> queryable in InfluxDB, {len(latencies)} readings at 500/s: "
          f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")
    assert p95 < 2.0


def test_bad_settings_one_line_exit_2(broker, influxdb, db):
    """A bad setting stops the historian at once with one line naming it, status 2."""
    for env, name in (({"HISTORIAN_BATCH_MAX": "0"}, "HISTORIAN_BATCH_MAX"), ({"MQTT_PORT": "x"}, "MQTT_PORT"),
                      ({"INFLUXDB_PASSWORD_FILE": "/nonexistent"}, "INFLUXDB_PASSWORD_FILE")):
        proc = subprocess.run([sys.executable, "-m", "iot_stream", "historian"], capture_output=True, text=True,
                              env={**os.environ, **broker.env("historian"), **env}, timeout=30, cwd=ROOT)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and name in lines[0], proc.stderr


def test_check_historian_reads_the_heartbeat(broker, influxdb, db, historian, tmp_path):
    """The container healthcheck: 0 with a fresh heartbeat, 1 with none or a stale one."""
    def check(path, max_age="15"):
        return subprocess.run([sys.executable, "-m", "iot_stream", "check", "historian"], capture_output=True,
                              env={**os.environ, "HISTORIAN_HEARTBEAT_FILE": str(path),
                                   "HISTORIAN_HEARTBEAT_MAX_AGE": max_age}, timeout=30).returncode

    assert check(historian.heartbeat) == 0
    assert check(tmp_path / "none") == 1
    historian.stop(signal.SIGKILL)
    old = time.time() - 60
    os.utime(historian.heartbeat, (old, old))
    assert check(historian.heartbeat) == 1
    assert check(Path("/nonexistent/x")) == 1
