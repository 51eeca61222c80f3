"""/readyz of an api with several workers answers for all of them: a worker that is gone (killed, and
being restarted by uvicorn's supervisor) makes every worker's /readyz say 503 until its replacement
has set up InfluxDB. Before, the surviving worker answered 200 while the other slot's requests got
503 "not ready" (a few seen right after start under load with 2 workers). Real api, real InfluxDB."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from harness import http

from ops.bench import procs


def workers_of(pid: int) -> list[int]:
    """uvicorn's worker processes: those of the api's process tree started by multiprocessing spawn."""
    out = []
    for child in procs.tree(pid) - {pid}:
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            out.append(child)
    return out


def readyz(api) -> tuple[int, dict]:
    status, _, body = http("GET", api.url + "/readyz", timeout=2.0)
    return status, json.loads(body)


def test_readyz_says_503_while_a_worker_is_missing_then_200(start_api):
    api = start_api({"API_WORKERS": "2"})
    assert readyz(api)[0] == 200
    workers = workers_of(api.proc.pid)
    assert len(workers) == 2, workers
    os.kill(workers[0], signal.SIGKILL)
    seen = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, body = readyz(api)
        seen.add((status, body.get("reason")))
        if status == 200 and (503, "another worker of this api is still starting") in seen:
            break
        time.sleep(0.02)
    assert (503, "another worker of this api is still starting") in seen, seen
    assert readyz(api)[0] == 200, "the restarted worker never became ready"
    replacement = [pid for pid in workers_of(api.proc.pid) if pid != workers[1]]
    assert len(replacement) == 1 and replacement[0] != workers[0]
    status, _, body = api.post("/data", {"type": "temp", "value": 1.5, "sensor_id": "w-ready"})
    assert status == 201, body
