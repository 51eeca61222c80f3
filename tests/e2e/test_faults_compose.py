"""Load and faults on the local Compose stack (env `test`), with exact counts.

The stack is what `./iot up --env test --no-simulator` starts, under a compose project and ports of its
own (iotfault-test, api on 18290), rendered into a temporary folder as tests/e2e/test_db_backup.py does:
so it runs beside the e2e tests of env test's own stack (tests/worker_groups.py); `./iot up --set
project=…` would rewrite build/test/compose.yaml, which they use.

The simulator runs as a real process on this machine against the published port, like a fleet of
devices outside the stack; every count is read straight from InfluxDB over the stack's internal
network (harness.influx_count_in_container), never through the api. Each run has its own sensor prefix,
so the count of its points is exact: stored == generated proves nothing lost and nothing duplicated
(each reading is a distinct sensor/type/nanosecond point), and the simulator's summary and exit status
must agree.

- soak: 1,000 devices, one reading a second each, for IOT_SOAK_SECONDS (default 150): no error at all,
  and the api container's memory does not grow (sampled from its cgroup every few seconds);
- InfluxDB restarted (`docker restart`) under load;
- the api crashed (its process SIGKILLed: the restart policy brings it back) and `docker kill`ed (the
  engine does not restart a container it was told to kill: started again explicitly) under load;
- InfluxDB frozen (`docker pause`) longer than the api's InfluxDB timeout, then unpaused: the api
  answers 503 for writes that InfluxDB may still apply after the unpause; the simulator resends them,
  the same points overwrite themselves, the count stays exact.
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
import uuid

import pytest
import yaml
from faults_helpers import SimulatorRun, assert_exact_run, memory_bytes
from iot_api import config as api_config
from test_stack import ENV, ROOT, compose, influx_count

from ops import render, secrets, stack

pytestmark = pytest.mark.usefixtures("docker_engine")

SOAK_SECONDS = float(os.environ.get("IOT_SOAK_SECONDS", "150"))
SOAK_DEVICES = 1000
SAMPLE_EVERY_S = min(3.0, SOAK_SECONDS / 15)  # at least ~15 samples, 5 per third
MEMORY_MARGIN_MIB = 16  # the last third's peak may exceed the first third's by this much, no more
FAULT_DEVICES = 50  # fault runs: 50 devices x 10 readings/s, the fault once 500 are stored
SETS = ["project=iotfault", "api.published_port=18290", "web.published_port=18291"]  # beside env test's stack


def fault_args(count: int) -> tuple[str, ...]:
    """Simulator options of a fault run of `count` readings per device (count / 10 seconds)."""
    return ("--devices", str(FAULT_DEVICES), "--count", str(count), "--interval", "0.1", "--backoff", "0.2",
            "--max-backoff", "2", "--drain-timeout", "120")


@pytest.fixture(scope="module")
def fault_stack(offline_bases, tmp_path_factory):
    """The test stack without its simulator, from fresh volumes, as `./iot up --no-simulator` starts it
    (build, then `up --detach --wait`); removed with its volumes at the end."""
    overrides = {"bases.mode": "offline", **render.parse_overrides(SETS)}
    prepared = stack.Stack(render.render(ENV, out_dir=tmp_path_factory.mktemp("faults") / "build", overrides=overrides))
    assert prepared.result.project == "iotfault-test"
    compose(prepared, "down", "--volumes", "--remove-orphans", check=False)
    compose(prepared, "build", timeout=900)
    try:
        up = prepared.compose("up", "--detach", "--wait", "--remove-orphans")  # no profile: no simulators
        proc = subprocess.run(shlex.split(up), cwd=ROOT, capture_output=True, text=True, timeout=600,
                              env={**os.environ, **prepared.run_env()})
        assert proc.returncode == 0, f"{up} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        yield prepared
    finally:
        compose(prepared, "down", "--volumes", "--remove-orphans", check=False)


def container(prepared: stack.Stack, service: str) -> str:
    ids = compose(prepared, "ps", "--quiet", service).stdout.split()
    assert len(ids) == 1, f"expected one {service} container, got {ids}"
    return ids[0]


def simulator(prepared: stack.Stack, prefix: str, *args: str) -> SimulatorRun:
    return SimulatorRun(prepared.result.urls["api"], prepared.result.secrets[secrets.SIMULATOR_TOKEN], prefix, *args)


def run_count(prepared: stack.Stack, prefix: str) -> int:
    return influx_count(prepared, f"WHERE \"sensor_id\" =~ /^{prefix}/")


def wait_healthy(docker, container_id: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = docker("inspect", "--format", "{{.State.Status}} {{.State.Health.Status}}", container_id).strip()
        if state == "running healthy":
            return
        time.sleep(0.5)
    raise AssertionError(f"{container_id[:12]} not running and healthy after {timeout} s: {state}")


@pytest.mark.exclusive  # 1,000 readings/s take both cores: beside other tests it could not keep up
@pytest.mark.timeout(SOAK_SECONDS + 300)  # the soak itself, the stack's start (first test), the drain
def test_soak_1000_devices_stores_everything_without_errors_and_bounded_api_memory(fault_stack, docker):
    prepared = fault_stack
    prefix = f"soak{uuid.uuid4().hex[:6]}-"
    api = container(prepared, "api")
    print(f"soak: {SOAK_DEVICES} devices, 1 reading/s each, for {SOAK_SECONDS:g} s (IOT_SOAK_SECONDS)")
    sim = simulator(prepared, prefix, "--devices", str(SOAK_DEVICES), "--interval", "1",
                    "--duration", f"{SOAK_SECONDS:g}", "--drain-timeout", "60")
    samples: list[tuple[float, int]] = []
    try:
        while sim.running():
            samples.append((time.monotonic() - sim.started, memory_bytes(api, docker)))
            time.sleep(SAMPLE_EVERY_S)
        code, summary = sim.finish(timeout=30)
    finally:
        sim.kill()
    print(f"soak summary: {summary}")
    print("api memory (s: MiB): " + ", ".join(f"{t:.0f}: {b / 2**20:.1f}" for t, b in samples))
    assert_exact_run(code, summary, run_count(prepared, prefix), fault_seen=False, stderr=sim.stderr())
    assert summary["errors"] == {} and summary["retries"] == 0, f"errors without any fault: {summary}"
    expected = SOAK_DEVICES * SOAK_SECONDS
    assert summary["generated"] >= 0.8 * expected, (
        f"the load was not there: {summary['generated']} readings generated, {expected:.0f} planned")

    assert len(samples) >= 9, f"too few memory samples for thirds: {len(samples)}"
    third = len(samples) // 3
    first, last = max(b for _, b in samples[:third]), max(b for _, b in samples[-third:])
    print(f"api memory: first third peak {first / 2**20:.1f} MiB, last third peak {last / 2**20:.1f} MiB "
          f"(allowed growth {MEMORY_MARGIN_MIB} MiB)")
    assert last <= first + MEMORY_MARGIN_MIB * 2**20, "the api's memory grows under steady load"


def test_influxdb_restarted_under_load_exact_count(fault_stack, docker):
    prepared = fault_stack
    prefix = f"rst{uuid.uuid4().hex[:6]}-"
    influxdb = container(prepared, "influxdb")
    sim = simulator(prepared, prefix, *fault_args(200))
    try:
        sim.wait_stored(500)
        docker("restart", "--time", "10", influxdb)
        print(f"influxdb restarted {time.monotonic() - sim.started:.1f} s into the run")
        assert sim.running(), "the run ended before the fault was over: no load during the fault"
        code, summary = sim.finish(timeout=240)
    finally:
        sim.kill()
    print(f"influxdb restart: {summary}")
    assert_exact_run(code, summary, run_count(prepared, prefix), FAULT_DEVICES * 200, stderr=sim.stderr())


def restart_count(docker, container_id: str) -> int:
    return int(docker("inspect", "--format", "{{.RestartCount}}", container_id))


def test_api_crashed_and_killed_under_load_exact_count(fault_stack, docker):
    """Two hard stops of the api in one run, requests cut mid-flight both times:
    1. a crash: its main process SIGKILLed from the host (what the OOM killer or a segfault does): the
       restart policy (unless-stopped) must bring it back by itself;
    2. `docker kill`: the engine counts that as a manual stop and does not apply the restart policy
       (Docker's documented rule, seen on 20.10 here), so the test starts it again, as an operator would."""
    prepared = fault_stack
    prefix = f"kill{uuid.uuid4().hex[:6]}-"
    api = container(prepared, "api")
    sim = simulator(prepared, prefix, *fault_args(400))  # 40 s: two faults
    try:
        sim.wait_stored(500)
        before = restart_count(docker, api)
        os.kill(int(docker("inspect", "--format", "{{.State.Pid}}", api)), signal.SIGKILL)
        crashed = time.monotonic()
        deadline = crashed + 60
        while restart_count(docker, api) == before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert restart_count(docker, api) == before + 1, "the restart policy did not bring the crashed api back"
        wait_healthy(docker, api)
        print(f"api crashed {crashed - sim.started:.1f} s into the run; restarted by its policy, healthy "
              f"{time.monotonic() - crashed:.1f} s later")

        stored = sim.stored_so_far()
        sim.wait_stored(stored + 500)  # the load goes on through the restarted api
        docker("kill", api)  # SIGKILL through the engine
        killed = time.monotonic()
        deadline = killed + 3  # a restart policy acts within about a second
        while True:
            state = docker("inspect", "--format", "{{.State.Status}} restarts={{.RestartCount}}", api).strip()
            came_back = state.startswith("running")
            if came_back or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        print(f"api `docker kill`ed {killed - sim.started:.1f} s into the run; then: {state} "
              + ("(restarted by its policy)" if came_back else
                 "(not restarted: the engine treats `docker kill` as a manual stop; starting it explicitly)"))
        if not came_back:
            docker("start", api)
        wait_healthy(docker, api)
        print(f"api healthy again {time.monotonic() - killed:.1f} s after the kill")
        assert sim.running(), "the run ended before the faults were over: no load during them"
        code, summary = sim.finish(timeout=240)
    finally:
        sim.kill()
    print(f"api crash + kill: {summary}")
    assert_exact_run(code, summary, run_count(prepared, prefix), FAULT_DEVICES * 400, stderr=sim.stderr())
    assert summary["errors"].get("connection", 0) > 0, summary


def pause(docker, container_id: str, tries: int = 5) -> None:
    """docker pause, again when runc's cgroup freezer gives up (`unable to freeze`: a task of the container
    did not freeze in runc's short wait, seen on a loaded CI machine); the fault is still the same pause."""
    for attempt in range(1, tries + 1):
        try:
            docker("pause", container_id)
            return
        except AssertionError as exc:
            if "unable to freeze" not in str(exc) or attempt == tries:
                raise
            print(f"docker pause: unable to freeze (try {attempt} of {tries}): again in 1 s")
            time.sleep(1)


def test_influxdb_paused_longer_than_the_api_timeout_exact_count_no_duplicates(fault_stack, docker):
    prepared = fault_stack
    rendered = yaml.safe_load(prepared.file("compose.yaml").read_text())
    env = rendered["services"]["api"].get("environment") or {}
    timeout_s = api_config.load({k: str(v) for k, v in env.items() if k == "INFLUXDB_TIMEOUT"}).influxdb_timeout_s
    # Longer than two timeouts: the writes in flight when it froze fail (503), and so do the next ones,
    # which carry everything that queued meanwhile; InfluxDB may apply all of them after the unpause.
    pause_s = 2 * timeout_s + 3
    prefix = f"pause{uuid.uuid4().hex[:6]}-"
    influxdb = container(prepared, "influxdb")
    sim = simulator(prepared, prefix, *fault_args(200))
    try:
        sim.wait_stored(500)
        pause(docker, influxdb)
        try:
            time.sleep(pause_s)  # the fault itself: frozen for longer than the api waits for a write
        finally:
            docker("unpause", influxdb)
        print(f"influxdb paused {pause_s:g} s (api's INFLUXDB_TIMEOUT {timeout_s:g} s)")
        assert sim.running(), "the run ended before the pause was over: no load during the fault"
        code, summary = sim.finish(timeout=240)
    finally:
        sim.kill()
    print(f"influxdb pause: {summary}")
    assert summary["errors"].get("503", 0) + summary["errors"].get("timeout", 0) >= FAULT_DEVICES / 2, (
        f"too few writes failed to show that resent readings overwrite themselves: {summary['errors']}")
    assert_exact_run(code, summary, run_count(prepared, prefix), FAULT_DEVICES * 200, stderr=sim.stderr())
    api_log = compose(prepared, "logs", "--no-color", "api").stdout
    assert "InfluxDB write failed" in api_log and "Timeout" in api_log, api_log[-2000:]
