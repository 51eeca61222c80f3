"""GET /top answers are shared for API_TOP_CACHE (queries.py): concurrent requests cost InfluxDB one
query, later ones within the window get the same answer, and after it the ranking is fresh again.
InfluxDB's own counter of executed queries (/debug/vars) is the witness."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from harness import ROOT, http


def queries_executed(influx) -> int:
    status, _, body = http("GET", influx.url + "/debug/vars", timeout=5)
    assert status == 200
    return int(json.loads(body)["queryExecutor"]["values"].get("queriesExecuted", 0))


def reading(sensor: str, value: float) -> dict:
    return {"type": "temp", "value": value, "sensor_id": sensor}


def top_all_time(api) -> list:
    status, _, answer = api.get("/top?type=temp&n=3")
    assert status == 200, answer
    return [(e["sensor_id"], e["value"]) for e in answer["top"]["all_time"]]


def test_concurrent_requests_share_one_query_and_the_answer_expires(start_api, private_influxdb):
    api = start_api(env={"API_TOP_CACHE": "2s"}, influx=private_influxdb)
    assert api.post("/data", [reading("a", 20), reading("b", 30)])[0] == 201
    before = queries_executed(private_influxdb)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: top_all_time(api), range(32)))
    assert answers == [[("b", 30.0), ("a", 20.0)]] * 32
    executed = queries_executed(private_influxdb) - before
    assert 1 <= executed <= 3, f"{executed} InfluxDB queries for 32 concurrent /top (3 windows: one statement each)"

    t0 = time.monotonic()
    assert api.post("/data", [reading("c", 40)])[0] == 201
    if time.monotonic() - t0 < 1.5:  # still inside the 2 s window: the shared answer, not c
        assert top_all_time(api) == [("b", 30.0), ("a", 20.0)]
    time.sleep(2.1)
    assert top_all_time(api) == [("c", 40.0), ("b", 30.0), ("a", 20.0)]


def test_zero_turns_the_cache_off(start_api, private_influxdb):
    api = start_api(env={"API_TOP_CACHE": "0s"}, influx=private_influxdb)
    assert api.post("/data", [reading("a", 20)])[0] == 201
    assert top_all_time(api) == [("a", 20.0)]
    assert api.post("/data", [reading("b", 30)])[0] == 201
    assert top_all_time(api) == [("b", 30.0), ("a", 20.0)]  # at once


def test_a_failed_query_is_not_kept(start_api, private_influxdb):
    api = start_api(env={"API_TOP_CACHE": "1h", "INFLUXDB_TIMEOUT": "1s", "API_STARTUP_BACKOFF_MAX": "200ms"},
                    influx=private_influxdb)
    assert api.post("/data", [reading("a", 20)])[0] == 201
    private_influxdb.stop()
    status, _, _ = api.get("/top?type=temp&n=3")
    assert status in (502, 503)
    private_influxdb.start()
    deadline = time.monotonic() + 20
    while True:  # the api notices InfluxDB again; then /top queries afresh instead of replaying the failure
        status, _, answer = api.get("/top?type=temp&n=3")
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status == 200, answer
    assert [(e["sensor_id"], e["value"]) for e in answer["top"]["all_time"]] == [("a", 20.0)]


@pytest.mark.parametrize("value, message", [("soon", "API_TOP_CACHE='soon'"), ("2h", "at most 1h")])
def test_bad_values_stop_the_api(value, message):
    proc = subprocess.run([sys.executable, "-m", "iot_api"], env={"API_TOP_CACHE": value, "PATH": "/usr/bin:/bin",
                          "PYTHONPATH": str(ROOT / "api")}, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
