"""`tag` / `push` against a real registry: the registry container of `./iot registry.start`
(ops/cluster/registry.py, images/registry) on a free loopback port, with its data in a volume of this run,
and checked through its own HTTP API; then `registry.start` / `registry.stop` themselves.

The images pushed are small ones made here (`docker import` of a one-file tree, with the OCI labels our
builds set) under a version of this run's own (`--set version=0.0.0-e2e.<id>`): the test does not
depend on, or disturb, the service images other tests build at the same time. Everything it tags is
removed at the end, and so are the registry containers and volumes it made (names iot-test-registry-<run>…,
and the run's label).
"""
from __future__ import annotations

import io
import json
import socket
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import pytest
import requests

from ops import images, registry
from ops.cluster import registry as local

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("docker_engine")

RUN = uuid.uuid4().hex[:8]
VERSION = f"0.0.0-e2e.{RUN}"
REPOS = {"api": "iot/api", "simulator": "iot/simulator", "device": "iot/device", "broker": "iot/mosquitto",
         "web": "iot/web"}
OTHER_COMMIT = "0123456789abcdef0123456789abcdef01234567"  # the device image claims another build
MANIFEST_TYPES = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"


def iot(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "iot"), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def docker(*args: str, check: bool = True, input_bytes: bytes | None = None) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, input=input_bytes, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gone(container: str) -> bool:
    return docker("ps", "-aq", "--filter", f"name=^{container}$").split() == []


def volume_exists(volume: str) -> bool:
    return volume in docker("volume", "ls", "-q", "--filter", f"name=^{volume}$").split()


def remove(container: str) -> None:
    """The container and its data volume, whatever state a failed test left them in."""
    docker("rm", "--force", container, check=False)
    docker("volume", "rm", "--force", local.data_volume(container), check=False)


def one_file_image(ref: str, name: str, revision: str) -> str:
    """A tiny image REF (one file) with our OCI labels; returns its id."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = f"{name} {RUN}\n".encode()
        info = tarfile.TarInfo(f"iot-e2e/{name}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    labels = {registry.REVISION_LABEL: revision, "org.opencontainers.image.version": VERSION,
              "org.opencontainers.image.title": f"iot-{name}"}
    changes = [arg for k, v in labels.items() for arg in ("--change", f"LABEL {k}={json.dumps(v)}")]
    docker("import", *changes, "-", ref, input_bytes=buf.getvalue())
    return docker("image", "inspect", "--format", "{{.Id}}", ref).strip()


def local_refs(prefix: str) -> list[str]:
    refs = docker("images", "--format", "{{.Repository}}:{{.Tag}}").split()
    return [r for r in refs if r.startswith(prefix) or (r.endswith(f":{VERSION}") and r.rsplit(":", 1)[0] in REPOS.values())]


@pytest.fixture(scope="module")
def local_registry(docker_engine, run_label):
    """The registry container on a free loopback port, its data in a volume of this run; removed at the end."""
    name, port = f"iot-test-registry-{RUN}", free_port()
    started = time.monotonic()
    try:
        reg = local.start_local(port, name=name, labels=[run_label], progress=print)
        print(f"registry up in {time.monotonic() - started:.1f} s on {reg.url}, container {name}")
        yield reg
        for ref in local_refs(reg.prefix):
            docker("rmi", ref, check=False)
        assert local.stop_local(name, progress=print) is True
        assert gone(name) and volume_exists(local.data_volume(name))  # stop keeps the data
    finally:
        remove(name)


@pytest.fixture(scope="module")
def sources(docker_engine):
    """Every image of ours (iot/{api,simulator,device,mosquitto,web}:VERSION), labelled like our builds;
    device with another commit."""
    head = images.git_revision()
    revisions = {name: head for name in REPOS} | {"device": OTHER_COMMIT}
    ids = {name: one_file_image(f"{repo}:{VERSION}", name, revisions[name]) for name, repo in REPOS.items()}
    yield {"ids": ids, "revisions": revisions}
    for repo in REPOS.values():
        docker("rmi", f"{repo}:{VERSION}", check=False)


def expected_tags(revision: str) -> set[str]:
    sha = revision.split("-")[0][:7]
    tags = {VERSION, f"git-{sha}" + ("-dirty" if revision.endswith("-dirty") else "")}
    branch = registry.branch_tag(registry.git_branch())
    return tags | ({branch} if branch else set())


@pytest.fixture(scope="module")
def pushed(local_registry, sources):
    """`./iot push --env test --set registry=127.0.0.1:PORT/ --set version=VERSION`, once."""
    started = time.monotonic()
    proc = iot("push", "--env", "test", "--set", f"registry={local_registry.prefix}", "--set", f"version={VERSION}")
    took = time.monotonic() - started
    assert proc.returncode == 0, f"./iot push exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    print(f"./iot push: {took:.1f} s")
    return proc


def test_dry_push_prints_the_commands_and_pushes_nothing(local_registry, sources):
    dry_version = VERSION + "-dry"
    proc = iot("--dry", "push", "--env", "test", "--registry", local_registry.prefix, "--set", f"version={dry_version}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout + proc.stderr
    for repo in REPOS.values():
        assert f"docker push {local_registry.prefix}{repo}:{dry_version}" in out
    assert not [r for r in local_refs(local_registry.prefix) if dry_version in r]
    for repo in REPOS.values():
        if repo in registry.catalog(local_registry.prefix):
            assert dry_version not in registry.list_tags(local_registry.prefix, repo)


def test_push_publishes_version_sha_and_branch_of_every_image(local_registry, sources, pushed):
    prefix = local_registry.prefix
    assert set(REPOS.values()) <= set(registry.catalog(prefix))
    for name, repo in REPOS.items():
        tags = set(registry.list_tags(prefix, repo))
        assert tags == expected_tags(sources["revisions"][name]), (name, tags)
        assert "latest" not in tags
    assert "git-0123456" in registry.list_tags(prefix, "iot/device")  # its label, not the checkout
    out = pushed.stdout + pushed.stderr
    assert f"iot/device:{VERSION} was built from 0123456789ab" in out
    for name, repo in REPOS.items():
        for tag in expected_tags(sources["revisions"][name]):
            assert f"$ docker push {prefix}{repo}:{tag}" in out


def test_every_tag_names_the_same_manifest(local_registry, sources, pushed):
    for repo in REPOS.values():
        digests = set()
        for tag in registry.list_tags(local_registry.prefix, repo):
            resp = requests.head(f"{local_registry.url}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES},
                                 timeout=10)
            assert resp.status_code == 200, (repo, tag, resp.status_code)
            digests.add(resp.headers["Docker-Content-Digest"])
        assert len(digests) == 1, (repo, digests)
        assert next(iter(digests)) in pushed.stdout + pushed.stderr  # the digest `docker push` reported


def test_pull_back_gives_the_image_that_was_pushed(local_registry, sources, pushed):
    prefix, repo = local_registry.prefix, REPOS["api"]
    pushed_id = sources["ids"]["api"]
    # Remove every local name of the image, so that the pull has to fetch it from the registry.
    for ref in [f"{repo}:{VERSION}"] + [f"{prefix}{repo}:{t}" for t in registry.list_tags(prefix, repo)]:
        docker("rmi", ref, check=False)
    assert not images.image_exists(pushed_id), "the image is still here: the pull would prove nothing"
    sha_tag = next(t for t in registry.list_tags(prefix, repo) if t.startswith("git-"))
    docker("pull", f"{prefix}{repo}:{sha_tag}")
    info = json.loads(docker("image", "inspect", f"{prefix}{repo}:{sha_tag}"))[0]
    assert info["Id"] == pushed_id
    assert info["Config"]["Labels"][registry.REVISION_LABEL] == sources["revisions"]["api"]


def test_unreachable_registry_is_one_clear_line_and_a_non_zero_exit(sources):
    port = free_port()  # nothing listens there
    started = time.monotonic()
    proc = iot("push", "--env", "test", "--registry", f"127.0.0.1:{port}", "--set", f"version={VERSION}")
    assert proc.returncode == 1
    assert time.monotonic() - started < 20
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out
    assert f"error: registry 127.0.0.1:{port} is unreachable" in proc.stderr
    assert f"./iot registry.start --port {port}" in proc.stderr


def test_env_without_a_registry_is_refused(sources):
    proc = iot("push", "--env", "test", "--set", f"version={VERSION}")  # test.yaml: registry ""
    assert proc.returncode == 1
    assert "error: no registry to push to" in proc.stderr and "Traceback" not in proc.stderr


def test_registry_tasks_start_reuse_refuse_a_taken_port_and_stop(docker_engine):
    """`./iot registry.start` / `registry.stop` themselves, on registries of this test's own."""
    port, name, other = free_port(), f"iot-test-registry-{RUN}-task", f"iot-test-registry-{RUN}-other"
    volume = local.data_volume(name)
    try:
        proc = iot("registry.start", "--port", str(port), "--name", name)
        assert proc.returncode == 0, proc.stderr
        assert f"push with --registry 127.0.0.1:{port}/" in proc.stderr
        assert docker("port", name, "5000/tcp").split() == [f"127.0.0.1:{port}"]  # loopback only
        assert registry.catalog(f"127.0.0.1:{port}/") == []
        kept = f"127.0.0.1:{port}/iot-test/keep:{RUN}"
        one_file_image(kept, "keep", OTHER_COMMIT)
        docker("push", kept)
        docker("rmi", kept)
        container_id = docker("ps", "-q", "--no-trunc", "--filter", f"name=^{name}$").strip()
        again = iot("registry.start", "--port", str(port), "--name", name)
        assert again.returncode == 0 and "a local registry already runs" in again.stderr, again.stderr
        assert docker("ps", "-q", "--no-trunc", "--filter", f"name=^{name}$").strip() == container_id
        taken = iot("registry.start", "--port", str(port), "--name", other)
        assert taken.returncode == 1 and f"port {port} on 127.0.0.1 is already in use" in taken.stderr
        assert gone(other) and not volume_exists(local.data_volume(other))
        moved = iot("registry.start", "--port", str(free_port()), "--name", name)
        assert moved.returncode == 1 and f"already runs on 127.0.0.1:{port}: stop it first" in moved.stderr
        dry_stop = iot("--dry", "registry.stop", "--name", name)
        assert dry_stop.returncode == 0 and f"would run: docker rm {name}" in dry_stop.stderr and not gone(name)
        stop = iot("registry.stop", "--name", name)
        assert stop.returncode == 0, stop.stderr
        assert f"its data is kept in volume {volume} (delete it: docker volume rm {volume})" in stop.stderr
        assert gone(name) and volume_exists(volume)
        assert "no local registry to stop" in iot("registry.stop", "--name", name).stderr
        # the data outlives the container: started again (on another port), it still has what was pushed
        port = free_port()
        assert iot("registry.start", "--port", str(port), "--name", name).returncode == 0
        assert registry.catalog(f"127.0.0.1:{port}/") == ["iot-test/keep"]
        assert iot("registry.stop", "--name", name).returncode == 0
        # a container of that name that registry.start did not make is left alone
        docker("create", "--name", other, local.REGISTRY_IMAGE)
        refused = iot("registry.stop", "--name", other)
        assert refused.returncode == 1 and "was not started by ./iot registry.start" in refused.stderr
        assert not gone(other)
    finally:
        remove(name)
        remove(other)
