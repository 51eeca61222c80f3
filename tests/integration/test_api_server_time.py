"""Readings without `ts` get server time whose digits below the microsecond name the writing process
(API_INSTANCE x API_WORKERS + the worker's slot), so two workers or two replicas never write the same
point: on a real api with 2 workers, every acknowledged reading of one sensor is its own point."""
from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from harness import ROOT

READING = {"type": "temp", "value": 21.0, "sensor_id": "same-sensor"}


def post_until_stored(api) -> int:
    """As a device does: a 503 (here: the other worker still setting up) is resent."""
    for _ in range(100):
        status = api.post("/data", READING)[0]
        if status != 503:
            return status
        time.sleep(0.05)
    return status


def post_many(api, n: int, threads: int = 16) -> int:
    with ThreadPoolExecutor(threads) as pool:
        statuses = list(pool.map(lambda _: post_until_stored(api), range(n)))
    assert set(statuses) == {201}, statuses
    return len(statuses)


@pytest.mark.parametrize("instance, expected_ids", [("0", {0, 1}), ("3", {6, 7})])
def test_each_worker_writes_with_its_own_id_and_nothing_is_overwritten(start_api, influxdb, instance, expected_ids):
    api = start_api(env={"API_WORKERS": "2", "API_INSTANCE": instance})
    acknowledged = post_many(api, 600)
    points = influxdb.points(api.db)
    assert len(points) == acknowledged  # one point per acknowledged reading, none overwritten
    ids = {ns % 1000 for _, _, ns in points}
    assert ids <= expected_ids, ids
    assert len(ids) == 2, f"both workers should have served some of 600 requests: ids {ids}"


def test_too_many_writers_for_the_ids_stop_the_api():
    proc = subprocess.run([sys.executable, "-m", "iot_api"], capture_output=True, text=True, timeout=30,
                          env={"API_INSTANCE": "600", "API_WORKERS": "2", "PATH": "/usr/bin:/bin",
                               "PYTHONPATH": str(ROOT / "api")})
    assert proc.returncode == 2
    assert "API_INSTANCE=600 with API_WORKERS=2" in proc.stderr and "Traceback" not in proc.stderr
