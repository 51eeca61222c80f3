"""`./iot db.backup --target swarm` of a populated one-node swarm stack, `./iot db.restore --target swarm`
into the same stack redeployed on a fresh InfluxDB volume: the same counts, in total and per sensor.

Env `test`, stack `iot-test`, as tests/e2e/test_swarm_deploy.py, whose helpers and `one_node_swarm`
fixture are reused: it inits a swarm when the engine has none (and leaves it at the end), and removes
the stack, its secrets, configs and volumes before and after, failures included. The backup file lives
in a temporary folder removed at the end. The redeploy is `--no-smoke`: the smoke test's reading would
make the fresh database non-empty, and db.restore rightly refuses that without --force.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from harness import ROOT
from test_swarm_deploy import (
    ENV,
    STACK,
    api_url,
    cleanup,
    dk,
    influx_count,
    iot,
    one_node_swarm,  # noqa: F401 - the module fixture, used by name below
)

from ops import secrets

VOLUME = f"{STACK}_influxdb-data"
DEVICES, TICKS, TYPES = 4, 40, "temp,humidity"
pytestmark = pytest.mark.usefixtures("docker_engine", "one_node_swarm")


def wait_for(what: str, done, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout:.0f} s for {what}")
        time.sleep(1)


def volume_exists() -> bool:
    return VOLUME in dk("volume", "ls", "-q", "--filter", f"name={VOLUME}").split()


def remove_stack_and_volume() -> None:
    """`docker stack rm` (returns before its containers and networks are gone), then the InfluxDB volume
    once no container uses it. Secrets and configs stay: the redeploy uses them as they are."""
    dk("stack", "rm", STACK)
    flt = f"label=com.docker.stack.namespace={STACK}"
    wait_for(f"the containers and networks of {STACK} to go",
             lambda: not dk("ps", "-aq", "--filter", flt).split() and not dk("network", "ls", "-q", "--filter", flt).split())
    wait_for(f"no container to use {VOLUME}", lambda: not dk("ps", "-aq", "--filter", f"volume={VOLUME}").split())
    dk("volume", "rm", VOLUME)
    assert not volume_exists()


def counts(docker, sensors: list[str]) -> dict[str, int]:
    out = {"total": influx_count(docker, "")}
    out.update({s: influx_count(docker, f"WHERE \"sensor_id\" = '{s}'") for s in sensors})
    return out


@pytest.fixture
def workdir():
    """A temporary folder for the backup file; afterwards the stack and its volume are removed (the module
    fixture removes them again, with secrets and configs, and restores the swarm state)."""
    with tempfile.TemporaryDirectory(prefix="iot-swarm-backup-") as folder:
        try:
            yield Path(folder)
        finally:
            cleanup()
            if volume_exists():  # the stack's volume by name, should its label not have matched
                subprocess.run(["docker", "volume", "rm", "-f", VOLUME], capture_output=True, check=False)


NO_FLEET = ("--set", "fleet.replicas=0")


@pytest.mark.timeout(1200)
def test_swarm_backup_restores_into_a_fresh_stack_with_the_same_counts(workdir, docker):
    started = time.monotonic()
    # No emulated stations: the counts compared below must be this test's readings alone, not a fleet's
    # that keeps publishing between the count, the backup and the restore.
    iot("deploy", "--env", ENV, *NO_FLEET, timeout=600)

    # Fill it through the published port: a bounded simulator run, every reading stored.
    prefix = f"bk{uuid.uuid4().hex[:6]}-"
    sim = subprocess.run(
        [sys.executable, "-m", "iot_simulator", "--url", api_url(), "--devices", str(DEVICES), "--count", str(TICKS),
         "--interval", "0.05", "--types", TYPES, "--sensor-prefix", prefix, "--seed", "7", "--drain-timeout", "120",
         "--token-file", str(ROOT / "secrets" / ENV / secrets.SIMULATOR_TOKEN), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert sim.returncode == 0, sim.stderr[-2000:]
    summary = json.loads(sim.stdout.strip().splitlines()[-1])
    assert summary["generated"] == DEVICES * TICKS * len(TYPES.split(","))
    assert summary["stored"] == summary["generated"]
    sensors = [f"{prefix}0001", f"{prefix}{DEVICES:04d}"]
    before = counts(docker, sensors)
    assert influx_count(docker, f"WHERE \"sensor_id\" =~ /^{prefix}/") == summary["generated"]
    assert before[sensors[0]] == before[sensors[1]] == TICKS * len(TYPES.split(","))
    assert before["total"] >= summary["generated"]  # + the deploy's smoke-test reading

    archive = workdir / "backup.tar.gz"
    proc = iot("db.backup", "--env", ENV, "--target", "swarm", "--out", str(archive), timeout=300)
    assert archive.is_file() and not archive.with_name(archive.name + ".partial").exists()
    assert f"{before['total']} points" in proc.stdout, proc.stdout

    remove_stack_and_volume()
    iot("deploy", "--env", ENV, "--no-smoke", *NO_FLEET, timeout=600)
    assert volume_exists()
    empty = counts(docker, sensors)
    assert empty == dict.fromkeys(empty, 0), f"the redeployed stack is not empty: {empty}"

    proc = iot("db.restore", "--env", ENV, "--target", "swarm", "--file", str(archive), timeout=300)
    assert f"now holds {before['total']} points" in proc.stdout, proc.stdout
    after = counts(docker, sensors)
    assert after == before
    print(f"swarm backup/restore: {before} in {time.monotonic() - started:.1f} s")
