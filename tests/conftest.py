"""Fixtures shared by every test layer. See tests/harness.py for the real processes behind them.

- `influxdb` (session): one real InfluxDB 1.x for the run (INFLUXDB_URL, or our own influxd).
- `private_influxdb` (function): an influxd of the test's own, which it may stop and start.
- `db_name` (function): a fresh database name, so tests never see each other's points.
- `api` (function): the api as a real server process on a free port, on a fresh database.
- `start_api` (function): factory for an api with extra environment (auth, retention, limits…).
"""
from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

# tests/ for harness.py, the repository root for ops/ (the code behind the tasks): every test module
# can import both, whatever order or subset pytest collects.
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import ApiServer, InfluxServer  # noqa: E402


@pytest.fixture(scope="session")
def influxdb():
    server = InfluxServer(os.environ.get("INFLUXDB_URL"))
    yield server
    server.close()


@pytest.fixture
def private_influxdb():
    if os.environ.get("INFLUXDB_URL"):
        pytest.skip("needs its own influxd to stop and start; INFLUXDB_URL points at a shared one")
    server = InfluxServer()
    yield server
    server.close()


@pytest.fixture
def db_name():
    return "test_" + uuid.uuid4().hex[:12]


@pytest.fixture
def start_api(influxdb, db_name):
    servers: list[ApiServer] = []

    def _start(env: dict | None = None, influx: InfluxServer | None = None, db: str | None = None,
               wait_ready: bool = True) -> ApiServer:
        server = ApiServer((influx or influxdb).url, db or db_name, env, wait_ready=wait_ready)
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.stop()


@pytest.fixture
def api(start_api):
    return start_api()
