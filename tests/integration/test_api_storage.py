"""The api against a real InfluxDB: what is stored, how, and what the reads give back."""
from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from urllib.parse import urlsplit

COURSE_PAYLOAD = {"ts": "2017-06-25T09:53:16Z", "type": "temp", "value": 34, "sensor_id": 123}


def test_course_payload_round_trip(api, influxdb):
    status, _, body = api.post("/data", COURSE_PAYLOAD)
    assert (status, body) == (201, {"stored": 1})

    series = influxdb.query('SELECT * FROM "data"', db=api.db)
    assert series[0]["columns"] == ["time", "sensor_id", "type", "value"]
    assert series[0]["values"] == [["2017-06-25T09:53:16Z", "123", "temp", 34]]
    # sensor_id and type are tags (the course stored sensor_id as a field), value a float field
    tags = influxdb.query('SHOW TAG KEYS FROM "data"', db=api.db)[0]["values"]
    assert sorted(t[0] for t in tags) == ["sensor_id", "type"]
    fields = influxdb.query('SHOW FIELD KEYS FROM "data"', db=api.db)[0]["values"]
    assert fields == [["value", "float"]]

    status, _, body = api.get("/data?sensor_id=123")
    assert status == 200
    assert body["readings"] == [{"ts": "2017-06-25T09:53:16Z", "sensor_id": "123", "type": "temp", "value": 34.0}]


def test_timestamp_kept_to_the_nanosecond(api, influxdb):
    ts = "2024-02-29T23:59:59.123456789+02:00"
    assert api.post("/data", {"ts": ts, "type": "temp", "value": 1.25, "sensor_id": "ns"})[0] == 201
    rows = influxdb.query('SELECT "value" FROM "data"', db=api.db)[0]["values"]
    assert rows == [["2024-02-29T21:59:59.123456789Z", 1.25]]


def test_two_sensors_same_second_are_both_stored_and_a_resend_is_not_duplicated(api, influxdb):
    ts = "2026-01-01T00:00:00Z"
    for sid in ("a", "b"):
        assert api.post("/data", {"ts": ts, "type": "temp", "value": 20, "sensor_id": sid})[0] == 201
    assert influxdb.count(api.db) == 2
    for _ in range(3):  # a device retrying after a lost answer
        assert api.post("/data", {"ts": ts, "type": "temp", "value": 20, "sensor_id": "a"})[0] == 201
    assert influxdb.count(api.db) == 2
    # same sensor and time but another type is another point
    assert api.post("/data", {"ts": ts, "type": "humidity", "value": 40, "sensor_id": "a"})[0] == 201
    assert influxdb.count(api.db) == 3


def test_readings_without_ts_get_distinct_server_times(api, influxdb):
    before = time.time_ns()
    batch = [{"type": "temp", "value": float(i), "sensor_id": "nots"} for i in range(50)]
    status, _, body = api.post("/data", batch)
    assert (status, body) == (201, {"stored": 50})
    rows = influxdb.query('SELECT "value" FROM "data" WHERE "sensor_id" = \'nots\'', db=api.db)[0]["values"]
    assert len(rows) == 50, "readings without ts overwrote each other"
    assert sorted(r[1] for r in rows) == [float(i) for i in range(50)]
    first = rows[0][0]
    assert first.startswith(time.strftime("%Y-", time.gmtime(before / 1e9)))


def test_batch_of_1000(api, influxdb):
    base = 1_700_000_000
    batch = [{"ts": _iso(base + i), "type": "temp", "value": i / 10, "sensor_id": f"s{i % 10}"}
             for i in range(1000)]
    status, _, body = api.post("/data", batch)
    assert (status, body) == (201, {"stored": 1000})
    assert influxdb.count(api.db) == 1000
    assert influxdb.count(api.db, "WHERE \"sensor_id\" = 's3'") == 100


def _iso(secs: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(secs))


def _metric(api, name: str) -> float:
    text = api.get("/metrics")[2]
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _concurrent_posts(api, n_requests: int, prefix: str, workers: int = 32) -> list[int]:
    # One kept-alive http.client connection per thread: with a new connection and requests session per POST
    # the client spends so much CPU that too few requests are in flight at once to show the batching.
    local = threading.local()

    def post(i):
        body = json.dumps({"ts": _iso(1_700_000_000 + i), "type": "temp", "value": i,
                           "sensor_id": f"{prefix}{i % 20}"}).encode()
        if getattr(local, "conn", None) is None:
            local.conn = HTTPConnection(urlsplit(api.url).netloc, timeout=10)
        for _ in range(50):  # a 503 asks the client to retry (e.g. a worker still setting up)
            local.conn.request("POST", "/data", body, {"Content-Type": "application/json"})
            answer = local.conn.getresponse()
            answer.read()
            status = answer.status
            if status != 503:
                return status
            time.sleep(0.05)
        return status

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(post, range(n_requests)))


def test_group_commit_writes_concurrent_requests_together(api, influxdb):
    statuses = _concurrent_posts(api, 600, "gc")
    assert statuses == [201] * 600
    assert influxdb.count(api.db) == 600
    flushes = _metric(api, "iot_api_flush_batch_size_count")
    points = _metric(api, "iot_api_flush_batch_size_sum")
    assert points == 600
    # Group commit: far fewer InfluxDB writes than requests (one write per request would be 600).
    assert flushes < 600 * 0.75, f"{flushes} writes for 600 concurrent requests: no batching"


def test_group_commit_off_writes_once_per_request(start_api, influxdb):
    """The baseline the benchmark compares against; also shows the metric above can fail."""
    api = start_api(env={"API_GROUP_COMMIT": "false"})
    assert _concurrent_posts(api, 200, "nogc") == [201] * 200
    assert _metric(api, "iot_api_flush_batch_size_count") == 200
    assert influxdb.count(api.db) == 200


def test_influxdb_refusing_some_points_stores_the_others(api, influxdb):
    """A field-type conflict: a string `value` already sits in the 2001 shard, so InfluxDB refuses our
    float there. Only that reading is answered 422; the rest of the batch is stored."""
    assert influxdb.query(f'CREATE DATABASE "{api.db}"') == []
    status, body = influxdb.write(api.db, 'data,sensor_id=legacy,type=temp value="hot" 978307200000000000')
    assert status == 204, body
    # InfluxDB writes to the default RP (iot_rp), which is where the api writes too.
    batch = [{"ts": "2024-05-01T00:00:00Z", "type": "temp", "value": 1, "sensor_id": "p1"},
             {"ts": "2001-01-01T00:00:01Z", "type": "temp", "value": 2, "sensor_id": "p2"},
             {"ts": "2024-05-01T00:00:02Z", "type": "temp", "value": 3, "sensor_id": "p3"}]
    status, _, body = api.post("/data", batch)
    assert status == 422, body
    assert body["stored"] == 2
    assert [r["index"] for r in body["rejected"]] == [1]
    assert "field type conflict" in body["rejected"][0]["message"]
    assert influxdb.count(api.db, "WHERE \"sensor_id\" =~ /^p/") == 2

    # The same, mixed with concurrent good requests in one group-commit batch: they all get 201.
    def post(i):
        reading = {"ts": f"2024-05-02T00:00:{i:02d}Z", "type": "temp", "value": i, "sensor_id": f"q{i}"}
        if i == 7:
            reading["ts"] = "2001-01-01T00:00:07Z"
        return api.post("/data", reading)[0]

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(post, range(40)))
    assert statuses.count(422) == 1 and statuses[7] == 422
    assert statuses.count(201) == 39
    assert influxdb.count(api.db, "WHERE \"sensor_id\" =~ /^q/") == 39


def test_retention_policy_is_created_and_enforced(start_api, influxdb):
    api = start_api(env={"API_RETENTION": "2h"})
    rps = influxdb.query(f'SHOW RETENTION POLICIES ON "{api.db}"')[0]["values"]
    assert ["iot_rp", "2h0m0s", "1h0m0s", 1, True] in rps
    old = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3 * 3600))
    status, _, body = api.post("/data", {"ts": old, "type": "temp", "value": 1, "sensor_id": "old"})
    assert status == 422
    assert body["problems"][0]["field"] == "ts" and "retention" in body["problems"][0]["message"]
    assert influxdb.count(api.db) == 0


def test_default_retention_keeps_data_forever(api, influxdb):
    rps = influxdb.query(f'SHOW RETENTION POLICIES ON "{api.db}"')[0]["values"]
    assert ["iot_rp", "0s", "168h0m0s", 1, True] in rps


def test_changing_retention_alters_the_policy(start_api, influxdb, db_name):
    start_api(env={"API_RETENTION": "30d"}).stop()
    start_api(env={"API_RETENTION": "1w"}).stop()
    rps = influxdb.query(f'SHOW RETENTION POLICIES ON "{db_name}"')[0]["values"]
    assert [r[:3] for r in rps if r[0] == "iot_rp"] == [["iot_rp", "168h0m0s", "24h0m0s"]]
    # From forever (7-day shards) down to 2 hours: needs the shard duration shortened too, or the
    # ALTER fails and the api would never become ready.
    start_api(env={"API_RETENTION": "INF"}).stop()
    api = start_api(env={"API_RETENTION": "2h"})  # waits for /readyz
    rps = influxdb.query(f'SHOW RETENTION POLICIES ON "{db_name}"')[0]["values"]
    assert [r[:3] for r in rps if r[0] == "iot_rp"] == [["iot_rp", "2h0m0s", "1h0m0s"]]
    assert api.post("/data", {"type": "temp", "value": 1, "sensor_id": "rp"})[0] == 201


def test_read_endpoints_compute_from_stored_data(api):
    readings = []
    for i, sid in enumerate(["r1", "r2", "r3"]):
        for k in range(5):
            readings.append({"ts": _iso(1_700_000_000 + k), "type": "temp", "value": 10 * (i + 1) + k,
                             "sensor_id": sid})
    readings.append({"ts": _iso(1_700_000_100), "type": "humidity", "value": 55, "sensor_id": "r1"})
    assert api.post("/data", readings)[0] == 201

    body = api.get("/data?sensor_id=r2&type=temp&limit=2")[2]
    assert [r["value"] for r in body["readings"]] == [24.0, 23.0]  # newest first
    body = api.get(f"/data?sensor_id=r1&from={_iso(1_700_000_001)}&to={_iso(1_700_000_002)}")[2]
    assert sorted(r["value"] for r in body["readings"]) == [11.0, 12.0]

    sensors = api.get("/sensors")[2]["sensors"]
    assert [s["sensor_id"] for s in sensors] == ["r1", "r2", "r3"]
    assert sensors[0]["readings"]["humidity"]["value"] == 55.0
    assert sensors[0]["readings"]["temp"]["value"] == 14.0
    assert sensors[0]["last_seen"] == _iso(1_700_000_100)

    stats = api.get("/sensors/r3/stats?type=temp")[2]["stats"]
    assert stats == {"temp": {"min": 30.0, "max": 34.0, "mean": 32.0, "count": 5}}
    assert api.get("/sensors/nobody/stats")[0] == 404

    hist = api.get("/sensors/r1/histogram?type=temp&bins=2")[2]
    assert hist["total"] == 5
    assert [b["count"] for b in hist["bins"]] == [2, 3]  # [10,12) and [12,14]

    top = api.get("/top?type=temp&n=2")[2]["top"]
    assert [(e["sensor_id"], e["value"]) for e in top["all_time"]] == [("r3", 34.0), ("r2", 24.0)]
    assert top["past_minute"] == []  # these readings are from 2023


def test_metrics_and_openapi(api):
    api.post("/data", COURSE_PAYLOAD)
    text = api.get("/metrics")[2]
    for name in ("iot_api_requests_total", "iot_api_readings_stored_total", "iot_api_flush_batch_size",
                 "iot_api_flush_duration_seconds", "iot_api_write_errors_total", "iot_api_queue_depth"):
        assert name in text
    assert re.search(r'iot_api_requests_total\{method="POST",route="/data",status="201"\} 1\.0', text)
    doc = api.get("/openapi.json")[2]
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) >= {"/data", "/sensors", "/sensors/{id}/stats", "/sensors/{id}/histogram",
                                 "/top", "/healthz", "/readyz", "/metrics"}


def test_logs_are_json_lines(api):
    api.post("/data", COURSE_PAYLOAD)
    lines = [line for line in api.log().splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]
    assert any(e["msg"] == "InfluxDB ready" for e in events)
    assert all({"ts", "level", "msg"} <= set(e) for e in events)


def test_two_workers_store_everything(start_api, influxdb):
    api = start_api(env={"API_WORKERS": "2"})
    assert _concurrent_posts(api, 300, "w") == [201] * 300
    assert influxdb.count(api.db) == 300
    assert _metric(api, "iot_api_flush_batch_size_sum") == 300  # aggregated across both workers
