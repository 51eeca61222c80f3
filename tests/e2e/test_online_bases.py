"""The ONLINE base mode (`bases.mode: online`, the official images a learner's laptop pulls from Docker
Hub) on a machine that cannot reach Docker Hub, with STAND-INS for those official images.

What runs for real: the online-rendered compose.yaml of env dev (Grafana included, with its provisioning
bind mounts and secrets), `docker compose build` of our images on the online base names (BuildKit of
engine 20.10, as `./iot build` runs it), the device image built with its Dockerfile's default
BASE_IMAGE (no build argument: `./iot build`'s other build path), `docker compose up --wait` with
`pull_policy: missing`, and a reading posted to the api and stored in InfluxDB.

What is a STAND-IN (created here, removed at the end, also on failure):
- `influxdb:1.12`, `python:3.11-slim-bookworm`, `debian:bookworm-slim` (the names come from
  stacks/values): local tags on the offline bases (`iot-base/*`, Debian's packages: InfluxDB 1.6.7, not
  1.12). A tag that already exists and is not one of ours (a real image, on a machine that pulled it) is
  used as it is and never removed.
- `grafana/grafana:12.2.1`: NOT Grafana. A small Python server labelled `iot.test.standin=grafana` that
  answers Grafana's healthcheck (`wget … /api/health`, with a `wget` stand-in), and at start reads
  what the real Grafana would read: every provisioning file (its `${VAR}` and `$__file{…}` expanded),
  the admin password file, a writable /var/lib/grafana. Asked `/standin/datasource?q=…`, it runs the
  query against InfluxDB with the provisioned datasource's URL, database, user and password.

What remains UNTESTED here: a real pull from Docker Hub (nothing can be pulled: that the official images
exist under these names is not checked), the official images' own behaviour (InfluxDB 1.12's, the
official python image's), and real Grafana 12 (its provisioning is checked statically by
tests/unit/test_grafana_provisioning.py and its dashboards' queries run against a real InfluxDB in
tests/integration/test_grafana_queries.py).

Its own Compose project (iot-online-dev), ports (28337, 23000, 28088), image version (0.0.0-online) and
folders (a temporary build/ and secrets/): it never touches env dev's or test's stacks, files or images.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest
from harness import call

from ops import images, render, secrets, stack

ROOT = Path(__file__).resolve().parents[2]

ENV = "dev"
OVERRIDES = {"bases.mode": "online", "project": "iot-online", "version": "0.0.0-online",
             "api.published_port": 28337, "grafana.published_port": 23000, "web.published_port": 28088}
STANDIN_LABEL = "iot.test.standin"
pytestmark = pytest.mark.usefixtures("docker_engine")

# -- the Grafana stand-in ----------------------------------------------------------------------------------
# The stand-ins run on the python base image, which has no requests: they keep the stdlib's urllib.
STANDIN_SERVER = r'''"""STAND-IN for grafana/grafana, made by tests/e2e/test_online_bases.py: NOT Grafana.

At start it reads what Grafana would read (fails, and the container exits, if anything is missing): every
provisioning file with ${VAR} and $__file{PATH} expanded as Grafana does, the admin password file, a
writable /var/lib/grafana. Then it answers GET /api/health (Grafana's healthcheck) and
GET /standin/datasource?q=QUERY (the query, on InfluxDB, as the provisioned datasource)."""
import base64
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def fail(message):
    print(f"stand-in: {message}", flush=True)
    sys.exit(1)


def expand(text, where):
    def from_file(m):
        try:
            value = Path(m.group(1)).read_text().strip()
        except OSError as exc:
            fail(f"{where}: $__file{{{m.group(1)}}}: {exc}")
        return value or fail(f"{where}: $__file{{{m.group(1)}}} is empty")

    def from_env(m):
        return os.environ.get(m.group(1)) or fail(f"{where}: ${{{m.group(1)}}} is not set")

    text = re.sub(r"(^|\s)#.*$", "", text, flags=re.M)  # Grafana expands values, not YAML comments
    return re.sub(r"\$\{(\w+)\}", from_env, re.sub(r"\$__file\{([^}]+)\}", from_file, text))


provisioning = Path(os.environ["GF_PATHS_PROVISIONING"])
files = sorted(p for p in provisioning.rglob("*") if p.is_file())
datasources = [expand(p.read_text(), p) for p in files if p.parent.name == "datasources" and p.suffix == ".yaml"]
dashboards = [p for p in files if p.parent.name == "dashboards" and p.suffix == ".json"]
if len(datasources) != 1 or not dashboards:
    fail(f"expected one datasources file and dashboards in {provisioning}, found {[str(p) for p in files]}")
for p in dashboards:
    json.loads(p.read_text())
if not Path(os.environ["GF_SECURITY_ADMIN_PASSWORD__FILE"]).read_text().strip():
    fail("the admin password file is empty")
Path("/var/lib/grafana/stand-in.txt").write_text("the real Grafana keeps its sqlite database here\n")
ds = {k: re.search(rf"^\s+{k}:\s*(\S+)", datasources[0], re.M).group(1) for k in ("url", "database", "user", "password")}
print(f"stand-in (not Grafana): {len(files)} provisioning files read, datasource {ds['url']} db {ds['database']} "
      f"user {ds['user']}", flush=True)


class Handler(BaseHTTPRequestHandler):
    def reply(self, status, body):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/api/health":
            return self.reply(200, {"database": "ok", "version": "stand-in", "note": "not Grafana"})
        if url.path == "/standin/datasource":
            q = urllib.parse.parse_qs(url.query).get("q", [""])[0]
            req = urllib.request.Request(ds["url"].rstrip("/") + "/query?" + urllib.parse.urlencode(
                {"db": ds["database"], "q": q}))
            token = base64.b64encode(f"{ds['user']}:{ds['password']}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    return self.reply(resp.status, resp.read())
            except urllib.error.HTTPError as exc:
                return self.reply(exc.code, exc.read())
            except OSError as exc:
                return self.reply(502, {"error": f"stand-in: InfluxDB: {exc}"})
        return self.reply(404, {"error": "stand-in: not found"})

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("", int(os.environ["GF_SERVER_HTTP_PORT"])), Handler).serve_forever()
'''

STANDIN_WGET = r'''#!/usr/bin/python3
# STAND-IN for the wget of Grafana's healthcheck (`wget -q -O /dev/null URL`): GET the last argument.
import sys
import urllib.request

try:
    urllib.request.urlopen(sys.argv[-1], timeout=3)
except Exception as exc:  # noqa: BLE001 - any failure is an unhealthy answer
    print(f"wget (stand-in): {exc}", file=sys.stderr)
    sys.exit(1)
'''

STANDIN_DOCKERFILE = """\
# STAND-IN for {tag}, made by tests/e2e/test_online_bases.py: NOT Grafana (see standin.py).
FROM {base}
COPY standin.py wget /usr/local/bin/
RUN chmod 0755 /usr/local/bin/standin.py /usr/local/bin/wget \\
    && mkdir -p /var/lib/grafana && chown 472:0 /var/lib/grafana
LABEL {label}="grafana" \\
      org.opencontainers.image.title="STAND-IN for {tag}: not Grafana" \\
      org.opencontainers.image.description="answers the healthcheck, reads the provisioning; tests/e2e/test_online_bases.py"
USER 472
EXPOSE 3000
CMD ["python3", "/usr/local/bin/standin.py"]
"""


def docker(*args: str, check: bool = True, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, **env} if env else None)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {shlex.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


def image_id(ref: str) -> str | None:
    proc = docker("image", "inspect", "--format", "{{.Id}}", ref, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def layers(ref: str) -> list[str]:
    return json.loads(docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", ref).stdout)


@pytest.fixture(scope="module")
def standins(offline_bases, tmp_path_factory):
    """{base name: online ref} with a stand-in (or the real image) behind each; our tags removed at the end."""
    bases = render.load_values(ENV, OVERRIDES)["bases"]
    online, offline = bases["online"], bases["offline"]
    created: list[str] = []
    real: list[str] = []
    try:
        for key in ("debian", "python", "influxdb"):
            ref, local = online[key], offline[key]
            have = image_id(ref)
            if have is not None and have != image_id(local):
                real.append(ref)  # a real image (pulled on a machine with Docker Hub): use it, never remove it
                continue
            docker("tag", local, ref)
            created.append(ref)
        ref = online["grafana"]
        labels = docker("image", "inspect", "--format", "{{json .Config.Labels}}", ref, check=False)
        if labels.returncode == 0 and STANDIN_LABEL not in (json.loads(labels.stdout) or {}):
            real.append(ref)
        else:
            ctx = tmp_path_factory.mktemp("grafana-standin")
            (ctx / "standin.py").write_text(STANDIN_SERVER)
            (ctx / "wget").write_text(STANDIN_WGET)
            (ctx / "Dockerfile").write_text(STANDIN_DOCKERFILE.format(tag=ref, base=offline["python"],
                                                                     label=STANDIN_LABEL))
            created.append(ref)
            docker("build", "--quiet", "--tag", ref, str(ctx), env={"DOCKER_BUILDKIT": "0"})
        print(f"stand-ins: {', '.join(created) or 'none'}; real images used as they are: {', '.join(real) or 'none'}")
        yield {"online": online, "offline": offline, "created": created, "real": real}
    finally:
        for ref in created:  # an alias tag is only untagged; the Grafana stand-in is deleted
            docker("rmi", ref, check=False)


def compose(prepared: stack.Stack, *args: str, profiles: tuple[str, ...] = ("simulator",), check: bool = True,
            timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = prepared.compose(*args, profiles=profiles)
    proc = subprocess.run(shlex.split(cmd), cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, **prepared.run_env()})
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def online_stack(standins, tmp_path_factory):
    """Render env dev online into a temporary folder, build as `./iot build` does, `up --wait`; then remove
    the stack, its volumes and the images built (also when something failed)."""
    tmp = tmp_path_factory.mktemp("online")
    result = render.render(ENV, out_dir=tmp / "build", secrets_dir=tmp / "secrets", overrides=OVERRIDES)
    prepared = stack.Stack(result)
    built = [result.images[name] for name in ("api", "simulator", "broker", "web", "device")]
    timings: dict[str, float] = {}
    try:
        compose(prepared, "down", "--volumes", "--remove-orphans", check=False)
        started = time.monotonic()
        build = compose(prepared, "build")  # `./iot build`'s first command, on the online base names
        timings["compose build"] = time.monotonic() - started
        started = time.monotonic()
        device = images.build_image(ROOT / "device", result.images["device"], base_image=None, quiet=True,
                                    version="0.0.0-online", progress=lambda m: None)  # the Dockerfile's default
        timings["device build (default BASE_IMAGE)"] = time.monotonic() - started
        started = time.monotonic()
        up = compose(prepared, "up", "--detach", "--wait", "--remove-orphans", profiles=(), timeout=300)  # as `./iot up`
        timings["up --wait"] = time.monotonic() - started
        print("online stack: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
        yield {"stack": prepared, "build": build, "device": device, "up": up, "timings": timings, **standins}
    finally:
        print(compose(prepared, "ps", "--all", check=False).stdout)
        compose(prepared, "down", "--volumes", "--remove-orphans", check=False)
        for ref in built:
            docker("rmi", ref, check=False)


def test_the_rendered_stack_names_the_official_images(online_stack):
    text = online_stack["stack"].file("compose.yaml").read_text()
    online = online_stack["online"]
    assert f'image: "{online["influxdb"]}"\n    pull_policy: missing' in text
    assert f'image: "{online["grafana"]}"\n    pull_policy: missing' in text
    assert f'BASE_IMAGE: "{online["python"]}"' in text and f'DEBIAN_IMAGE: "{online["debian"]}"' in text
    assert "iot-base/" not in text


def test_builds_used_the_local_base_without_pulling(online_stack):
    """Nothing can be pulled here: a build that tried would have failed. The images sit on the stand-ins'
    layers (a pulled python:3.11-slim-bookworm would have others), and the device image, built without
    BASE_IMAGE, on its Dockerfile's default."""
    base = layers(online_stack["online"]["python"])
    result = online_stack["stack"].result
    for name in ("api", "simulator", "device"):
        assert layers(result.images[name])[:len(base)] == base, name
    debian = layers(online_stack["online"]["debian"])
    for name in ("broker", "web"):
        assert layers(result.images[name])[:len(debian)] == debian, name
    assert online_stack["timings"]["compose build"] < 240


def test_every_service_is_up_and_healthy(online_stack):
    prepared = online_stack["stack"]
    rows = [json.loads(line) for line in compose(prepared, "ps", "--format", "json").stdout.splitlines() if line.strip()]
    if len(rows) == 1 and isinstance(rows[0], list):  # older Compose prints one JSON array
        rows = rows[0]
    health = {r["Service"]: (r["State"], r.get("Health", "")) for r in rows}
    assert set(health) == {"influxdb", "api", "grafana", "mqtt", "historian", "processor", "web"}, health
    assert all(state == ("running", "healthy") for state in health.values()), health
    used = {r["Service"]: r["Image"] for r in rows}
    assert used["influxdb"] == online_stack["online"]["influxdb"]
    assert used["grafana"] == online_stack["online"]["grafana"]


def _get(url: str, token: str | None = None, params: dict | None = None) -> tuple[int, dict]:
    resp = call("GET", url, token, params=params)
    resp.raise_for_status()
    return resp.status_code, resp.json()


def test_a_reading_is_stored_and_grafana_s_datasource_reads_it(online_stack):
    result = online_stack["stack"].result
    api = result.urls["api"]
    write = result.secrets[secrets.SIMULATOR_TOKEN].read_text().strip()
    read = result.secrets[secrets.API_READ_TOKEN].read_text().strip()
    resp = call("POST", api + "/data", write, json={"ts": "2017-06-25T09:53:16Z", "type": "temp", "value": 34,
                                                    "sensor_id": "online"})
    assert resp.status_code == 201, (resp.status_code, resp.text[:300])
    status, got = _get(api + "/data?sensor_id=online", read)
    assert status == 200 and got["count"] == 1 and got["readings"][0]["value"] == 34.0

    grafana = result.urls["grafana"]
    assert _get(grafana + "/api/health")[1]["database"] == "ok"
    if online_stack["online"]["grafana"] in online_stack["real"]:
        pytest.skip("the real Grafana runs here: its datasource is not the stand-in's to query")
    values = render.load_values(ENV, OVERRIDES)["influxdb"]
    q = f"SELECT count(value) FROM {values['rp']}.{values['measurement']} WHERE sensor_id = 'online'"
    status, got = _get(grafana + "/standin/datasource", params={"q": q})
    assert status == 200, got
    assert got["results"][0]["series"][0]["values"][0][1] == 1, got  # as the reader, with the provisioned password


def test_the_registry_image_builds_on_the_online_debian_and_serves(standins):
    """`./iot registry.start` on a learner's laptop (Docker Hub reachable): the registry image is built on the
    official debian image (here its stand-in), with no debootstrap, and the container answers /v2/. Its own
    image tag, container, port and volume: lab 04's and the cluster's registry are untouched."""
    from ops.cluster import registry as reg

    image, name = "iot-test/registry:online", "iot-test-online-registry"
    said: list[str] = []
    try:
        reg.ensure_registry_image(image, progress=said.append, debian_image=standins["online"]["debian"])
        assert not [m for m in said if "debootstrap" in m], said
        assert any(f"DEBIAN_IMAGE={standins['online']['debian']}" in m for m in said), said
        assert standins["online"]["debian"] != standins["offline"]["debian"]
        started = reg.start_local(28500, name=name, image=image, progress=said.append)
        answer = call("GET", f"{started.url}/v2/_catalog")
        assert answer.status_code == 200 and answer.json() == {"repositories": []}, answer.text
    finally:
        reg.stop_local(name, progress=print)
        docker("volume", "rm", f"{name}-data", check=False)
        docker("rmi", image, check=False)
