"""ops.swarm.undeploy's logic against a scripted docker (the real thing runs in the labs' docs test:
docs/labs/09-swarm.md and 11-cd.md clean up with `./iot undeploy --env test --volumes`)."""
from __future__ import annotations

import subprocess

import pytest

from ops import swarm


class ScriptedDocker:
    """Containers disappear after `gone_after` polls; a volume refuses `busy_volume_rm` removals first."""

    def __init__(self, gone_after=2, busy_volume_rm=1, volumes=("iot-test_influxdb-data",), dry=False):
        self.dry = dry
        self.said: list[str] = []
        self.progress = self.said.append
        self.calls: list[tuple] = []
        self.polls = 0
        self.gone_after = gone_after
        self.busy = busy_volume_rm
        self.volumes = list(volumes)

    def read(self, *args, check=True):
        self.calls.append(args)
        if args[:2] == ("stack", "ls"):
            return "iot-test\n"
        if args[:2] == ("ps", "-aq"):
            self.polls += 1
            return "" if self.polls > self.gone_after else "c0ffee\n"
        if args[:2] == ("network", "ls"):
            return ""
        if args[:2] == ("volume", "ls"):
            return "\n".join(self.volumes)
        raise AssertionError(args)

    def run(self, *args, check=True, **kw):
        self.calls.append(args)
        code = 0
        if args[:2] == ("volume", "rm") and self.busy > 0:
            self.busy -= 1
            code = 1
        return subprocess.CompletedProcess(args, code, "", "")


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(swarm.time, "sleep", lambda s: None)


def test_waits_for_the_containers_then_deletes_the_volume_retrying_while_busy():
    docker = ScriptedDocker()
    assert swarm.undeploy(docker, "iot-test", volumes=True) == ["iot-test_influxdb-data"]
    assert ("stack", "rm", "iot-test") in docker.calls
    rms = [c for c in docker.calls if c[:2] == ("volume", "rm")]
    assert len(rms) == 2  # refused once while "in use", then deleted
    first_rm = docker.calls.index(rms[0])
    last_poll = max(i for i, c in enumerate(docker.calls) if c[:2] == ("ps", "-aq"))
    assert last_poll < first_rm  # never before the containers are gone


def test_without_volumes_keeps_them():
    docker = ScriptedDocker()
    assert swarm.undeploy(docker, "iot-test") == []
    assert not [c for c in docker.calls if c[:2] in (("volume", "rm"), ("volume", "ls"))]


def test_containers_that_never_go_are_an_error_not_a_silent_success():
    docker = ScriptedDocker(gone_after=10**9)
    with pytest.raises(swarm.SwarmError, match="still there"):
        swarm.undeploy(docker, "iot-test", volumes=True, timeout=0.05)


def test_a_volume_that_stays_busy_is_an_error():
    docker = ScriptedDocker(busy_volume_rm=10**9)
    with pytest.raises(swarm.SwarmError, match="could not be deleted"):
        swarm.undeploy(docker, "iot-test", volumes=True)


def test_dry_runs_nothing_after_printing():
    docker = ScriptedDocker(dry=True)
    assert swarm.undeploy(docker, "iot-test", volumes=True) == []
    # Printed, not run: the scripted docker records the dry Docker's would-run commands as calls.
    assert docker.calls == [("stack", "rm", "iot-test"),
                            ("volume", "ls", "-q", "--filter", "label=com.docker.stack.namespace=iot-test"),
                            ("volume", "rm", "iot-test_influxdb-data")]
