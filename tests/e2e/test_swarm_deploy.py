"""`./iot deploy` on a real one-node swarm on this machine's engine (env `test`: offline bases, dnsrr
endpoints and host-mode ports, because the kernel has no IPVS; see shared DESIGN.md).

The swarm: when the engine is not in swarm mode, `docker swarm init --advertise-addr 127.0.0.1` makes
one and the end of the module leaves it again; a swarm that was there is kept (only the node label this
module added is removed). The stack, its secrets, configs and volumes and the images tagged here are
removed at the end, failures included. The tests run in order: each builds on the stack left by the
previous one (deploy, rolling update under load, failed update rolled back, rotated secrets, a new
admin password refused by the kept volume, Docker Machine target).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from harness import call, influx_count_in_container

from ops import render, secrets

ROOT = Path(__file__).resolve().parents[2]

ENV = "test"
STACK = "iot-test"
DB_LABEL = "iot.influxdb"
NODE_LABELS = (DB_LABEL, "iot.mqtt")  # the placements of InfluxDB and the broker
OUR_IMAGES = ("iot/api", "iot/simulator", "iot/mosquitto", "iot/web")  # what `version` names in the stack
NEW_VERSION = "0.1.1-e2e"
BROKEN_VERSION = "0.1.2-e2e-broken"
pytestmark = pytest.mark.usefixtures("docker_engine")


def iot(*args: str, check: bool = True, timeout: float = 400, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(ROOT / "iot"), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"./iot {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return proc


def values() -> dict:
    return render.load_values(ENV, {"bases.mode": "offline"})


def api_url() -> str:
    return f"http://localhost:{values()['api']['published_port']}"


def token(name: str) -> str:
    return (ROOT / "secrets" / ENV / name).read_text().strip()


def http(method: str, path: str, token_name: str, body: dict | None = None) -> tuple[int, dict]:
    resp = call(method, api_url() + path, token(token_name), json=body)
    return resp.status_code, resp.json() if resp.content else {}


def influx_count(docker, where: str) -> int:
    """Straight from InfluxDB over the stack's internal network (from inside the api container): the
    independent check, not through our api."""
    container = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={STACK}_api").split()[0]
    return influx_count_in_container(lambda argv: docker("exec", container, *argv), values()["influxdb"], where)


def service_versions(docker) -> dict[str, str]:
    found = docker("service", "ls", "--filter", f"label=com.docker.stack.namespace={STACK}",
                   "--format", "{{.Name}} {{.Image}}").split("\n")
    return dict(line.split() for line in found if line.strip())


def dk(*args: str, input_text: str | None = None) -> str:
    """`docker ARGS` for the module fixtures (the `docker` fixture is per test); fails on error."""
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300, input=input_text,
                          check=False)
    if proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def cleanup(docker=dk) -> None:
    subprocess.run(["docker", "stack", "rm", STACK], capture_output=True, check=False)
    flt = f"label=com.docker.stack.namespace={STACK}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # `stack rm` returns before the containers and networks are gone
        if not docker("ps", "-aq", "--filter", flt).split() and not docker("network", "ls", "-q", "--filter", flt).split():
            break
        time.sleep(1)
    for kind in ("secret", "config"):
        names = docker(kind, "ls", "-q", "--filter", flt).split()
        if names:
            subprocess.run(["docker", kind, "rm", *names], capture_output=True, check=False)
    for _ in range(10):  # a just-removed container may hold the volume for a moment
        vols = docker("volume", "ls", "-q", "--filter", flt).split()
        if not vols or subprocess.run(["docker", "volume", "rm", *vols], capture_output=True,
                                      check=False).returncode == 0:
            break
        time.sleep(1)


@pytest.fixture(scope="module")
def one_node_swarm(offline_bases):
    docker = dk
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").strip()
    created = state != "active"
    if created:
        docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    node = docker("info", "--format", "{{.Swarm.NodeID}}").strip()
    labels = json.loads(docker("node", "inspect", "--format", "{{json .Spec.Labels}}", node) or "{}") or {}
    had_labels = [label for label in NODE_LABELS if label in labels]
    cleanup(docker)  # a stack left by an interrupted run
    for tag in (NEW_VERSION, BROKEN_VERSION):
        subprocess.run(["docker", "rmi", *(f"{image}:{tag}" for image in OUR_IMAGES)], capture_output=True, check=False)
    yield node
    cleanup(docker)
    for tag in (NEW_VERSION, BROKEN_VERSION):
        subprocess.run(["docker", "rmi", *(f"{image}:{tag}" for image in OUR_IMAGES)], capture_output=True, check=False)
    if created:
        docker("swarm", "leave", "--force")
    else:
        for label in NODE_LABELS:
            if label not in had_labels:
                subprocess.run(["docker", "node", "update", "--label-rm", label, node], capture_output=True, check=False)


@pytest.fixture(scope="module")
def deployed(one_node_swarm):
    started = time.monotonic()
    proc = iot("deploy", "--env", ENV)
    return proc, time.monotonic() - started


def test_deploy_converges_and_passes_its_smoke_test(deployed, docker, one_node_swarm):
    proc, took = deployed
    out = proc.stdout + proc.stderr
    assert "docker stack deploy --with-registry-auth --prune --resolve-image never" in out
    assert "smoke test passed" in out and "every service converged" in out
    assert f"labelled the only node {DB_LABEL}=true" in out or DB_LABEL in docker(
        "node", "inspect", "--format", "{{json .Spec.Labels}}", one_node_swarm)
    versions = service_versions(docker)
    assert versions == {f"{STACK}_api": "iot/api:0.1.0", f"{STACK}_influxdb": "iot-base/influxdb:1.6.7",
                        f"{STACK}_mqtt": "iot/mosquitto:0.1.0", f"{STACK}_historian": "iot/api:0.1.0",
                        f"{STACK}_processor": "iot/api:0.1.0", f"{STACK}_fleet": "iot/simulator:0.1.0",
                        f"{STACK}_web": "iot/web:0.1.0"}
    assert "iot.mqtt" in docker("node", "inspect", "--format", "{{json .Spec.Labels}}", one_node_swarm)
    # InfluxDB and the broker are on the internal network only: nothing of them is published.
    for name in ("influxdb", "mqtt"):
        ports = docker("service", "inspect", "--format", "{{json .Endpoint.Ports}}", f"{STACK}_{name}").strip()
        assert ports in ("null", "[]"), name
    print(f"first deploy: {took:.1f} s")


def test_a_reading_posted_through_the_published_port_lands_in_influxdb(deployed, docker):
    sensor = f"e2e-swarm-{uuid.uuid4().hex[:8]}"
    code, body = http("POST", "/data", secrets.SIMULATOR_TOKEN,
                      {"ts": datetime.now(UTC).isoformat(), "type": "temp", "value": 21.25, "sensor_id": sensor})
    assert (code, body) == (201, {"stored": 1})
    assert influx_count(docker, f"WHERE \"sensor_id\" = '{sensor}'") == 1
    code, body = http("GET", f"/data?sensor_id={sensor}", secrets.API_READ_TOKEN)
    assert code == 200 and body["readings"][0]["value"] == 21.25


def test_status_lists_services_with_replicas_and_versions(deployed):
    out = iot("status", "--env", ENV).stdout
    assert f"{STACK}_api" in out and "1/1" in out and "0.1.0" in out and "1.6.7" in out


def test_rolling_update_under_load_loses_nothing(deployed, docker):
    """A new api version (the same image re-tagged) while a bounded simulator runs: every generated
    reading is stored, exactly once (the api is stop-first here: one host-mode port on one node)."""
    for image in OUR_IMAGES:  # a release tags every image of ours (the MQTT services' too)
        docker("tag", f"{image}:0.1.0", f"{image}:{NEW_VERSION}")
    prefix = f"roll{uuid.uuid4().hex[:6]}-"
    sim = subprocess.Popen(  # noqa: S603
        # 50 s of load (200 x 0.25 s): room for a deploy that is slow on a busy machine
        [sys.executable, "-m", "iot_simulator", "--url", api_url(), "--devices", "5", "--count", "200",
         "--interval", "0.25", "--types", "temp", "--sensor-prefix", prefix, "--drain-timeout", "120",
         "--token-file", str(ROOT / "secrets" / ENV / secrets.SIMULATOR_TOKEN), "--json"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while influx_count(docker, f"WHERE \"sensor_id\" =~ /^{prefix}/") == 0:  # the load is on
            assert time.monotonic() < deadline and sim.poll() is None, "no reading of the simulator stored in 60 s"
            time.sleep(0.5)
        iot("deploy", "--env", ENV, "--set", f"version={NEW_VERSION}")
        assert sim.poll() is None, "the simulator ended before the update did: no load during the update"
        out, err = sim.communicate(timeout=180)
    finally:
        if sim.poll() is None:
            sim.kill()
    assert sim.returncode == 0, err[-2000:]
    summary = json.loads(out.strip().splitlines()[-1])
    print(f"rolling update under load: {summary}")
    assert summary["generated"] == 5 * 200
    assert summary["stored"] == summary["generated"]
    assert influx_count(docker, f"WHERE \"sensor_id\" =~ /^{prefix}/") == summary["generated"]
    assert service_versions(docker)[f"{STACK}_api"] == f"iot/api:{NEW_VERSION}"
    # The label of our release does not touch InfluxDB: its version label is its image's tag.
    assert docker("service", "inspect", "--format", "{{json .UpdateStatus}}", f"{STACK}_influxdb").strip() in ("null", "")


def test_a_failing_healthcheck_is_rolled_back_and_deploy_names_the_service(deployed, docker):
    """An api image that serves on the wrong port: its healthcheck never passes. Swarm rolls the update
    back; `./iot deploy` exits non-zero naming the service, and the previous version still answers."""
    dockerfile = (f"FROM iot/api:{NEW_VERSION}\n"
                  'ENTRYPOINT ["/usr/bin/tini", "--", "sh", "-c", "API_PORT=1338 exec python -m iot_api"]\n')
    docker("build", "-q", "-t", f"iot/api:{BROKEN_VERSION}", "-", input_text=dockerfile)
    for image in OUR_IMAGES[1:]:  # only the api image is broken
        docker("tag", f"{image}:{NEW_VERSION}", f"{image}:{BROKEN_VERSION}")
    proc = iot("deploy", "--env", ENV, "--set", f"version={BROKEN_VERSION}", "--timeout", "150", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    last = [line for line in out.strip().splitlines() if line.strip()][-1]
    assert last.startswith("error: deploy of iot-test failed") and f"{STACK}_api" in last, last
    assert f"FAILED {STACK}_api" in out
    assert service_versions(docker)[f"{STACK}_api"] == f"iot/api:{NEW_VERSION}"
    code, _ = http("GET", "/data?limit=1", secrets.API_READ_TOKEN)
    assert code == 200


def test_changed_secrets_roll_out_as_new_objects(deployed, docker):
    """Rotate the api tokens between two deploys, then put them back: each change is a new hash-named
    secret, no 'only updates to Labels are allowed', the api uses the new tokens (the deploy's smoke
    test authenticates with them), and the unused generation is pruned."""
    folder = ROOT / "secrets" / ENV
    names = (secrets.SIMULATOR_TOKEN, secrets.API_READ_TOKEN, secrets.API_TOKENS)
    saved = {name: (folder / name).read_bytes() for name in names}
    old_secret = render.render(ENV, overrides={"bases.mode": "offline"}).swarm_secret_names[secrets.API_TOKENS]
    try:
        for name in names:
            (folder / name).unlink()
        proc = iot("deploy", "--env", ENV, "--set", f"version={NEW_VERSION}")
        out = proc.stdout + proc.stderr
        assert "only updates to Labels are allowed" not in out
        assert "smoke test passed" in out
        new_secret = render.render(ENV, overrides={"bases.mode": "offline"}).swarm_secret_names[secrets.API_TOKENS]
        assert new_secret != old_secret
        assert new_secret in docker("secret", "ls", "--format", "{{.Name}}").split()
    finally:
        for name, data in saved.items():
            (folder / name).unlink(missing_ok=True)
            (folder / name).write_bytes(data)
            (folder / name).chmod(0o600)
    proc = iot("deploy", "--env", ENV, "--set", f"version={NEW_VERSION}")
    assert "smoke test passed" in proc.stdout + proc.stderr
    live = docker("secret", "ls", "--format", "{{.Name}}").split()
    assert old_secret in live
    # kept: the generation in use and the one a rollback would need; older ones are pruned
    assert len([n for n in live if n.startswith(f"{STACK}_api_tokens_")]) <= 2


def test_a_new_admin_password_beside_the_kept_volume_is_named_and_rolled_back(deployed, docker):
    """secrets/ENV made anew (a fresh clone, a deleted file) while the stack and its data volume stay:
    InfluxDB keeps the admin password it was set up with, so the new api is refused. The deploy says so
    before it starts, fails with the api's own log line as the reason, and the previous version still
    answers (what a CI run found on a machine where an interrupted run had left the stack)."""
    path = ROOT / "secrets" / ENV / secrets.INFLUXDB_ADMIN_PASSWORD
    saved = path.read_bytes()
    try:
        path.unlink()  # the next deploy generates a new one
        proc = iot("deploy", "--env", ENV, "--set", f"version={NEW_VERSION}", "--timeout", "150", check=False)
    finally:
        path.unlink(missing_ok=True)
        path.write_bytes(saved)
        path.chmod(0o600)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "secrets changed since the running deploy: influxdb_admin_password " in out
    assert f"./iot undeploy --env {ENV} --volumes" in out
    last = [line for line in out.strip().splitlines() if line.strip()][-1]
    assert last.startswith(f"error: deploy of {STACK} failed ({STACK}_api)"), last
    assert "log: InfluxDB refused the api's credentials" in last and "another password" in last, last
    assert service_versions(docker)[f"{STACK}_api"] == f"iot/api:{NEW_VERSION}"
    code, _ = http("GET", "/data?limit=1", secrets.API_READ_TOKEN)
    assert code == 200


def test_docker_machine_target_through_a_recording_stand_in(deployed, tmp_path):
    """The `--machine NAME` path against a recording stand-in for `docker-machine` on PATH: it cannot
    create VMs here (no hypervisor, no cloud account), so the stand-in answers `env` with this machine's
    engine and records every call. The exact sequence of commands is asserted; the deploy itself is real."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "calls"
    stand_in = bindir / "docker-machine"
    stand_in.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" >> "{log}"\n'
        'if [ "$1" = env ]; then\n'
        '  echo \'export DOCKER_HOST="unix:///var/run/docker.sock"\'\n'
        '  echo "export DOCKER_MACHINE_NAME=\\"$4\\""\n'
        "  echo '# Run this command to configure your shell: eval $(docker-machine env node1)'\n"
        "  exit 0\nfi\n"
        'echo "stand-in: unexpected call: $*" >&2\nexit 2\n')
    stand_in.chmod(0o755)
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    proc = iot("deploy", "--env", ENV, "--set", f"version={NEW_VERSION}", "--machine", "node1", env=env)
    assert "smoke test passed" in proc.stdout + proc.stderr
    iot("status", "--env", ENV, "--machine", "node1", env=env)
    assert log.read_text().splitlines() == ["env --shell bash node1", "env --shell bash node1"]
