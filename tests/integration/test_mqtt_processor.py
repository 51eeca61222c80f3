"""The district processor as a real process, against a real mosquitto (the stacks' configuration, its
users and ACL) and a real influxd: what it publishes on `agg/{district}/{type}`.

A short window (10 s) and publication interval (0.2 s) keep the module fast. The window is in event
time, so values leave it when newer readings move the watermark on: the tests give readings explicit
`ts` values instead of waiting for the clock. Each test uses districts and sensors of its own (the
broker keeps retained messages across tests) and a processor of its own.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from harness import InfluxServer, wait_until
from iot_api.timefmt import format_rfc3339
from mqtt_harness import MosquittoServer
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[2]
WINDOW_S = 10
PUBLISH_EVERY_S = 0.2


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def ns(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000


def agg_ts(t: datetime) -> str:
    """An aggregate's `ts` as the processor writes it (InfluxDB's form: trailing zeros trimmed)."""
    return format_rfc3339(ns(t))


def now_ms() -> datetime:
    """Now to the millisecond: what a reading's `ts` carries in these tests."""
    t = datetime.now(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


class Client:
    """A paho client of the test (fleet: publishes; web: reads agg/#), every message kept in order."""

    def __init__(self, broker: MosquittoServer, role: str, subscribe: str | None = None):
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{role}-{uuid.uuid4().hex[:8]}",
                             protocol=mqtt.MQTTv311, clean_session=True)
        self.c.username_pw_set(*broker.credentials(role))
        self.subscribed = threading.Event()
        self.c.on_message = lambda _c, _u, m: self._keep(m)
        self.c.on_subscribe = lambda *_a: self.subscribed.set()
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        if subscribe:
            self.c.subscribe(subscribe, qos=1)
            assert self.subscribed.wait(10)

    def _keep(self, m):
        with self.lock:
            self.messages.append((m.topic, m.payload, bool(m.retain)))

    def publish(self, topic: str, payload, retain: bool = False) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.c.publish(topic, body, qos=1, retain=retain).wait_for_publish(10)

    def on(self, topic: str) -> list[tuple[dict | None, bool]]:
        """Every message on TOPIC so far: (payload, retained); None for an empty (clearing) one."""
        with self.lock:
            return [(json.loads(p) if p else None, r) for t, p, r in self.messages if t == topic]

    def latest(self, topic: str) -> dict | None:
        got = self.on(topic)
        return got[-1][0] if got else None

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture(scope="module")
def broker():
    server = MosquittoServer()
    yield server
    server.close()


@pytest.fixture
def names():
    """Districts and sensors of this test only (district slugs: lowercase ASCII and -)."""
    tag = uuid.uuid4().hex[:6]
    return {"d1": f"t{tag}-q01", "d2": f"t{tag}-q02", "s": [f"t{tag}-{i}" for i in range(6)]}


class Processor:
    def __init__(self, broker: MosquittoServer, influx_url: str, db: str, extra: dict | None = None):
        self.log_path = Path(tempfile.mkstemp(prefix="iot-processor-", suffix=".log")[1])
        env = {**os.environ, **broker.env("processor"), "INFLUXDB_URL": influx_url, "INFLUXDB_DB": db,
               "PROCESSOR_WINDOW": str(WINDOW_S), "PROCESSOR_PUBLISH_EVERY": str(PUBLISH_EVERY_S),
               "MQTT_CLIENT_ID": f"iot-processor-{uuid.uuid4().hex[:6]}", **(extra or {})}
        # api/ on the path: the venv may predate api/pyproject.toml's iot_stream entry.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "api"), env.get("PYTHONPATH")]))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from iot_stream.processor import main; raise SystemExit(main())"],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 15.0) -> None:
        wait_until(lambda: text in self.log() or self.proc.poll() is not None, timeout, f"{text!r} in the log")
        assert text in self.log(), self.log()

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, float]:
        """(exit code, seconds it took) after SIG."""
        if self.proc.poll() is not None:
            return self.proc.returncode, 0.0
        start = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        return code, time.monotonic() - start


@pytest.fixture
def start_processor(broker, influxdb, db_name):
    started: list[Processor] = []

    def _start(influx_url: str | None = None, db: str | None = None, extra: dict | None = None) -> Processor:
        p = Processor(broker, influx_url or influxdb.url, db or db_name, extra)
        started.append(p)
        return p

    yield _start
    for p in started:
        p.stop()
        p.log_path.unlink(missing_ok=True)


@pytest.fixture
def clients(broker):
    made: list[Client] = []

    def _make(role: str, subscribe: str | None = None) -> Client:
        made.append(Client(broker, role, subscribe))
        return made[-1]

    yield _make
    for c in made:
        c.close()


def reading(sensor: str, kind: str, value: float, t: datetime) -> dict:
    return {"ts": iso(t), "type": kind, "value": value, "sensor_id": sensor}


def wait_for(client: Client, topic: str, predicate, what: str, timeout: float = 15.0) -> dict:
    return wait_until(lambda: (lambda p: p if p is not None and predicate(p) else None)(client.latest(topic)),
                      timeout, f"{what} on {topic} (last: {client.latest(topic)})")


# -- the tests -------------------------------------------------------------------------------------
def test_aggregates_per_district_newer_value_replaces_and_old_values_leave(start_processor, clients, names, broker):
    d1, d2, (a, b, c, *_) = names["d1"], names["d2"], names["s"]
    watch = clients("web", "agg/#")
    fleet = clients("fleet")
    proc = start_processor()
    proc.wait_log("warm-up: 0 values")
    t0 = now_ms() - timedelta(seconds=14)  # every ts below is in the past: the wall clock caps the watermark
    fleet.publish(f"iot/{d1}/{a}/temp", reading(a, "temp", 10.0, t0))
    fleet.publish(f"iot/{d1}/{b}/temp", reading(b, "temp", 20.0, t0 + timedelta(seconds=1)))
    fleet.publish(f"iot/{d2}/{c}/temp", reading(c, "temp", 30.5, t0 + timedelta(seconds=2)))
    fleet.publish(f"iot/{d1}/{a}/humidity", reading(a, "humidity", 55.0, t0))

    got = wait_for(watch, f"agg/{d1}/temp", lambda p: p["n"] == 2, "two sensors in d1")
    assert got == {"district": d1, "type": "temp", "mean": 15.0, "min": 10.0, "max": 20.0, "n": 2,
                   "window_s": WINDOW_S, "ts": agg_ts(t0 + timedelta(seconds=1))}
    assert wait_for(watch, f"agg/{d2}/temp", lambda p: p["n"] == 1, "d2")["mean"] == 30.5
    assert wait_for(watch, f"agg/{d1}/humidity", lambda p: p["n"] == 1, "humidity")["mean"] == 55.0

    # a's newer value replaces its older one: a still counts once.
    fleet.publish(f"iot/{d1}/{a}/temp", reading(a, "temp", 14.0, t0 + timedelta(seconds=3)))
    got = wait_for(watch, f"agg/{d1}/temp", lambda p: p["max"] == 20.0 and p["min"] == 14.0, "a's newer value")
    assert (got["mean"], got["n"], got["ts"]) == (17.0, 2, agg_ts(t0 + timedelta(seconds=3)))
    # An older reading of a (out of order, still in the window) does not replace its newest.
    fleet.publish(f"iot/{d1}/{a}/temp", reading(a, "temp", 29.0, t0 + timedelta(seconds=2)))

    # c's reading 10.5 s after t0 + 1 s moves the watermark: b's value (t0 + 1 s) leaves the window, and
    # a's humidity (t0) with it, which empties d1/humidity: its retained message is cleared.
    fleet.publish(f"iot/{d2}/{c}/temp", reading(c, "temp", 31.5, t0 + timedelta(seconds=11.5)))
    got = wait_for(watch, f"agg/{d1}/temp", lambda p: p["n"] == 1, "b left the window")
    assert (got["mean"], got["min"], got["max"]) == (14.0, 14.0, 14.0)
    assert wait_for(watch, f"agg/{d2}/temp", lambda p: p["mean"] == 31.5, "c's newer value")["n"] == 1
    wait_until(lambda: watch.on(f"agg/{d1}/humidity")[-1] == (None, False), 10, "d1/humidity cleared")
    assert all(p is None or p["max"] != 29.0 for p, _ in watch.on(f"agg/{d1}/temp"))

    # Retained: a client that subscribes now gets each current aggregate at once, and none for d1/humidity.
    late = clients("web", "agg/#")
    wait_until(lambda: late.latest(f"agg/{d1}/temp") and late.latest(f"agg/{d2}/temp"), 10, "retained aggregates")
    assert late.on(f"agg/{d1}/temp") == [(watch.latest(f"agg/{d1}/temp"), True)]
    assert late.on(f"agg/{d2}/temp") == [(watch.latest(f"agg/{d2}/temp"), True)]
    assert late.on(f"agg/{d1}/humidity") == []


def test_invalid_readings_are_ignored_counted_and_sigterm_exits_0(start_processor, clients, names):
    d1, (a, b, *_) = names["d1"], names["s"]
    watch = clients("web", f"agg/{d1}/#")
    fleet = clients("fleet")
    proc = start_processor()
    proc.wait_log("warm-up: 0 values")
    t = now_ms() - timedelta(seconds=1)
    bad = [
        (f"iot/{d1}/{a}/temp", b"{not json"),
        (f"iot/{d1}/{a}/temp", json.dumps({"type": "temp", "value": 1.0, "sensor_id": a}).encode()),  # no ts
        (f"iot/{d1}/{a}/temp", json.dumps(reading(a, "temp", "hot", t)).encode()),  # value not a number
        (f"iot/{d1}/{a}/temp", json.dumps(reading(b, "temp", 50.0, t)).encode()),  # topic's sensor differs
        (f"iot/{d1}/{a}/temp", json.dumps([reading(a, "temp", 50.0, t)]).encode()),  # an array
        (f"iot/{d1}/{a}", json.dumps(reading(a, "temp", 50.0, t)).encode()),  # topic without type
        (f"iot/{d1}/{a}/temp", json.dumps(reading(a, "temp", "9" * 300_000, t)).encode()),  # oversized
    ]
    for topic, payload in bad:
        fleet.publish(topic, payload)
    # A sensor glitch (the fleet's -50 °C fault): a valid reading, stored by the historian, but no weather.
    fleet.publish(f"iot/{d1}/{b}/temp", reading(b, "temp", -50.0, t))
    fleet.publish(f"iot/{d1}/{a}/temp", reading(a, "temp", 21.0, t))
    got = wait_for(watch, f"agg/{d1}/temp", lambda p: p["n"] == 1, "the valid reading")
    assert got["mean"] == 21.0 and got["min"] == 21.0
    assert proc.proc.poll() is None  # still running after the bad ones
    code, took = proc.stop(signal.SIGTERM)
    assert code == 0, proc.log()
    assert took < 3, f"SIGTERM took {took:.1f}s"
    stopped = [line for line in proc.log().splitlines() if "stopped:" in line]
    assert stopped and f"invalid={len(bad)}" in stopped[0] and "accepted=1 " in stopped[0], proc.log()
    assert "implausible=1 " in stopped[0], proc.log()
    assert "errors=0" in stopped[0] and "Traceback" not in proc.log(), proc.log()


def test_warm_up_from_influxdb_gives_the_right_first_aggregate(start_processor, clients, names):
    """InfluxDB with auth, read as the reader (INFLUXDB_USER, INFLUXDB_PASSWORD_FILE); each sensor's
    last value within the window, mapped to its district by the retained meta messages."""
    d1, d2, (a, b, c, stale, no_meta, _) = names["d1"], names["d2"], names["s"]
    influx = InfluxServer(auth=True)
    try:
        admin = ("admin", "admin-" + uuid.uuid4().hex)
        influx.query(f"CREATE USER admin WITH PASSWORD '{admin[1]}' WITH ALL PRIVILEGES", auth=admin)
        influx.credentials = admin
        db, reader = "warm_" + uuid.uuid4().hex[:8], "reader-" + uuid.uuid4().hex
        influx.query(f"CREATE DATABASE {db} WITH DURATION INF NAME iot_rp")
        influx.query(f"CREATE USER reader WITH PASSWORD '{reader}'")
        influx.query(f"GRANT READ ON {db} TO reader")
        password_file = Path(tempfile.mkstemp(prefix="iot-reader-")[1])
        password_file.write_text(reader + "\n")

        now = now_ms()
        points = [(a, "temp", 11.0, now - timedelta(seconds=30)),  # a's older value: replaced by the next
                  (a, "temp", 12.0, now - timedelta(seconds=3)),
                  (b, "temp", 18.0, now - timedelta(seconds=2)),
                  (c, "temp", 25.0, now - timedelta(seconds=1)),  # d2
                  (stale, "temp", 99.0, now - timedelta(seconds=60)),  # before the window
                  (no_meta, "temp", 57.0, now - timedelta(seconds=2))]  # no meta message: no district
        status, body = influx.write(db, "".join(f"data,sensor_id={s},type={k} value={v} {ns(t)}\n"
                                                for s, k, v, t in points))
        assert status == 204, body
        fleet = clients("fleet")
        for sensor, district in ((a, d1), (b, d1), (c, d2), (stale, d1)):
            fleet.publish(f"meta/sensors/{sensor}", {"sensor_id": sensor, "district": district, "types": ["temp"]},
                          retain=True)
        watch = clients("web", "agg/#")
        proc = start_processor(influx.url, db, {"INFLUXDB_USER": "reader",
                                                "INFLUXDB_PASSWORD_FILE": str(password_file)})
        first = wait_for(watch, f"agg/{d1}/temp", lambda p: True, "the first aggregate")
        # The first publication is already the whole state: no partial aggregate came before it.
        assert watch.on(f"agg/{d1}/temp")[0][0] == first
        assert first == {"district": d1, "type": "temp", "mean": 15.0, "min": 12.0, "max": 18.0, "n": 2,
                         "window_s": WINDOW_S, "ts": agg_ts(now - timedelta(seconds=2))}
        assert wait_for(watch, f"agg/{d2}/temp", lambda p: True, "d2")["mean"] == 25.0
        proc.wait_log("warm-up: 4 values from InfluxDB (1 waiting")
        # The sensor without meta joins once its meta message comes.
        fleet.publish(f"meta/sensors/{no_meta}", {"sensor_id": no_meta, "district": d2}, retain=True)
        got = wait_for(watch, f"agg/{d2}/temp", lambda p: p["n"] == 2, "the late meta's sensor")
        assert got["mean"] == 41.0
        for sensor in (a, b, c, stale, no_meta):  # leave no retained meta of this test behind
            fleet.publish(f"meta/sensors/{sensor}", b"", retain=True)
        password_file.unlink()
    finally:
        influx.close()


def test_no_publication_before_the_warm_up_and_bad_credentials_are_retried(start_processor, clients, names, db_name):
    """A wrong reader password: the warm-up retries (logged), and nothing is published meanwhile."""
    influx = InfluxServer(auth=True)
    try:
        d1, (a, *_) = names["d1"], names["s"]
        password_file = Path(tempfile.mkstemp(prefix="iot-reader-")[1])
        password_file.write_text("wrong\n")
        watch = clients("web", f"agg/{d1}/#")
        fleet = clients("fleet")
        proc = start_processor(influx.url, db_name, {"INFLUXDB_USER": "reader",
                                                     "INFLUXDB_PASSWORD_FILE": str(password_file)})
        proc.wait_log("warm-up: InfluxDB not readable")
        fleet.publish(f"iot/{d1}/{a}/temp", reading(a, "temp", 21.0, datetime.now(UTC)))
        # An absence cannot be waited for: several publication ticks, none may publish a partial state.
        time.sleep(4 * PUBLISH_EVERY_S)
        assert watch.on(f"agg/{d1}/temp") == []
        password_file.unlink()
    finally:
        influx.close()


def test_a_broker_restart_is_survived(influxdb, db_name, names):
    """A broker of its own, killed and started again under the processor (with nothing saved, so the
    retained aggregate is lost): the processor reconnects, subscribes again and republishes its state."""
    own = MosquittoServer(overrides={"mqtt.autosave_interval": 3600})  # no save before the kill
    made: list[Client] = []
    proc = None
    try:
        d1, (a, *_) = names["d1"], names["s"]
        proc = Processor(own, influxdb.url, db_name, {})
        proc.wait_log("warm-up: 0 values")
        fleet = Client(own, "fleet")
        made.append(fleet)
        fleet.publish(f"iot/{d1}/{a}/temp", reading(a, "temp", 21.0, now_ms() - timedelta(seconds=2)))
        watch = Client(own, "web", "agg/#")
        made.append(watch)
        wait_for(watch, f"agg/{d1}/temp", lambda p: p["mean"] == 21.0, "before the restart")
        for c in made:
            c.close()
        own.restart(signal.SIGKILL)
        proc.wait_log("disconnected from the broker")
        # A new subscriber sees the aggregate again (republished on reconnection), then a new reading.
        watch = Client(own, "web", "agg/#")
        fleet = Client(own, "fleet")
        made[:] = [watch, fleet]
        wait_until(lambda: watch.latest(f"agg/{d1}/temp"), 15, "the aggregate republished after the restart")
        fleet.publish(f"iot/{d1}/{a}/temp", reading(a, "temp", 23.0, now_ms() - timedelta(seconds=1)))
        wait_for(watch, f"agg/{d1}/temp", lambda p: p["mean"] == 23.0, "a reading after the restart")
        code, _ = proc.stop()
        assert code == 0, proc.log()
    finally:
        for c in made:
            c.close()
        if proc:
            proc.stop()
            proc.log_path.unlink(missing_ok=True)
        own.close()
