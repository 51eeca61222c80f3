"""Fixtures shared by every test layer. See ops/servers.py (via tests/harness.py) for the real processes behind them.

- `influxdb` (session): one real InfluxDB 1.x for the run (INFLUXDB_URL, or our own influxd).
- `private_influxdb` (function): an influxd of the test's own, which it may stop and start.
- `db_name` (function): a fresh database name, so tests never see each other's points.
- `api` (function): the api as a real server process on a free port, on a fresh database.
- `start_api` (function): factory for an api with extra environment (auth, retention, limits…).

A program a test needs (ops/needs.py: influxd, mosquitto, nginx, wrk, Chromium…) and this machine lacks
skips that test with the reason, or fails it where a missing program is an error (CI: IOT_REQUIRE_DOCKER=1
or CI=true). `./iot test` installs them first.

Side by side (pytest-xdist `--dist loadgroup`, as `./iot test` runs it): the tests of a group run in order on
one worker; tests/worker_groups.py says which tests form a group (a module; the e2e tests that share env
test and the swarm). xdist's own loadgroup (xdist_group marks) does not work with pytest 9 (it renames
`_nodeid`, which pytest 9 no longer reads), so the scheduler below groups by the test ids itself.
"""
from __future__ import annotations

import fcntl
import os
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

# harness and worker_groups: tests/ is on sys.path (pyproject's pytest `pythonpath`); ops/ and tasks/ are
# installed (`./iot` runs `pip install -e .`).
from harness import ApiServer, InfluxServer
from worker_groups import group_of, rank

from ops import needs

ROOT = Path(__file__).resolve().parent.parent


def lacking(need: needs.Need) -> None:
    """Skip the test that needs NEED, or fail it where a missing program is an error (CI)."""
    if needs.required():
        pytest.fail(needs.reason(need), pytrace=False)
    pytest.skip(needs.reason(need))


def pytest_runtest_setup(item):
    for need in needs.for_test(item.path, ROOT):
        if not need.found():
            lacking(need)


@pytest.hookimpl(optionalhook=True)  # xdist's hook: a plain `pytest` run without xdist still loads this file
def pytest_xdist_make_scheduler(config, log):
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return GroupScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """In a worker of `--dist loadgroup`: the longest groups first (worker_groups.rank); both workers sort
    alike, so their collections stay equal."""
    if getattr(config.option, "loadgroup", False):
        items.sort(key=lambda item: rank(item.nodeid))  # stable: file order otherwise


@contextmanager
def _locked(path: Path, how: int):
    with open(path, "a") as f:
        fcntl.flock(f, how)
        yield


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outside pytest-timeout: waiting here is not the test's time
def pytest_runtest_protocol(item, nextitem):
    """Side by side, a test marked `exclusive` (a load test that needs the whole machine, like the soak)
    runs alone: it closes a gate that every test passes (so no new test starts), waits for the test
    running on the other worker to end, runs, and opens the gate again."""
    run = getattr(item.config, "workerinput", {}).get("testrunuid")
    if run is None:  # not an xdist worker: one test at a time anyway
        return (yield)
    gate, running = (Path(tempfile.gettempdir()) / f"iot-tests-{run}.{name}" for name in ("gate", "running"))
    if item.get_closest_marker("exclusive"):
        with _locked(gate, fcntl.LOCK_EX), _locked(running, fcntl.LOCK_EX):
            return (yield)
    with _locked(gate, fcntl.LOCK_EX):  # waits while an exclusive test holds the gate
        running_file = open(running, "a")  # noqa: SIM115 - held until the test ends, closed below
        fcntl.flock(running_file, fcntl.LOCK_SH)
    try:
        return (yield)
    finally:
        running_file.close()


def need_influxd() -> None:
    """Our own influxd: skip (or fail, in CI) when Debian's influxdb is not installed."""
    if not needs.BY_COMMAND["influxd"].found():
        lacking(needs.BY_COMMAND["influxd"])


@pytest.fixture(scope="session")
def influxdb():
    if not os.environ.get("INFLUXDB_URL"):
        need_influxd()
    server = InfluxServer(os.environ.get("INFLUXDB_URL"))
    yield server
    server.close()


@pytest.fixture
def private_influxdb():
    if os.environ.get("INFLUXDB_URL"):
        pytest.skip("needs its own influxd to stop and start; INFLUXDB_URL points at a shared one")
    need_influxd()
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
