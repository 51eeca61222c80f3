"""The fleet as a real process against a real mosquitto (ops/servers.py, the stacks' config).

What is shown: every reading on iot/{district}/{sensor_id}/{type} with a payload the api would accept;
retained metadata for all 77 stations; acked (the fleet's PUBACK count) == its ack log == what a
persistent QoS 1 subscriber received, including across a broker restart (SIGTERM) mid-run; SIGTERM
drains and prints one JSON line; an unreachable broker is waited for; refused credentials exit 2.
Subscribers connect as the `web` role (read-only), the fleet as `fleet`.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from harness import free_port, wait_until
from iot_api import config as api_config
from iot_api.readings import Limits, parse_body
from iot_simulator.fleet.run import STATIONS_JSON
from mqtt_harness import MosquittoServer
from paho.mqtt.enums import CallbackAPIVersion

STATIONS = {s["sensor_id"]: s for s in json.loads(STATIONS_JSON.read_text(encoding="utf-8"))["stations"]}
ORDER = list(STATIONS)
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
_api = api_config.load({})  # the api's default reading rules (the historian applies the same)
LIMITS = Limits(max_batch=1, min_ts_ns=_api.min_ts_ns, max_future_ns=_api.max_future_ns,
                retention_ns=_api.retention_ns, measurement=_api.measurement)


def readings_per_tick(n_stations: int) -> int:
    return sum(len(STATIONS[sid]["types"]) for sid in ORDER[:n_stations])


@pytest.fixture
def broker():
    server = MosquittoServer()
    yield server
    server.close()


class Subscriber:
    """A paho client as the web role, in its own network thread, recording every message."""

    def __init__(self, broker: MosquittoServer, topics: list[str], clean: bool = False, client_id: str | None = None):
        self.client_id = client_id or f"test-{uuid.uuid4().hex[:8]}"
        self.messages: list[tuple[str, bytes, bool]] = []
        self.qos: set[int] = set()
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                  protocol=mqtt.MQTTv311, clean_session=clean)
        self.client.username_pw_set(*broker.credentials("web"))
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self.subscribed.wait(10), "the subscriber's SUBACK never came"

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self.qos.add(msg.qos)

    def snapshot(self) -> list[tuple[str, bytes, bool]]:
        with self.lock:
            return list(self.messages)

    def readings(self) -> set[str]:
        """Distinct readings received, as ack-log lines (QoS 1 may deliver one twice)."""
        out = set()
        for topic, payload, _ in self.snapshot():
            if topic.startswith("iot/"):
                r = json.loads(payload)
                out.add(f"{r['sensor_id']} {r['type']} {r['ts']} {r['value']!r}")
        return out

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


class Fleet:
    """`python -m iot_simulator.fleet ARGS` as the fleet role; stderr to a file the test can poll."""

    def __init__(self, tmp: Path, env: dict, *args: str):
        self.ack_log = tmp / f"ack-{uuid.uuid4().hex[:6]}.log"
        self.err_path = tmp / f"fleet-{uuid.uuid4().hex[:6]}.err"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "FLEET_"))} | env
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "iot_simulator.fleet", "--ack-log", str(self.ack_log),
                                          "--progress", "0", *args], env=full_env, stdout=subprocess.PIPE, stderr=err)

    def acked_lines(self) -> list[str]:
        return self.ack_log.read_text().splitlines(keepends=False) if self.ack_log.exists() else []

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def finish(self, timeout: float = 30) -> tuple[int, dict]:
        out, _ = self.proc.communicate(timeout=timeout)
        lines = out.decode().splitlines()
        assert len(lines) == 1, f"stdout must be one JSON line, got {lines!r}; stderr: {self.stderr()}"
        return self.proc.returncode, json.loads(lines[0])

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def run_fleet(tmp_path):
    fleets: list[Fleet] = []

    def start(env: dict, *args: str) -> Fleet:
        fleets.append(Fleet(tmp_path, env, *args))
        return fleets[-1]
    yield start
    for f in fleets:  # only ours, by their Popen handles
        f.kill()


def check_reading(topic: str, payload: bytes) -> dict:
    """The contract of docs/mqtt.md for one reading message; returns the reading."""
    _, district, sid, kind = topic.split("/")
    r = json.loads(payload)
    assert list(r) == ["ts", "type", "value", "sensor_id"], r  # the course's payload, ts always set
    assert (r["sensor_id"], r["type"]) == (sid, kind), (topic, r)
    assert district == STATIONS[sid]["district"] and kind in STATIONS[sid]["types"], topic
    assert TS_RE.match(r["ts"]), r["ts"]
    lines, n = parse_body(payload, LIMITS)  # raises InvalidBody if the api would refuse it
    assert n == 1 and f"sensor_id={sid},type={kind} " in lines[0]
    return r


def test_every_acked_reading_reaches_a_persistent_subscriber_valid_and_meta_is_retained(broker, run_fleet):
    sub = Subscriber(broker, ["iot/#"])
    try:
        fleet = run_fleet(broker.env("fleet"), "--count", "3", "--interval", "0.3", "--seed", "7", "--no-faults")
        rc, summary = fleet.finish()
        expected = 3 * readings_per_tick(77)  # 61 ISS x 3 types + 16 TH x 2, three ticks
        assert rc == 0 and summary["stopped_by"] == "count", summary
        assert (summary["published"], summary["acked"], summary["unacked"]) == (expected, expected, 0), summary
        assert (summary["meta_published"], summary["meta_acked"]) == (77, 77)
        acked = fleet.acked_lines()
        assert len(acked) == len(set(acked)) == expected
        # Exact equality: every acknowledged reading arrived, value for value, and nothing else did.
        wait_until(lambda: sub.readings() >= set(acked), 15, "every acked reading at the subscriber")
        assert sub.readings() == set(acked)
        for topic, payload, _ in sub.snapshot():
            check_reading(topic, payload)
        assert sub.qos == {1}  # published at QoS 1 (a subscription gets min(publish, subscribe))
        # Each station sent each of its types three times, with strictly increasing timestamps.
        per = {}
        for line in acked:
            sid, kind, ts, _ = line.split()
            per.setdefault((sid, kind), []).append(ts)
        assert set(per) == {(sid, k) for sid, st in STATIONS.items() for k in st["types"]}
        assert all(len(v) == 3 and v == sorted(v) and len(set(v)) == 3 for v in per.values())
    finally:
        sub.close()
    # A client arriving afterwards gets the 77 stations' metadata, retained.
    meta = Subscriber(broker, ["meta/sensors/#"], clean=True)
    try:
        wait_until(lambda: len(meta.snapshot()) >= 77, 10, "77 retained meta messages")
        got = {}
        for topic, payload, retained in meta.snapshot():
            doc = json.loads(payload)
            assert retained and topic == f"meta/sensors/{doc['sensor_id']}"
            got[doc["sensor_id"]] = doc
        assert set(got) == set(STATIONS)
        for sid, doc in got.items():
            st = STATIONS[sid]
            assert {k: doc[k] for k in ("district", "district_name", "lat", "lon", "altitude", "kind", "types")} == \
                   {k: st[k] for k in ("district", "district_name", "lat", "lon", "altitude", "kind", "types")}
    finally:
        meta.close()


def test_broker_restarted_mid_run_loses_no_acked_reading(broker, run_fleet):
    # The subscriber makes its persistent session, then goes away: what the broker acks meanwhile waits
    # in its queue, which must survive the restart (the broker's persistence and queue limits).
    sub = Subscriber(broker, ["iot/#"])
    sub.close()
    fleet = run_fleet(broker.env("fleet"), "--stations", "20", "--count", "40", "--interval", "0.2",
                      "--seed", "3", "--no-faults")
    wait_until(lambda: len(fleet.acked_lines()) >= 200, 15, "200 acked readings before the restart")
    broker.stop(signal.SIGTERM)  # mosquitto saves its state on SIGTERM (values: persistence on)
    wait_until(lambda: "connection to the broker lost" in fleet.stderr(), 10, "the fleet seeing the loss")
    broker.start()
    rc, summary = fleet.finish()
    assert rc == 0 and summary["reconnects"] >= 1, (summary, fleet.stderr())
    expected = 40 * readings_per_tick(20)
    assert (summary["published"], summary["acked"], summary["unacked"]) == (expected, expected, 0), summary
    acked = set(fleet.acked_lines())
    assert len(acked) == expected
    sub = Subscriber(broker, ["iot/#"], client_id=sub.client_id)  # the same session, back
    try:
        wait_until(lambda: sub.readings() >= acked, 20, "every acked reading at the subscriber after the restart")
        assert sub.readings() == acked
    finally:
        sub.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_nominal_fleet_is_cheap_and_sigterm_drains_with_a_json_summary(broker, run_fleet):
    fleet = run_fleet(broker.env("fleet"), "--seed", "1")  # 77 stations at 1 Hz, faults on, forever
    per_tick = readings_per_tick(77)
    wait_until(lambda: len(fleet.acked_lines()) >= per_tick, 15, "the first tick acked")
    c0, t0 = cpu_seconds(fleet.proc.pid), time.monotonic()
    time.sleep(4)  # a measurement window, not a wait for a condition
    cpu = (cpu_seconds(fleet.proc.pid) - c0) / (time.monotonic() - t0)
    fleet.proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    rc, summary = fleet.finish(timeout=15)
    assert rc == 0 and time.monotonic() - started < 11, summary  # drain bounded by 10 s
    assert summary["stopped_by"] == "SIGTERM" and summary["unacked"] == 0, summary
    assert summary["acked"] == summary["published"] == len(fleet.acked_lines()) >= 4 * per_tick * 0.9, summary
    # The budget is 25% of a core for all the nominal fleet; it measures ~2-3% here.
    assert cpu < 0.25, f"the nominal fleet used {cpu:.1%} of a core"
    print(f"nominal fleet: {cpu:.1%} of a core over 4 s, {summary['published']} readings")


def test_unreachable_broker_is_waited_for(run_fleet):
    server = MosquittoServer(start=False)
    try:
        fleet = run_fleet(server.env("fleet"), "--stations", "5", "--count", "2", "--interval", "0.2", "--no-faults")
        wait_until(lambda: "unreachable" in fleet.stderr(), 10, "a progress line about the unreachable broker")
        assert fleet.proc.poll() is None  # still trying
        server.start()
        rc, summary = fleet.finish()
        assert rc == 0 and summary["acked"] == summary["published"] == 2 * readings_per_tick(5), summary
        assert summary["meta_acked"] == 5
    finally:
        server.close()


def test_sigterm_while_the_broker_is_unreachable_exits_0_with_a_summary(run_fleet, tmp_path):
    password = tmp_path / "pw"
    password.write_text("x\n")
    env = {"MQTT_HOST": "127.0.0.1", "MQTT_PORT": str(free_port()), "MQTT_USERNAME": "u",
           "MQTT_PASSWORD_FILE": str(password)}
    fleet = run_fleet(env)
    wait_until(lambda: "unreachable" in fleet.stderr(), 10, "a progress line about the unreachable broker")
    fleet.proc.send_signal(signal.SIGTERM)
    rc, summary = fleet.finish(timeout=10)
    assert rc == 0 and summary["published"] == 0 and summary["stopped_by"] == "SIGTERM", summary


def test_refused_credentials_are_one_line_and_exit_2(broker, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "FLEET_"))}
    env |= broker.env("fleet") | {"MQTT_PASSWORD_FILE": str(wrong)}
    p = subprocess.run([sys.executable, "-m", "iot_simulator.fleet"], env=env, capture_output=True, text=True, timeout=30)
    assert p.returncode == 2, p.stderr
    errors = [line for line in p.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "refused user" in errors[0] and "Traceback" not in p.stderr, p.stderr
    assert p.stdout == ""
