"""The local stack on a real Docker engine, driven by the same ./iot tasks a person uses.

Env `test` (stacks/values/test.yaml): offline bases, api published on 18080, compose project iot-test.
Counts are checked twice: through the api (read token) and directly in InfluxDB (its own CLI).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from harness import call, influx_count_in_container

from ops import images, render, secrets, stack

ROOT = Path(__file__).resolve().parents[2]

ENV = "test"
pytestmark = pytest.mark.usefixtures("docker_engine")


def iot(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(ROOT / "iot"), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"./iot {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def compose(prepared: stack.Stack, *args: str, target: str = "compose.yaml", check: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = prepared.compose(*args, target=target, profiles=("simulator",))
    proc = subprocess.run(shlex.split(cmd), cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **prepared.run_env()})
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


def influx_count(prepared: stack.Stack, where: str = "") -> int:
    values = render.load_values(ENV, {"bases.mode": "offline"})["influxdb"]
    return influx_count_in_container(lambda argv: compose(prepared, "exec", "-T", "api", *argv).stdout,
                                     values, where)


def api_get(prepared: stack.Stack, path: str) -> dict:
    token = prepared.result.secrets[secrets.API_READ_TOKEN].read_text().strip()
    resp = call("GET", prepared.result.urls["api"] + path, token)
    resp.raise_for_status()
    return resp.json()


@pytest.fixture(scope="module")
def test_stack(offline_bases):
    """`./iot up --env test` once for the module; `./iot down --env test --volumes` at the end."""
    iot("down", "--env", ENV, "--volumes", check=False)
    proc = iot("up", "--env", ENV)
    assert "first reading stored" in proc.stdout, proc.stdout[-2000:]
    prepared = stack.prepare(ENV, need_engine=False)
    yield prepared, proc
    iot("down", "--env", ENV, "--volumes", check=False)


def test_up_prints_urls_credentials_and_why_grafana_is_missing(test_stack):
    _, proc = test_stack
    assert "api: http://localhost:18080" in proc.stdout
    assert "credentials: files in secrets/test/" in proc.stdout
    assert "grafana left out: offline bases" in proc.stdout
    for name in secrets.ALL:  # no secret value is ever printed
        value = (ROOT / "secrets" / ENV / name).read_text().strip()
        assert value not in proc.stdout and value not in proc.stderr


def test_simulator_readings_reach_influxdb_exactly(test_stack):
    """A bounded simulator run in the stack's network: InfluxDB holds exactly what it generated."""
    prepared, _ = test_stack
    before = influx_count(prepared, "WHERE \"sensor_id\" =~ /^e2e-/")
    proc = compose(prepared, "run", "--rm", "--no-deps", "simulator", "--devices", "20", "--count", "10",
                   "--interval", "0", "--sensor-prefix", "e2e-", "--json")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["generated"] == 20 * 10 * 2  # devices x count x types (temp, humidity)
    assert summary["stored"] == summary["generated"]
    assert influx_count(prepared, "WHERE \"sensor_id\" =~ /^e2e-/") - before == summary["generated"]
    stats = api_get(prepared, "/sensors/e2e-0001/stats")["stats"]
    assert stats["temp"]["count"] == 10 and stats["humidity"]["count"] == 10


def test_show_draws_the_stack_s_data(test_stack, tmp_path):
    """`./iot show` on the running stack, through its api container as the InfluxDB reader: the stack's
    simulator devices are listed, the MQTT fleet's stations summarised; --png writes a real plot."""
    path = tmp_path / "overview.png"
    devices = render.load_values(ENV, {"bases.mode": "offline"})["simulator"]["devices"]
    rows = [re.compile(rf"^  sim-{i:04d} +[-\d.]+ +[-\d.]+ ", re.M) for i in range(1, devices + 1)]
    for _ in range(5):  # run right after `up`, the simulator's devices may not all have sent yet
        out = iot("show", "--env", ENV, "--png", str(path), timeout=120).stdout
        if all(row.search(out) for row in rows):
            break
        time.sleep(2)
    assert "the IoT overview dashboard's queries, run by ./iot show: not Grafana" in out, out
    assert all(row.search(out) for row in rows), out  # the simulator service's default ids, sim-0001...
    assert re.search(r"^  tls-\* \(\d+ sensors\) +min ", out, re.M), out  # the fleet's 77 stations, summarised
    assert re.search(r"^  temp +[·▁▂▃▄▅▆▇█]+ +[\d,]+/min( \(\d+ min/col\))?$", out, re.M), out
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, f"{len(data)} bytes"
    import matplotlib.image

    rgb = matplotlib.image.imread(str(path))[..., :3]
    assert ((rgb.max(axis=2) - rgb.min(axis=2)) > 0.25).sum() > 200, "no plotted (coloured) pixels"


def test_down_keeps_data_and_down_volumes_removes_it(test_stack):
    prepared, _ = test_stack
    stored = influx_count(prepared)
    assert stored > 0
    iot("down", "--env", ENV)
    iot("up", "--env", ENV, "--no-simulator", "--no-build")
    assert influx_count(prepared) >= stored  # everything still there after down/up
    iot("down", "--env", ENV, "--volumes")
    iot("up", "--env", ENV, "--no-simulator", "--no-build")
    assert influx_count(prepared) == 0  # a fresh volume


def test_autotest_passes(offline_bases):
    proc = iot("autotest", "--env", ENV, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "sut: PASS" in proc.stdout + proc.stderr  # compose relays service logs on either stream


def test_autotest_fails_with_a_broken_write_path(offline_bases, tmp_path, docker):
    """The autotest must be able to fail: an api that answers 201 without writing to InfluxDB."""
    broken = tmp_path / "api"
    shutil.copytree(ROOT / "api", broken, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    writer = broken / "iot_api" / "writer.py"
    source = writer.read_text()
    assert "status, error = await self.influx.write(body)" in source
    writer.write_text(source.replace("status, error = await self.influx.write(body)",
                                     'status, error = 204, ""  # BROKEN ON PURPOSE: acknowledge without writing'))
    overrides = {"bases.mode": "offline", "version": "0.0.0-broken"}
    prepared = stack.prepare(ENV, overrides, need_engine=False)
    api_tag = prepared.result.images["api"]
    images.build_image(broken, api_tag, base_image=prepared.result.bases["python"], version="0.0.0-broken",
                       revision="broken", progress=lambda _m: None, quiet=True)
    try:
        compose(prepared, "build", "sut", target="autotest.yaml")
        proc = compose(prepared, "up", "--no-build", "--abort-on-container-exit", "--exit-code-from", "sut",
                       target="autotest.yaml", check=False)
        assert proc.returncode != 0, "the autotest passed against an api that stores nothing"
        assert "sut: FAIL" in proc.stdout + proc.stderr, proc.stdout[-2000:]
    finally:
        compose(prepared, "down", "--volumes", "--remove-orphans", target="autotest.yaml", check=False)
        docker("rmi", "-f", api_tag, prepared.result.images["simulator"], check=False)


def test_no_secret_in_rendered_files_or_container_environments(test_stack, docker):
    """Secrets reach the services as files (/run/secrets, *_FILE): never in a rendered file or in
    what `docker inspect` shows of a running container."""
    prepared, _ = test_stack
    values = [(ROOT / "secrets" / ENV / name).read_text().strip() for name in secrets.ALL]
    rendered = "".join(path.read_text() for path in prepared.result.files.values())
    containers = compose(prepared, "ps", "--quiet").stdout.split()
    assert containers, "the stack is not running"
    inspected = docker("inspect", *containers)
    for value in values:
        assert value not in rendered
        assert value not in inspected
    assert "/run/secrets/api_tokens" in inspected  # the api does get its tokens, as a file
