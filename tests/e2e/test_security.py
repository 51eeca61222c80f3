# ruff: noqa: F811
"""Security review of the running `test` stack (issue #6), on a real Docker engine.

The stack is the one `tests/e2e/test_stack.py` brings up (its module fixture `test_stack`, reused:
`./iot up --env test`, then `./iot down --env test --volumes`). Checked here:

- every container runs hardened as rendered: non-root user (and `id -u` inside), no-new-privileges
  (and NoNewPrivs=1 / no effective capability in /proc), CapDrop ALL, read-only root filesystem
  where configured, cpu/memory/pids limits;
- the api and the simulator also run with a read-only root filesystem (as in Swarm), and readings
  still reach InfluxDB end to end;
- the generated secret values (read from secrets/test/) appear nowhere: rendered build/test files,
  `docker image history`, a `docker save` of each project image, `docker inspect`, the services' logs
  after traffic that includes wrong tokens and a failed InfluxDB login, and the api's error bodies.
"""
from __future__ import annotations

import json
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from harness import call

# test_stack.py's helpers and its module fixture `test_stack` (registered here by its name; the tests
# take it as an argument, hence F811 for the whole file).
from test_stack import ENV, ROOT, compose, influx_count, test_stack  # noqa: F401

from ops import render, secrets

pytestmark = pytest.mark.usefixtures("docker_engine")
OVERRIDES = {"bases.mode": "offline"}


def secret_values() -> dict[str, str]:
    """name -> value of every generated secret of the env (each token of the tokens file apart)."""
    out = {}
    for name in secrets.ALL:
        text = (ROOT / "secrets" / ENV / name).read_text()
        if name == secrets.API_TOKENS:
            for i, line in enumerate(t for t in text.splitlines() if t.strip() and not t.startswith("#")):
                out[f"{name}[{i}]"] = line.split()[1]
        else:
            out[name] = text.strip()
    assert all(len(v) >= 16 for v in out.values())
    return out


def assert_no_secret(text: str | bytes, where: str) -> None:
    data = text.encode() if isinstance(text, str) else text
    for name, value in secret_values().items():
        assert value.encode() not in data, f"the value of secret {name} appears in {where}"


def containers(prepared) -> dict[str, dict]:
    """service name -> `docker inspect` of its container, for every running container of the stack."""
    ids = compose(prepared, "ps", "--quiet").stdout.split()
    assert ids, "the stack is not running"
    inspected = json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True,
                                          check=True).stdout)
    return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in inspected}


def docker_out(*args: str, timeout: float = 120) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"docker {' '.join(args)}: {proc.stderr.strip()}"
    return proc.stdout


def request(url: str, method: str = "GET", token: str | None = None, body: bytes | None = None,
            ctype: str = "application/json") -> tuple[int, bytes]:
    headers = {"Content-Type": ctype} if body is not None else {}
    resp = call(method, url, token, data=body, headers=headers, timeout=15)
    return resp.status_code, resp.content


def proc_status(container: str) -> dict[str, str]:
    text = docker_out("exec", container, "cat", "/proc/1/status")
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


# -- hardening ------------------------------------------------------------------------------------------
def test_every_container_runs_hardened_as_rendered(test_stack):
    prepared, _ = test_stack
    spec = render.load_values(ENV, OVERRIDES)
    rendered = yaml.safe_load(prepared.result.files["compose.yaml"].read_text())["services"]
    running = containers(prepared)
    assert {"api", "influxdb", "simulator"} <= set(running)
    for name, c in running.items():
        host, cid = c["HostConfig"], c["Id"][:12]
        assert c["Config"]["User"] and c["Config"]["User"].split(":")[0] not in ("", "0", "root"), name
        assert docker_out("exec", cid, "id", "-u").strip() != "0", name
        assert host["SecurityOpt"] == ["no-new-privileges:true"], name
        assert host["CapDrop"] == ["ALL"] and not host["CapAdd"], name
        assert not host["Privileged"], name
        status = proc_status(cid)  # what the kernel enforces on PID 1, not only what was asked for
        assert status["NoNewPrivs"] == "1", name
        assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0, name
        assert host["ReadonlyRootfs"] is bool(rendered[name].get("read_only")), name
        limits = rendered[name]["deploy"]["resources"]["limits"]
        assert host["NanoCpus"] == int(float(limits["cpus"]) * 1e9), name
        assert host["Memory"] == render_size(limits["memory"]), name
        assert host["PidsLimit"] == limits["pids"], name
    assert running["influxdb"]["HostConfig"]["ReadonlyRootfs"] is True
    assert running["api"]["Config"]["User"] == spec["api"]["user"]


def render_size(text: str) -> int:
    units = {"k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
    return int(float(text[:-1]) * units[text[-1].lower()]) if text[-1].isalpha() else int(text)


def test_influxdb_root_filesystem_is_read_only_and_its_volume_its_own(test_stack):
    prepared, _ = test_stack
    cid = containers(prepared)["influxdb"]["Id"][:12]
    proc = subprocess.run(["docker", "exec", cid, "touch", "/etc/iot-probe"], capture_output=True, text=True,
                          check=False)
    assert proc.returncode != 0 and "Read-only file system" in proc.stderr
    docker_out("exec", cid, "touch", "/tmp/iot-probe")  # the tmpfs is writable
    uid = docker_out("exec", cid, "id", "-u").strip()
    assert uid == "1000"
    # the fresh named volume took the image folder's owner: InfluxDB writes its data as itself
    assert docker_out("exec", cid, "stat", "-c", "%u", "/var/lib/influxdb", "/var/lib/influxdb/data").split() == [uid, uid]


def test_readings_are_stored_through_the_hardened_stack(test_stack):
    prepared, _ = test_stack
    token = prepared.result.secrets[secrets.SIMULATOR_TOKEN].read_text().strip()
    sensor = f"sec-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).replace(microsecond=0)
    batch = [{"type": "temp", "value": 20 + i, "sensor_id": sensor,
              "ts": (now - timedelta(seconds=i)).isoformat().replace("+00:00", "Z")} for i in range(5)]
    status, body = request(prepared.result.urls["api"] + "/data", "POST", token, json.dumps(batch).encode())
    assert (status, json.loads(body)) == (201, {"stored": 5})
    assert influx_count(prepared, f"WHERE \"sensor_id\" = '{sensor}'") == 5


def test_api_and_simulator_with_read_only_root_filesystems_store_readings(test_stack, tmp_path, run_label):
    """The api and the simulator as Swarm runs them (read-only root filesystem, tmpfs /tmp, no
    capability, no-new-privileges, non-root), wired to the stack's InfluxDB: readings go end to end.
    Compose cannot give them secrets read-only; here their secret files are bind-mounted from a copy
    (0444 in a folder only root can reach), like Swarm's /run/secrets."""
    prepared, _ = test_stack
    values = render.load_values(ENV, OVERRIDES)
    project = prepared.result.project
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    run_secrets = private / "secrets"
    run_secrets.mkdir(mode=0o755)
    for name, path in prepared.result.secrets.items():
        (run_secrets / name).write_bytes(path.read_bytes())
        (run_secrets / name).chmod(0o444)
    api_env = yaml.safe_load(prepared.result.files["compose.yaml"].read_text())["services"]["api"]["environment"]
    hardened = ["--read-only", "--tmpfs", "/tmp:size=16m", "--cap-drop", "ALL", "--security-opt",
                "no-new-privileges:true", "--memory", "256m", "--pids-limit", "128", "--label", run_label,
                "-v", f"{run_secrets}:/run/secrets:ro"]
    name = f"iot-sec-api-{uuid.uuid4().hex[:6]}"
    try:
        env_args = [a for k, v in api_env.items() for a in ("-e", f"{k}={v}")]
        docker_out("run", "-d", "--name", name, "--user", values["api"]["user"], "--network", f"{project}_backend",
                   *hardened, *env_args, prepared.result.images["api"])
        docker_out("network", "connect", f"{project}_frontend", name)
        deadline = time.monotonic() + 90
        while docker_out("inspect", "-f", "{{.State.Health.Status}}", name).strip() != "healthy":
            assert docker_out("inspect", "-f", "{{.State.Running}}", name).strip() == "true", \
                docker_out("logs", name)[-2000:]
            assert time.monotonic() < deadline, "read-only api not healthy in 90 s: " + docker_out("logs", name)[-2000:]
            time.sleep(1)
        assert docker_out("inspect", "-f", "{{.HostConfig.ReadonlyRootfs}}", name).strip() == "true"
        prefix = f"ro{uuid.uuid4().hex[:6]}-"
        sim = subprocess.run(
            ["docker", "run", "--rm", "--user", values["simulator"]["user"], "--network", f"{project}_frontend",
             *hardened, prepared.result.images["simulator"], "--url", f"http://{name}:{values['api']['port']}",
             "--devices", "3", "--count", "5", "--interval", "0", "--types", "temp", "--sensor-prefix", prefix,
             "--token-file", "/run/secrets/simulator_token", "--json"],
            capture_output=True, text=True, timeout=180, check=False)
        assert sim.returncode == 0, sim.stderr[-2000:]
        summary = json.loads(sim.stdout.strip().splitlines()[-1])
        assert summary["generated"] == 15 and summary["stored"] == 15
        assert influx_count(prepared, f"WHERE \"sensor_id\" =~ /^{prefix}/") == 15
        assert_no_secret(docker_out("logs", name) + docker_out("inspect", name), "the read-only api's logs/inspect")
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


# -- no secret anywhere -------------------------------------------------------------------------------
def test_api_error_bodies_and_logs_after_bad_traffic_hold_no_secret(test_stack):
    prepared, _ = test_stack
    url = prepared.result.urls["api"]
    values = secret_values()
    write, read = values[secrets.SIMULATOR_TOKEN], values[secrets.API_READ_TOKEN]
    reading = json.dumps({"type": "temp", "value": 1, "sensor_id": "sec-bad"}).encode()
    bodies = []
    for method, path, token, body, expected in [
        ("POST", "/data", None, reading, 401),
        ("POST", "/data", "wrong-token-" + "x" * 20, reading, 401),
        ("POST", "/data", write[:-1] + "x", reading, 401),  # one character off
        ("POST", "/data", read, reading, 403),
        ("GET", "/data", write, None, 403),
        ("POST", "/data", write, b"{not json", 400),
        ("POST", "/data", write, b"x" * (2 * 1024 * 1024), 413),
        ("GET", "/nope", read, None, 404),
        ("GET", "/sensors/%00/stats", read, None, 400),
    ]:
        status, answer = request(url + path, method, token, body)
        assert status == expected, (method, path, status, answer[:300])
        json.loads(answer)  # every error is JSON
        bodies.append(answer)
    assert_no_secret(b"\n".join(bodies), "the api's error bodies")

    # A failed InfluxDB login (wrong admin password, over the stack's internal network).
    influx = render.load_values(ENV, OVERRIDES)["influxdb"]
    probe = ("import base64, urllib.request, urllib.error\n"  # stdlib: the api's image has no requests
             f"req = urllib.request.Request('http://influxdb:{influx['port']}/query?q=SHOW+DATABASES', headers="
             f"{{'Authorization': 'Basic ' + base64.b64encode(b'{influx['users']['admin']}:wrong-password').decode()}})\n"
             "try:\n    urllib.request.urlopen(req, timeout=5); print(200)\n"
             "except urllib.error.HTTPError as e:\n    print(e.code)\n")
    assert compose(prepared, "exec", "-T", "api", "python3", "-c", probe).stdout.strip() == "401"

    time.sleep(1)  # let the log drivers flush
    logs = compose(prepared, "logs", "--no-color", "--timestamps").stdout
    assert "InfluxDB ready" in logs and "influxdb" in logs  # control: these are the services' logs
    assert_no_secret(logs, "`docker compose logs`")


def test_no_secret_in_rendered_files_inspect_or_image_history(test_stack):
    prepared, _ = test_stack
    build = ROOT / "build" / ENV
    files = [p for p in build.rglob("*") if p.is_file()]
    assert prepared.result.files["compose.yaml"] in files
    for path in files:
        assert_no_secret(path.read_bytes(), str(path.relative_to(ROOT)))
    ids = compose(prepared, "ps", "--quiet").stdout.split()
    assert_no_secret(docker_out("inspect", *ids), "`docker inspect` of the containers")
    for image in project_images(prepared):
        assert_no_secret(docker_out("image", "history", "--no-trunc", image), f"`docker image history {image}`")
        assert_no_secret(docker_out("image", "inspect", image), f"`docker image inspect {image}`")


def project_images(prepared) -> list[str]:
    return [prepared.result.images["api"], prepared.result.images["simulator"], prepared.result.bases["influxdb"]]


@pytest.mark.parametrize("which", ["api", "simulator", "influxdb"])
def test_no_secret_in_any_image_layer(test_stack, which):
    """`docker save` of each image (every layer, uncompressed tar) scanned for every secret value, with
    a control string that must be found, so the scan is known to see the layers' content."""
    prepared, _ = test_stack
    image = dict(zip(["api", "simulator", "influxdb"], project_images(prepared), strict=True))[which]
    control = {"api": b"def post_data", "simulator": b"iot_simulator", "influxdb": b"influxd"}[which]
    needles = {name: value.encode() for name, value in secret_values().items()}
    found, control_seen, tail = [], False, b""
    keep = max(len(n) for n in [*needles.values(), control])
    with subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE) as proc:
        while chunk := proc.stdout.read(1 << 20):
            window = tail + chunk
            found += [name for name, value in needles.items() if value in window]
            control_seen = control_seen or control in window
            tail = window[-keep:]
    assert proc.returncode == 0
    assert control_seen, f"control string {control!r} not found: the scan does not see {image}'s layers"
    assert not found, f"secret values {sorted(set(found))} found in a layer of {image}"


def test_secret_files_are_private_on_the_host(test_stack):
    folder = ROOT / "secrets" / ENV
    assert oct(folder.stat().st_mode & 0o777) == oct(0o700)
    for name in secrets.ALL:
        assert oct((folder / name).stat().st_mode & 0o777) == oct(0o600), name
