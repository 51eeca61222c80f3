"""Faults with real components: InfluxDB absent, stopped, its database dropped; the api stopped under load."""
from __future__ import annotations

import json
import signal
import threading
import time

from harness import http, wait_until

READING = {"type": "temp", "value": 21.5, "sensor_id": "fault"}


def test_api_starts_before_influxdb_and_sets_it_up(private_influxdb, start_api, db_name):
    private_influxdb.stop()
    api = start_api(influx=private_influxdb, wait_ready=False)

    assert api.get("/healthz")[0] == 200  # alive, though not ready
    status, _, body = api.get("/readyz")
    assert status == 503 and body["ready"] is False
    status, headers, body = api.post("/data", READING)
    assert status == 503
    assert headers.get("retry-after") == "2"
    assert "not acknowledged" in body["error"]

    private_influxdb.start()
    wait_until(lambda: api.get("/readyz")[0] == 200, 20, "api ready after InfluxDB started")
    assert api.post("/data", READING)[0] == 201
    dbs = private_influxdb.query("SHOW DATABASES")[0]["values"]
    assert [db_name] in dbs
    assert private_influxdb.count(db_name) == 1
    log = api.log()
    assert "InfluxDB not ready, retrying" in log and "InfluxDB ready" in log


def test_influxdb_stopped_gives_503_and_nothing_claimed(private_influxdb, start_api, db_name):
    api = start_api(influx=private_influxdb)
    assert api.post("/data", {**READING, "ts": "2026-01-01T00:00:00Z"})[0] == 201

    private_influxdb.stop()
    status, headers, body = api.post("/data", {**READING, "ts": "2026-01-01T00:00:01Z"})
    assert status == 503 and "retry-after" in headers
    wait_until(lambda: api.get("/readyz")[0] == 503, 5, "readyz reports InfluxDB down")

    private_influxdb.start()
    assert private_influxdb.count(db_name) == 1  # the 503'd reading was not stored
    status = 503
    deadline = time.monotonic() + 15
    while status == 503 and time.monotonic() < deadline:  # what a device does: retry
        status = api.post("/data", {**READING, "ts": "2026-01-01T00:00:01Z"})[0]
        time.sleep(0.1)
    assert status == 201
    assert private_influxdb.count(db_name) == 2


def test_dropped_database_is_set_up_again(api, influxdb):
    assert api.post("/data", READING)[0] == 201
    influxdb.query(f'DROP DATABASE "{api.db}"')
    status = api.post("/data", READING)[0]
    assert status == 503  # write refused: database not found; the api starts its setup again
    wait_until(lambda: api.post("/data", READING)[0] == 201, 15, "writes accepted again")
    rps = influxdb.query(f'SHOW RETENTION POLICIES ON "{api.db}"')[0]["values"]
    assert any(r[0] == "iot_rp" and r[4] is True for r in rps)
    assert "InfluxDB database is missing" in api.log()


def test_sigterm_under_load_loses_no_acknowledged_reading(api, influxdb):
    """Every reading answered 201 before or during the stop is in InfluxDB afterwards."""
    acked: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def client(worker: int):
        i = 0
        while not stop.is_set():
            sid = f"t{worker}-{i}"
            body = json.dumps({"type": "temp", "value": i, "sensor_id": sid}).encode()
            try:
                status = http("POST", api.url + "/data", body, {"Content-Type": "application/json"},
                              timeout=10)[0]
            except OSError:
                status = 0  # refused/reset once the server is gone: not acknowledged
            if status == 201:
                with lock:
                    acked.append(sid)
            elif status == 0:
                time.sleep(0.01)
            i += 1

    threads = [threading.Thread(target=client, args=(w,)) for w in range(16)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    code = api.stop(signal.SIGTERM)
    stop.set()
    for t in threads:
        t.join()
    assert code == 0, api.log()[-2000:]
    assert len(acked) > 200, f"too little load to mean anything: {len(acked)} acknowledged"
    series = influxdb.query('SELECT "value", "sensor_id" FROM "data"', db=api.db)
    column = series[0]["columns"].index("sensor_id")
    stored = {row[column] for s in series for row in s["values"]}
    missing = set(acked) - stored
    assert not missing, f"{len(missing)} acknowledged readings lost, e.g. {sorted(missing)[:5]}"
    assert '"msg":"stopped","drained":true' in api.log()
