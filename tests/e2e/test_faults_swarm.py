"""InfluxDB restarted under load on a one-node swarm (env `test`, stack `iot-test`): exact count.

The swarm, the deploy and the clean-up are test_swarm_deploy.py's (its `one_node_swarm` fixture and
helpers, as test_swarm_backup.py reuses them). The restart is the operator's one on a swarm, `docker
service update --force`: InfluxDB's task is replaced (stop-first, on the node that holds its volume)
while the simulator, a real process on this machine, posts to the api's published port. The new task
has a new address behind the same name (dnsrr); the api resolves it again and the simulator resends
whatever was answered 503, so the run's count in InfluxDB is exactly what it generated.
"""
from __future__ import annotations

import time
import uuid

import pytest
from faults_helpers import SimulatorRun, assert_exact_run
from harness import ROOT
from test_swarm_deploy import (
    ENV,
    STACK,
    api_url,
    influx_count,
    iot,
    one_node_swarm,  # noqa: F401 - the module fixture, used by name below
)

from ops import secrets

DEVICES, COUNT = 50, 400  # 10 readings/s per device for 40 s: 20,000 readings
pytestmark = pytest.mark.usefixtures("docker_engine")


@pytest.fixture(scope="module")
def swarm_stack(request):
    request.getfixturevalue("one_node_swarm")  # the swarm first (imported fixture, by name)
    started = time.monotonic()
    iot("deploy", "--env", ENV)
    print(f"deploy: {time.monotonic() - started:.1f} s")


def influxdb_task(docker) -> str:
    ids = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={STACK}_influxdb").split()
    assert len(ids) == 1, f"expected one running InfluxDB task, got {ids}"
    return ids[0]


def test_influxdb_restarted_under_load_on_swarm_exact_count(swarm_stack, docker):
    prefix = f"swrst{uuid.uuid4().hex[:6]}-"
    before = influxdb_task(docker)
    sim = SimulatorRun(api_url(), ROOT / "secrets" / ENV / secrets.SIMULATOR_TOKEN, prefix,
                       "--devices", str(DEVICES), "--count", str(COUNT), "--interval", "0.1",
                       "--backoff", "0.2", "--max-backoff", "2", "--drain-timeout", "120")
    try:
        sim.wait_stored(500)
        started = time.monotonic()
        docker("service", "update", "--force", "--quiet", f"{STACK}_influxdb")  # returns once converged
        print(f"InfluxDB's task replaced {started - sim.started:.1f} s into the run, converged in "
              f"{time.monotonic() - started:.1f} s")
        assert sim.running(), "the run ended before the restart was over: no load during it"
        code, summary = sim.finish(timeout=240)
    finally:
        sim.kill()
    print(f"swarm influxdb restart: {summary}")
    assert influxdb_task(docker) != before, "InfluxDB's task was not replaced"
    assert_exact_run(code, summary, influx_count(docker, f"WHERE \"sensor_id\" =~ /^{prefix}/"), DEVICES * COUNT,
                     stderr=sim.stderr())
