"""The service images, built on the offline Python base and run on the real engine.

What is proven: non-root users; OCI labels carry the version and revision given; the api's HEALTHCHECK
turns healthy next to an InfluxDB container from the offline image, and a reading POSTed through the
published port is answered 201 and is in that InfluxDB (the simulator and device images deliver too);
`docker stop` of the api is quick and exits 0 (tini + the api's own drain); the CA bundle given as a
BuildKit secret is in no layer of any image; a code-only change rebuilds with the dependency layer
from the cache. Everything is created under one label and removed at the end, failures included.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import pytest
from harness import call

from ops import images

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(600)  # a first run also debootstraps the bases (~45 s) and builds cold
SERVICES = ("api", "simulator", "device")
VERSION = "9.8.7-e2e"
MARKER = "iot-images-e2e-ca-marker: this line is only in the build secret"
COURSE_PAYLOAD = {"ts": "2017-06-25T09:53:16Z", "type": "temp", "value": 34, "sensor_id": 123}


def log(message: str) -> None:
    print(f"images-e2e: {message}")


@pytest.fixture(scope="module")
def ca_secret(tmp_path_factory):
    """The host's CA bundle (pip needs it behind the TLS-intercepting proxy) plus a marker line: text
    outside PEM blocks is ignored by OpenSSL, and no layer may ever contain it."""
    host = Path(images.HOST_CA_BUNDLE)
    path = tmp_path_factory.mktemp("secret") / "ca-bundle.crt"
    text = host.read_text() if host.is_file() else ""
    path.write_text(text.rstrip("\n") + f"\n# {MARKER}\n")
    return path


@pytest.fixture(scope="module")
def built(offline_bases, ca_secret):
    """The three images under unique tags; the api built with --no-cache (its cold build time)."""
    run_id = uuid.uuid4().hex[:8]
    revision = f"e2e{run_id}"
    tags = {name: f"iot-e2e/{name}:{run_id}" for name in SERVICES}
    base = offline_bases["python"]
    secrets = {"cabundle": str(ca_secret)}
    results = {}
    try:
        results["api"] = images.build_image(ROOT / "api", tags["api"], base, VERSION, revision, secrets,
                                            no_cache=True, progress=log, quiet=True)
        log(f"api cold build (--no-cache): {results['api'].seconds:.1f} s")
        results["simulator"] = images.build_image(ROOT / "simulator", tags["simulator"], base, VERSION, revision,
                                                  secrets, progress=log, quiet=True)
        results["device"] = images.build_device(ROOT / "device", tags["device"], base, VERSION, revision, secrets,
                                                progress=log, quiet=True)[-1]
        yield {"tags": tags, "revision": revision, "results": results, "base": base}
    finally:
        subprocess.run(["docker", "rmi", "-f", *tags.values()], capture_output=True, check=False)


@pytest.mark.parametrize("service", SERVICES)
def test_runs_as_non_root(built, docker, service):
    uid = docker("run", "--rm", "--entrypoint", "id", built["tags"][service], "-u").strip()
    assert uid.isdigit() and int(uid) != 0, f"{service} runs as uid {uid}"


@pytest.mark.parametrize("service", SERVICES)
def test_oci_labels(built, docker, service):
    labels = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}", built["tags"][service]))
    prefix = "org.opencontainers.image."
    assert labels[prefix + "version"] == VERSION
    assert labels[prefix + "revision"] == built["revision"]
    assert labels[prefix + "title"] == f"iot-{service}"
    for key in ("description", "created", "source", "licenses"):
        assert labels.get(prefix + key), f"{service}: label {prefix + key} missing"
    time.strptime(labels[prefix + "created"], "%Y-%m-%dT%H:%M:%SZ")


def _wait_health(docker, container: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = docker("inspect", "--format", "{{.State.Health.Status}}", container).strip()
        if status == "healthy":
            return status
        time.sleep(0.5)
    logs = subprocess.run(["docker", "logs", "--tail", "30", container], capture_output=True, text=True).stderr
    raise AssertionError(f"{container} is {status!r} after {timeout:.0f} s; logs:\n{logs}")


def _published(docker, container: str, port: int) -> int:
    return int(docker("port", container, str(port)).splitlines()[0].rsplit(":", 1)[1])


def _influx_rows(influx_port: int, db: str, sensor_id: str) -> list:
    resp = call("GET", f"http://127.0.0.1:{influx_port}/query", params={
        "db": db, "q": "SELECT * FROM data WHERE sensor_id = $sid", "params": json.dumps({"sid": sensor_id})})
    assert resp.status_code == 200, resp.text
    series = resp.json()["results"][0].get("series", [])
    if not series:
        return []
    cols = series[0]["columns"]
    return [dict(zip(cols, row, strict=True)) for row in series[0]["values"]]


def test_stack_of_images_stores_readings_and_stops_fast(built, offline_bases, docker, run_label, tmp_path):
    name = f"iot-e2e-{uuid.uuid4().hex[:8]}"
    net, influx, api = f"{name}-net", f"{name}-influxdb", f"{name}-api"
    db = "e2e"
    docker("network", "create", "--label", run_label, net)
    docker("run", "-d", "--name", influx, "--label", run_label, "--network", net, "--network-alias", "influxdb",
           "-p", "127.0.0.1::8086", offline_bases["influxdb"])
    docker("run", "-d", "--name", api, "--label", run_label, "--network", net, "--network-alias", "api",
           "-e", "INFLUXDB_URL=http://influxdb:8086", "-e", f"INFLUXDB_DB={db}", "-p", "127.0.0.1::1337",
           built["tags"]["api"])
    started = time.monotonic()
    _wait_health(docker, influx)
    _wait_health(docker, api)
    log(f"api healthy {time.monotonic() - started:.1f} s after start")

    api_port, influx_port = _published(docker, api, 1337), _published(docker, influx, 8086)
    deadline = time.monotonic() + 30  # healthy = alive; the api may still be creating its database
    while True:
        resp = call("POST", f"http://127.0.0.1:{api_port}/data", json=COURSE_PAYLOAD)
        if resp.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert resp.status_code == 201, resp.text
    rows = _influx_rows(influx_port, db, "123")
    assert [(r["time"], r["type"], r["value"]) for r in rows] == [("2017-06-25T09:53:16Z", "temp", 34)]

    # The two client images deliver through the same network.
    docker("run", "--rm", "--label", run_label, "--network", net, built["tags"]["simulator"],
           "--url", "http://api:1337", "--sensor-id", "sim-e2e", "--count", "3", "--interval", "0.05", timeout=120)
    assert len(_influx_rows(influx_port, db, "sim-e2e")) == 3
    temp = tmp_path / "temp"
    temp.write_text("47125\n")
    temp.chmod(0o644)
    docker("run", "--rm", "--label", run_label, "--network", net, "-v", f"{temp}:/run/temp:ro",
           "-e", "DEVICE_API_URL=http://api:1337", "-e", "DEVICE_SENSOR_ID=dev-e2e", "-e", "DEVICE_TEMP_PATH=/run/temp",
           built["tags"]["device"], "run", "--once", timeout=120)
    assert [r["value"] for r in _influx_rows(influx_port, db, "dev-e2e")] == [47.125]

    t0 = time.monotonic()
    docker("stop", api)
    stop_s = time.monotonic() - t0
    exit_code = int(docker("inspect", "--format", "{{.State.ExitCode}}", api).strip())
    log(f"docker stop of the api: {stop_s:.2f} s, exit code {exit_code}")
    assert exit_code == 0
    assert stop_s < 5, f"docker stop took {stop_s:.1f} s (SIGTERM not handled?)"


def _distinctive_host_lines(bundle_in_image: bytes) -> list[bytes]:
    """Lines of the host's bundle that the image's own bundle lacks (a proxy CA, where there is one)."""
    host = Path(images.HOST_CA_BUNDLE)
    if not host.is_file():
        return []
    own = set(bundle_in_image.splitlines())
    lines = [ln for ln in host.read_bytes().splitlines() if len(ln) == 64 and ln not in own]
    return lines[:5]


def _members_containing(docker, tag: str, needles: list[bytes], workdir: Path) -> tuple[list[str], int]:
    """Members of `docker save TAG` (layer tars, config) holding any needle; and the number of layers."""
    archive = workdir / f"{uuid.uuid4().hex}.tar"
    docker("save", "-o", str(archive), tag)
    found, layers = [], 0
    try:
        with tarfile.open(archive) as outer:
            for member in outer.getmembers():
                if not member.isfile():
                    continue
                data = outer.extractfile(member).read()  # layer tars are uncompressed: file bytes appear as-is
                layers += member.name.endswith("layer.tar")
                if any(needle in data for needle in needles):
                    found.append(member.name)
    finally:
        archive.unlink(missing_ok=True)
    return found, layers


@pytest.mark.parametrize("service", SERVICES)
def test_ca_bundle_secret_is_in_no_layer(built, ca_secret, docker, service, tmp_path):
    tag = built["tags"][service]
    in_image = subprocess.run(["docker", "run", "--rm", "--entrypoint", "cat", tag, "/etc/ssl/certs/ca-certificates.crt"],
                              capture_output=True, check=True).stdout
    secret = ca_secret.read_bytes()
    assert hashlib.sha256(in_image).digest() != hashlib.sha256(secret).digest()
    needles = [MARKER.encode(), *_distinctive_host_lines(in_image)]
    log(f"{service}: looking for {len(needles)} distinctive lines of the secret in every layer")
    found, layers = _members_containing(docker, tag, needles, tmp_path)
    assert layers >= 3
    assert not found, f"{service}: the CA secret is in {found}"


def test_leak_check_finds_a_secret_copied_into_a_layer(offline_bases, ca_secret, docker, tmp_path):
    """Control: the same check does see the secret when a Dockerfile copies it into a layer."""
    context = tmp_path / "leaky"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {offline_bases['debian']}\n"
        "RUN --mount=type=secret,id=cabundle,target=/run/ca.crt cp /run/ca.crt /leaked.crt\n")
    tag = f"iot-e2e/leaky:{uuid.uuid4().hex[:8]}"
    try:
        images.build_image(context, tag, secrets={"cabundle": str(ca_secret)}, progress=log, quiet=True)
        found, _ = _members_containing(docker, tag, [MARKER.encode()], tmp_path)
        assert found, "the leak check did not find a secret that is in a layer"
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)


def test_code_only_change_rebuilds_from_cache(built, offline_bases, tmp_path, ca_secret):
    context = tmp_path / "api"
    shutil.copytree(ROOT / "api", context, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    tag = f"iot-e2e/api-code-change:{uuid.uuid4().hex[:8]}"
    try:
        with (context / "iot_api" / "__init__.py").open("a") as fh:
            fh.write(f"# code-only change {uuid.uuid4().hex}\n")
        result = images.build_image(context, tag, offline_bases["python"], VERSION, built["revision"],
                                    {"cabundle": str(ca_secret)}, progress=log, quiet=True)
        cold = built["results"]["api"].seconds
        log(f"api: cold build {cold:.1f} s, rebuild after a code-only change {result.seconds:.1f} s")
        cached = result.cached_steps()
        assert any("pip install" in step for step in cached), f"dependency layer was rebuilt; cached: {cached}"
        assert not any("COPY iot_api" in step for step in cached), "the code change was not picked up"
        assert result.seconds < max(15.0, cold / 2), (cold, result.seconds)
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)
