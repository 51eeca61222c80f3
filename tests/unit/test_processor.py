"""The district processor's message parsing and settings (api/iot_stream/processor.py); the processor
itself, with a real broker and InfluxDB, is in tests/integration/test_mqtt_processor.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from iot_api.config import ConfigError
from iot_api.timefmt import parse_rfc3339
from iot_stream.processor import DEFAULT_CLIENT_ID, Invalid, Settings, parse_meta, parse_reading

ROOT = Path(__file__).resolve().parents[2]

SETTINGS = Settings({})
LIMITS = SETTINGS.limits
TS = "2026-01-03T10:00:00.123Z"  # in the past: a reading more than API_MAX_FUTURE ahead is invalid
TS_NS = parse_rfc3339(TS)


def body(**fields) -> bytes:
    return json.dumps({"ts": TS, "type": "temp", "value": 21.4, "sensor_id": "tls-63", **fields}).encode()


def test_a_valid_reading():
    assert parse_reading("iot/q15/tls-63/temp", body(), LIMITS) == ("q15", "tls-63", "temp", TS_NS, 21.4)
    assert parse_reading("iot/blagnac/7/temp", body(sensor_id=7, value=3), LIMITS) == ("blagnac", "7", "temp", TS_NS, 3.0)


@pytest.mark.parametrize(("topic", "payload", "why"), [
    ("iot/q15/tls-63/temp", b"{nope", "malformed JSON"),
    ("iot/q15/tls-63/temp", b"", "empty"),
    ("iot/q15/tls-63/temp", json.dumps({"type": "temp", "value": 1, "sensor_id": "tls-63"}).encode(), "ts is required"),
    ("iot/q15/tls-63/temp", body(value="21"), "value must be a number"),
    ("iot/q15/tls-63/temp", body(value=True), "invalid"),
    ("iot/q15/tls-63/temp", body(ts="2026-13-03T10:00:00Z"), "invalid"),
    ("iot/q15/tls-63/temp", body(ts="1999-12-31T23:59:59Z"), "invalid"),  # before API_MIN_TS
    ("iot/q15/tls-63/temp", body(extra=1), "extra unknown field"),
    ("iot/q15/tls-63/temp", body(ts="2099-01-01T00:00:00Z"), "in the future"),
    ("iot/q15/tls-63/temp", b"[" + body() + b"]", "one reading object"),
    ("iot/q15/tls-64/temp", body(), "differs"),
    ("iot/q15/tls-63/humidity", body(), "differs"),
    ("iot/Q15/tls-63/temp", body(), "district"),
    ("iot/q15/tls-63", body(), "topic"),
    ("iot/q15/tls-63/temp/x", body(), "topic"),
])
def test_invalid_readings_say_why(topic, payload, why):
    with pytest.raises(Invalid, match=why):
        parse_reading(topic, payload, LIMITS)


def test_meta_messages():
    meta = json.dumps({"sensor_id": "tls-63", "district": "q15", "lat": 43.58}).encode()
    assert parse_meta("meta/sensors/tls-63", meta) == ("tls-63", "q15")
    assert parse_meta("meta/sensors/tls-63", b"") == ("tls-63", None)  # the retained message was cleared
    for topic, payload in [("meta/sensors/tls-64", meta), ("meta/sensors/tls-63", b"{"),
                           ("meta/sensors/tls-63", b'{"district": 15}'), ("meta/sensors/a b", meta)]:
        with pytest.raises(Invalid):
            parse_meta(topic, payload)


def test_settings_defaults_and_bounds():
    assert (SETTINGS.window_s, SETTINGS.publish_every_s, SETTINGS.broker.client_id) == (300.0, 2.0, DEFAULT_CLIENT_ID)
    assert DEFAULT_CLIENT_ID == "iot-processor"
    s = Settings({"PROCESSOR_WINDOW": "2.5", "PROCESSOR_PUBLISH_EVERY": "0.1", "MQTT_CLIENT_ID": "p2"})
    assert (s.window_ns, s.publish_every_s, s.broker.client_id) == (2_500_000_000, 0.1, "p2")
    for env in ({"PROCESSOR_WINDOW": "0"}, {"PROCESSOR_WINDOW": "nan"}, {"PROCESSOR_PUBLISH_EVERY": "x"},
                {"MQTT_PORT": "0"}, {"INFLUXDB_URL": "ftp://x"}, {"INFLUXDB_USER": "reader"}):
        with pytest.raises(ConfigError):
            Settings(env)


@pytest.mark.parametrize(("env", "names"), [
    ({"PROCESSOR_WINDOW": "five minutes"}, "PROCESSOR_WINDOW"),
    ({"MQTT_PASSWORD_FILE": "/nonexistent/password", "MQTT_USERNAME": "p"}, "MQTT_PASSWORD_FILE"),
    ({"INFLUXDB_PASSWORD_FILE": "/nonexistent/password", "INFLUXDB_USER": "r"}, "INFLUXDB_PASSWORD_FILE"),
])
def test_a_bad_setting_is_one_line_and_exit_2(env, names):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "INFLUXDB_", "PROCESSOR_", "API_"))}
    clean["PYTHONPATH"] = str(ROOT / "api")
    proc = subprocess.run([sys.executable, "-c", "from iot_stream.processor import main; raise SystemExit(main())"],
                          env={**clean, **env}, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and len(proc.stderr.splitlines()) == 1 and names in proc.stderr, proc.stderr
