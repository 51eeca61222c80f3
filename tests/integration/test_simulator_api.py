"""The simulator against the real api and a real InfluxDB 1.x: exact end-to-end counts, the course's
invocation, an InfluxDB outage in the middle of a run, an unreachable api, tokens and SIGTERM.

The simulator runs as its real console entry point (`python -m iot_simulator`) in a subprocess; every
count is read back from InfluxDB itself.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import pytest
from harness import free_port

SIM_FLAGS = ["--progress-interval", "1", "--json"]


def simulate(*argv: str, timeout: float = 60) -> tuple[int, dict, str]:
    proc = subprocess.run([sys.executable, "-m", "iot_simulator", *argv, *SIM_FLAGS],
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, _summary(proc.stdout, proc.stderr), proc.stderr


def _summary(stdout: str, stderr: str) -> dict:
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one JSON summary line on stdout, got {stdout!r}\n{stderr}"
    return json.loads(lines[0])


def sim_count(influx, db: str, where: str = "") -> int:
    return influx.count(db, 'WHERE "sensor_id" =~ /^sim-/' + (f" AND {where}" if where else ""))


def test_bounded_run_stores_exactly_what_it_generated(api, influxdb):
    code, s, err = simulate("--url", api.url, "--devices", "20", "--count", "25", "--interval", "0.01",
                            "--seed", "7")
    assert code == 0, err
    assert (s["generated"], s["stored"], s["rejected"], s["pending"]) == (500, 500, 0, 0), err
    assert sim_count(influxdb, api.db) == s["generated"]
    # 20 distinct sensors, 25 points each, all temperatures inside the course's range
    series = influxdb.query('SELECT count("value"), min("value"), max("value") FROM "data" '
                            'WHERE "sensor_id" =~ /^sim-/ GROUP BY "sensor_id"', db=api.db)
    assert len(series) == 20
    for sr in series:
        _, count, low, high = sr["values"][0]
        assert count == 25 and 20 <= low <= high <= 34
    assert "summary: generated 500, stored 500" in err


def test_batches_and_several_types_are_stored_exactly(api, influxdb):
    code, s, err = simulate("--url", api.url, "--devices", "10", "--count", "30", "--interval", "0",
                            "--types", "temp,pressure,humidity", "--batch", "25")
    assert code == 0, err
    assert s["generated"] == s["stored"] == 10 * 30 * 3
    assert s["requests"] == 10 * 4  # 90 readings per device: 3 full batches of 25 and a flush of 15
    assert sim_count(influxdb, api.db) == 900
    for t in ("temp", "pressure", "humidity"):
        assert influxdb.count(api.db, 'WHERE "sensor_id" =~ /^sim-/ AND "type" = $t', {"t": t}) == 300


def test_course_invocation_stores_three_readings_for_sensor_123(api, influxdb):
    host, port = api.url.removeprefix("http://").split(":")
    code, s, err = simulate("-h", host, "-p", port, "--count", "3")
    assert code == 0, err
    assert (s["generated"], s["stored"]) == (3, 3)
    assert influxdb.count(api.db, 'WHERE "sensor_id" = \'123\' AND "type" = \'temp\'') == 3
    assert 1.5 < s["elapsed"] < 10  # one reading a second, like the course's `sleep 1`


def test_influxdb_outage_mid_run_nothing_lost_nothing_duplicated(start_api, private_influxdb):
    """50 devices, 2,000 readings; InfluxDB is stopped for several seconds in the middle of the run."""
    api = start_api(influx=private_influxdb, env={"API_RETRY_AFTER": "1", "INFLUXDB_TIMEOUT": "2s"})
    proc = subprocess.Popen([sys.executable, "-m", "iot_simulator", "--url", api.url, "--devices", "50",
                             "--count", "40", "--interval", "0.15", "--backoff", "0.2", "--max-backoff", "2",
                             "--drain-timeout", "40", *SIM_FLAGS],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stderr_lines: list[str] = []
    reader = threading.Thread(target=lambda: stderr_lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        time.sleep(1.5)
        private_influxdb.stop()
        time.sleep(4)
        private_influxdb.start()
        stdout = proc.stdout.read()
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=5)
    err = "".join(stderr_lines)
    s = _summary(stdout, err)
    assert code == 0, err
    assert s["generated"] == 50 * 40 == s["stored"], err
    assert s["pending"] == 0 and s["rejected"] == 0
    assert s["retries"] > 0 and sum(s["errors"].values()) > 0, f"the outage was not seen: {s}"
    assert private_influxdb.count(api.db, 'WHERE "sensor_id" =~ /^sim-/') == s["generated"]
    progress = [ln for ln in stderr_lines if " progress " in ln]
    assert progress and all(w in progress[0] for w in ("sent", "stored", "retried", "pending", "rate"))


def test_unreachable_api_exits_1_with_readings_pending():
    port = free_port()  # nothing listens there
    code, s, err = simulate("-h", "127.0.0.1", "-p", str(port), "--count", "3", "--interval", "0",
                            "--drain-timeout", "1", "--backoff", "0.05", "--max-backoff", "0.2", timeout=30)
    assert code == 1
    assert s["pending"] == 3 and s["stored"] == 0 and s["generated"] == 3
    assert s["errors"].get("connection", 0) >= 2
    assert "NOT ALL STORED" in err and "3 still pending" in err


def test_token_from_a_secret_file_and_a_wrong_token_is_rejected_not_retried(start_api, influxdb, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("write device-token-0123456789abcdef\n")
    api = start_api(env={"API_TOKENS_FILE": str(tokens)})
    secret = tmp_path / "api_token"
    secret.write_text("device-token-0123456789abcdef\n")
    code, s, err = simulate("--url", api.url, "--devices", "3", "--count", "5", "--interval", "0",
                            "--token-file", str(secret))
    assert code == 0, err
    assert sim_count(influxdb, api.db) == 15

    code, s, err = simulate("--url", api.url, "--devices", "2", "--count", "4", "--interval", "0",
                            "--sensor-prefix", "sim-bad-", "--token", "wrong-token-0000000000000")
    assert code == 1
    assert (s["rejected"], s["stored"], s["pending"], s["requests"]) == (8, 0, 0, 8)  # never resent
    assert "401" in err and "bearer token" in err  # the server's own message is logged
    assert sim_count(influxdb, api.db, "\"sensor_id\" =~ /^sim-bad-/") == 0


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_stops_generation_drains_and_exits_0_when_all_stored(api, influxdb):
    proc = subprocess.Popen([sys.executable, "-m", "iot_simulator", "--url", api.url, "--devices", "5",
                             "--interval", "0.05", *SIM_FLAGS],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.5)
        proc.send_signal(signal.SIGTERM)
        stdout, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    s = _summary(stdout, err)
    assert proc.returncode == 0, err
    assert s["interrupted"] and s["generated"] > 50 and s["stored"] == s["generated"]
    assert sim_count(influxdb, api.db) == s["generated"]
