"""`./iot --dry TASK` prints every command the task would run and runs none (`--dry undeploy --volumes`
once printed only `docker stack rm`, not the volumes' removal). The tasks run as a user runs them
(python -m ops.cli, the wrapper's program) against a stand-in `docker` that answers the read-only
questions and records every call: a change would show up as a call."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STACK = "label=com.docker.stack.namespace=iot-test"
READS = [("volume", "ls"), ("service", "ls"), ("service", "inspect")]

STAND_IN = textwrap.dedent("""\
    #!{python}
    import json, os, sys
    args = sys.argv[1:]
    with open(os.environ["REC_LOG"], "a") as log:
        log.write(json.dumps(args) + "\\n")
    if os.environ.get("REC_DOWN"):
        sys.exit("Cannot connect to the Docker daemon at unix:///var/run/docker.sock.")
    if args[:2] == ["volume", "ls"]:
        print("iot-test_influxdb-data\\niot-test_mosquitto-data")
    elif args[:2] == ["service", "ls"]:
        print("s1\\ns2")
    elif args[:2] == ["service", "inspect"]:
        print(json.dumps([{{"Spec": {{"Name": "iot-test_api"}}, "PreviousSpec": {{"Name": "iot-test_api"}}}},
                          {{"Spec": {{"Name": "iot-test_influxdb"}}}}]))
    else:
        sys.exit("stand-in docker: not a read-only command: " + " ".join(args))
    """)


@pytest.fixture
def docker(stand_ins):
    return stand_ins(STAND_IN, "docker")


def dry(*args: str, **env: str) -> str:
    out = subprocess.run([sys.executable, "-m", "ops.cli", "--dry", *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env={**os.environ, **env})
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


def only_reads(calls: list[list[str]]) -> None:
    changes = [c for c in calls if tuple(c[:2]) not in READS]
    assert changes == [], f"--dry ran commands that change something: {changes}"


def test_undeploy_volumes_prints_each_volume_removal(docker):
    out = dry("undeploy", "--env", "test", "--volumes")
    assert "would run: docker stack rm iot-test" in out
    assert "would run: docker volume rm iot-test_influxdb-data" in out
    assert "would run: docker volume rm iot-test_mosquitto-data" in out
    only_reads(docker())
    assert ["volume", "ls", "-q", "--filter", STACK] in docker()


def test_undeploy_without_volumes_prints_no_volume_removal(docker):
    out = dry("undeploy", "--env", "test")
    assert "would run: docker stack rm iot-test" in out and "volume rm" not in out
    assert docker() == []


def test_undeploy_volumes_without_an_engine_still_prints_the_plan(docker):
    out = dry("undeploy", "--env", "test", "--volumes", REC_DOWN="1")
    assert f"would run: docker volume rm on each volume with {STACK} (not listed: " in out


def test_rollback_says_what_it_would_roll_back_not_that_it_did(docker):
    out = dry("rollback", "--env", "test")
    assert "would run: docker service rollback iot-test_api" in out
    assert "would roll back: iot-test_api" in out and "rolled back:" not in out
    only_reads(docker())


def test_up_says_it_would_wait_for_the_first_reading(docker):
    """`up` ends by waiting for the simulator's first stored reading: --dry says so, and how it checks."""
    out = dry("up", "--env", "test")
    assert "would wait up to 120 s for the first stored reading: GET http://localhost:" in out
    assert "/data?limit=1 with the read token" in out
    questions = {("info",), ("compose", "version"), ("image", "inspect")}  # is there an engine, Compose, the bases
    assert [c for c in docker() if tuple(c[:2]) not in questions and tuple(c[:1]) not in questions] == []
    out = dry("up", "--env", "test", "--no-simulator")
    assert "first stored reading" not in out
