"""Pure logic of ops/registry.py (which tags are published, the plan, commands, errors) and the plan of the local
registry container (ops/cluster/registry.py: registry.start, registry.stop).

Nothing here needs a Docker engine or a registry: image inspection, git and the engine's answers are fakes
(or DOCKER_HOST points nowhere), ports are closed.
"""
from __future__ import annotations

import re
import shlex
import socket
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from ops import registry, render

ROOT = Path(__file__).resolve().parents[2]

SHA = "8d66537b0db4a1c2e3f405162738495a6b7c8d9e"
DOCKER_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # Docker's reference grammar for a tag
IMAGES = {"api": "iot/api:0.1.0", "simulator": "iot/simulator:0.1.0", "device": "iot/device:0.1.0"}


def result(images=None, prefix=""):
    return SimpleNamespace(images={k: prefix + v for k, v in (images or IMAGES).items()})


# -- the tags ------------------------------------------------------------------------------------------
def test_clean_tree_version_sha_and_branch_for_every_image():
    tags = registry.image_tags(result(), SHA, "main")
    assert tags == {name: ["0.1.0", "git-8d66537", "main"] for name in IMAGES}


def test_dirty_tree_is_never_published_under_the_clean_sha():
    tags = registry.image_tags(result(), SHA + "-dirty", "main")
    for name in IMAGES:
        assert tags[name] == ["0.1.0", "git-8d66537-dirty", "main"]
        assert "git-8d66537" not in tags[name]


def test_revision_per_image():
    other = "0123456789abcdef0123456789abcdef01234567"
    tags = registry.image_tags(result(), {"api": SHA, "simulator": SHA + "-dirty", "device": other}, None)
    assert tags == {"api": ["0.1.0", "git-8d66537"], "simulator": ["0.1.0", "git-8d66537-dirty"],
                    "device": ["0.1.0", "git-0123456"]}


@pytest.mark.parametrize("revision", ["unknown", "", None, "not-a-sha", "abc12"])
def test_no_sha_tag_when_the_revision_is_unknown(revision):
    assert registry.image_tags(result(), revision, "main")["api"] == ["0.1.0", "main"]


def test_no_branch_tag_on_a_detached_head():
    assert registry.image_tags(result(), SHA, None)["api"] == ["0.1.0", "git-8d66537"]
    assert registry.image_tags(result(), SHA, "HEAD")["api"] == ["0.1.0", "git-8d66537"]


def test_registry_prefix_does_not_change_the_tags():
    tags = registry.image_tags(result(prefix="127.0.0.1:5000/team/"), SHA, "main")
    assert tags["api"] == ["0.1.0", "git-8d66537", "main"]


@pytest.mark.parametrize(("branch", "tag"), [
    ("main", "main"),
    ("feature/x", "feature-x"),
    ("feature//x y", "feature-x-y"),
    ("-weird", "weird"),
    ("..-.x", "x"),
    ("refs/heads/dev", "dev"),
    ("fix_ünïcode", "fix_-n-code"),
    ("Release_2024.Q1", "Release_2024.Q1"),
    # never mistaken for another kind of tag
    ("latest", "branch-latest"),
    ("LATEST", "branch-LATEST"),
    ("0.1.0", "branch-0.1.0"),
    ("v2-rewrite", "branch-v2-rewrite"),
    ("git-8d66537", "branch-git-8d66537"),
    ("git-8d66537-dirty", "branch-git-8d66537-dirty"),
    ("github-actions", "github-actions"),
])
def test_branch_tags(branch, tag):
    assert registry.branch_tag(branch) == tag


@pytest.mark.parametrize("branch", ["", "   ", "///", "-", "...", "HEAD"])
def test_branches_that_give_no_tag(branch):
    assert registry.branch_tag(branch) is None


def test_long_branch_is_cut_to_128_with_a_hash_that_keeps_two_long_branches_apart():
    a, b = "feature/" + "a" * 200, "feature/" + "a" * 199 + "b"
    ta, tb = registry.branch_tag(a), registry.branch_tag(b)
    assert len(ta) == len(tb) == 128
    assert DOCKER_TAG.fullmatch(ta) and DOCKER_TAG.fullmatch(tb)
    assert ta != tb
    assert ta.startswith("feature-aaaa")
    assert registry.branch_tag("x" * 128) == "x" * 128  # exactly the limit: unchanged


@given(st.text(max_size=300))
def test_any_branch_gives_a_valid_tag_or_none_and_never_latest(branch):
    tag = registry.branch_tag(branch)
    assert tag is None or (DOCKER_TAG.fullmatch(tag) and tag.lower() != "latest")


@given(st.text(max_size=300), st.sampled_from([SHA, SHA + "-dirty", "unknown"]))
def test_never_latest_and_every_tag_valid(branch, revision):
    for tags in registry.image_tags(result(), revision, branch).values():
        assert "latest" not in [t.lower() for t in tags]
        assert all(DOCKER_TAG.fullmatch(t) for t in tags)
        assert len(tags) == len(set(tags))


def test_a_latest_version_is_refused():
    with pytest.raises(registry.RegistryError, match="never latest"):
        registry.image_tags(result({"api": "iot/api:latest"}), SHA, "main")


def test_split_reference():
    assert registry.split_reference("127.0.0.1:5000/iot/api:0.1.0") == ("127.0.0.1:5000/iot/api", "0.1.0")
    with pytest.raises(registry.RegistryError, match="no tag"):
        registry.split_reference("127.0.0.1:5000/iot/api")


# -- git branch: checkout, else the CI's variables ------------------------------------------------------
def test_git_branch_falls_back_to_github_variables(tmp_path):
    not_a_repo = tmp_path
    assert registry.git_branch(not_a_repo, environ={}) is None
    assert registry.git_branch(not_a_repo, environ={"GITHUB_HEAD_REF": "feature/pr"}) == "feature/pr"
    assert registry.git_branch(not_a_repo, environ={"GITHUB_REF_TYPE": "branch", "GITHUB_REF_NAME": "main"}) == "main"
    assert registry.git_branch(not_a_repo, environ={"GITHUB_REF_TYPE": "tag", "GITHUB_REF_NAME": "v1.0"}) is None


# -- the plan: source image, revision from its label ------------------------------------------------------
def fake_inspect(present: dict[str, dict]):
    return lambda ref: present.get(ref)


def labelled(rev, image_id="sha256:" + "ab" * 32):
    return {"id": image_id, "labels": {registry.REVISION_LABEL: rev}}


def test_plan_prefers_the_image_built_for_the_registry_then_the_plain_one():
    prefix = "127.0.0.1:5000/"
    present = {"127.0.0.1:5000/iot/api:0.1.0": labelled(SHA), "iot/simulator:0.1.0": labelled(SHA),
               "iot/device:0.1.0": labelled(SHA), "iot/api:0.1.0": labelled("f" * 40)}
    plans = registry.plan(result(prefix=prefix), prefix, branch="main", inspect=fake_inspect(present),
                          head=lambda: SHA, progress=lambda m: None)
    by = {p.name: p for p in plans}
    assert by["api"].source == "127.0.0.1:5000/iot/api:0.1.0"
    assert by["simulator"].source == "iot/simulator:0.1.0"
    assert by["api"].targets == ["127.0.0.1:5000/iot/api:0.1.0", "127.0.0.1:5000/iot/api:git-8d66537",
                                 "127.0.0.1:5000/iot/api:main"]


def test_plan_sha_tag_comes_from_the_image_label_and_says_when_it_differs_from_the_checkout():
    old = "0123456789abcdef0123456789abcdef01234567"
    present = {"iot/api:0.1.0": labelled(old), "iot/simulator:0.1.0": labelled(SHA + "-dirty"),
               "iot/device:0.1.0": {"id": "sha256:" + "cd" * 32, "labels": {}}}
    said = []
    plans = registry.plan(result(prefix="r.example:5000/"), "r.example:5000/", branch="main",
                          inspect=fake_inspect(present), head=lambda: SHA, progress=said.append)
    by = {p.name: p for p in plans}
    assert by["api"].tags == ("0.1.0", "git-0123456", "main")
    assert by["simulator"].tags == ("0.1.0", "git-8d66537-dirty", "main")
    assert by["device"].tags == ("0.1.0", "git-8d66537", "main")  # no label: the checkout's revision
    assert any("iot/api:0.1.0 was built from 0123456789ab" in m for m in said)
    assert not any("iot/simulator" in m and "built from" in m for m in said)


def test_plan_names_every_image_that_is_not_built():
    present = {"iot/api:0.1.0": labelled(SHA)}
    with pytest.raises(registry.RegistryError, match=r"not built here: iot/simulator:0.1.0, iot/device:0.1.0: build"):
        registry.plan(result(), "", branch="main", inspect=fake_inspect(present), head=lambda: SHA,
                      progress=lambda m: None)


def test_plan_in_a_dry_run_shows_images_not_built_yet():
    plans = registry.plan(result(), "", branch="main", inspect=fake_inspect({}), head=lambda: SHA,
                          progress=lambda m: None, dry=True)
    assert [p.source for p in plans] == list(IMAGES.values())


def test_dry_tag_and_push_print_every_command_and_run_nothing(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("nothing may run in a dry run")

    monkeypatch.setattr(registry.subprocess, "Popen", boom)
    monkeypatch.setattr(registry.subprocess, "run", boom)
    plans = [registry.ImagePlan("api", "iot/api:0.1.0", "127.0.0.1:5999/iot/api", ("0.1.0", "git-8d66537", "main"), SHA)]
    said = []
    registry.push(plans, "127.0.0.1:5999/", progress=said.append, dry=True)
    commands = [m for m in said if m.startswith(("$ ", "would run: "))]
    assert commands == [
        "would run: docker tag iot/api:0.1.0 127.0.0.1:5999/iot/api:0.1.0",
        "would run: docker tag iot/api:0.1.0 127.0.0.1:5999/iot/api:git-8d66537",
        "would run: docker tag iot/api:0.1.0 127.0.0.1:5999/iot/api:main",
        "would run: docker push 127.0.0.1:5999/iot/api:0.1.0",
        "would run: docker push 127.0.0.1:5999/iot/api:git-8d66537",
        "would run: docker push 127.0.0.1:5999/iot/api:main",
    ]


def test_a_failing_command_says_so_with_the_end_of_its_output():
    with pytest.raises(registry.RegistryError) as exc:
        registry.run(["sh", "-c", "echo first; echo 'denied: no way' >&2; exit 3"], progress=lambda m: None,
                     echo_output=False)
    assert str(exc.value) == ("`sh -c 'echo first; echo '\"'\"'denied: no way'\"'\"' >&2; exit 3'` failed (exit 3):\n"
                              "  first\n  denied: no way")
    assert exc.value.status == 3 and exc.value.argv[0] == "sh"


def test_a_stalled_command_is_ended_by_its_timeout():
    with pytest.raises(registry.RegistryError, match="did not finish within 0.3 s"):
        registry.run(["sleep", "30"], progress=lambda m: None, timeout=0.3)


# -- reaching a registry -----------------------------------------------------------------------------------
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_loopback_registry_says_which_and_how_to_start_one():
    port = closed_port()
    with pytest.raises(registry.RegistryError) as exc:
        registry.check_registry(f"127.0.0.1:{port}/")
    message = str(exc.value)
    assert message.startswith(f"registry 127.0.0.1:{port} is unreachable (")
    assert f"./iot registry.start --port {port}" in message
    assert "\n" not in message


def test_empty_registry_is_refused():
    with pytest.raises(registry.RegistryError, match="no registry to push to"):
        registry.check_registry("")


def test_something_that_is_not_a_registry_is_named():
    import http.server
    import threading

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(registry.RegistryError, match="answers but is not a Docker registry"):
            registry.check_registry(f"127.0.0.1:{server.server_port}/")
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("given_", "prefix", "host", "loopback"), [
    ("127.0.0.1:5000", "127.0.0.1:5000/", "127.0.0.1:5000", True),
    ("localhost:5000/team/", "localhost:5000/team/", "localhost:5000", True),
    ("registry.example.com/", "registry.example.com/", "registry.example.com", False),
    ("[::1]:5000/", "[::1]:5000/", "[::1]:5000", True),
    ("", "", "", False),
])
def test_prefix_host_loopback(given_, prefix, host, loopback):
    assert registry.normalize_prefix(given_) == prefix
    assert registry.registry_host(given_) == host
    assert registry.is_loopback(host) is loopback


# -- the local registry (registry.start / registry.stop): the registry container of ops/cluster/registry.py -----
NO_ENGINE = "unix:///nonexistent/iot-test-docker.sock"  # DOCKER_HOST of an engine that is not there


def fake_state(monkeypatch, container=None, volume=None):
    """ops/cluster/registry.py's read-only probes answer CONTAINER / VOLUME (docker inspect dicts, None: none)."""
    from ops.cluster import registry as local

    monkeypatch.setattr(local, "_docker_inspect", lambda kind, name: container if kind == "container" else volume)
    monkeypatch.setattr(local, "ensure_registry_image", lambda *a, **k: None)


def registry_container(port, running=True, label="local"):
    return {"State": {"Running": running}, "Config": {"Labels": {"iot.registry": label} if label else {}},
            "HostConfig": {"PortBindings": {"5000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}}}


def test_the_shared_spec_agrees_with_the_image_and_publishes_on_loopback_only():
    from ops.cluster import registry as local

    config = yaml.safe_load((local.REGISTRY_CONTEXT / "config.yml").read_text())
    assert config["http"]["addr"] == f":{local.REGISTRY_PORT}"
    assert config["storage"]["filesystem"]["rootdirectory"] == local.REGISTRY_DATA
    assert "auth" not in config  # Debian's default config has htpasswd auth: not ours
    assert f"chown docker-registry: {local.REGISTRY_DATA}" in (local.REGISTRY_CONTEXT / "Dockerfile").read_text()
    cluster_cmd = local.registry_run_command("demo", "10.213.5.2")
    local_cmd = local.container_run_command("iot-registry", "127.0.0.1:5000", volume="iot-registry-data")
    for cmd, publish, mount in ((cluster_cmd, "127.0.0.1::5000", "/var/lib/docker-registry"),
                                (local_cmd, "127.0.0.1:5000:5000", "iot-registry-data:/var/lib/docker-registry")):
        assert cmd[:3] == ["docker", "run", "-d"] and cmd[-1] == local.REGISTRY_IMAGE
        assert cmd[cmd.index("--publish") + 1] == publish
        assert cmd[cmd.index("--volume") + 1] == mount
    for address in ("0.0.0.0:5000", "192.168.1.10:5000", ":5000"):
        with pytest.raises(local.RegistryOptionError, match="loopback only"):
            local.container_run_command("x", address)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "localhost"])
def test_the_local_registry_refuses_a_non_loopback_address_before_asking_the_engine(host, monkeypatch):
    from ops.cluster import registry as local

    monkeypatch.setattr(local, "_docker_inspect", lambda *a: pytest.fail("asked the engine"))
    for dry in (True, False):
        with pytest.raises(local.RegistryOptionError, match="loopback address only") as exc:
            local.start_local(5000, host=host, dry=dry, progress=lambda m: None)
        assert exc.value.exit_code == 2 and "\n" not in str(exc.value)


def test_dry_start_without_an_engine_prints_the_plan_from_scratch(monkeypatch):
    """No engine (DOCKER_HOST nowhere): --dry still works, says so, and prints every command of a first start."""
    from ops.cluster import local as cluster_local
    from ops.cluster import registry as local

    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)
    port, said = closed_port(), []
    reg = local.start_local(port, name="iot-test-dry", dry=True, progress=said.append)
    assert reg.prefix == f"127.0.0.1:{port}/"
    assert said[0].startswith("note: the Docker engine does not answer (") and "the plan as from scratch" in said[0]
    commands = [m for m in said if m.startswith("would run: docker ")]
    assert commands == [
        "would run: docker build --build-arg DEBIAN_IMAGE=" + cluster_local.DEBIAN_IMAGE + f" --tag {local.REGISTRY_IMAGE} "
        + str(local.REGISTRY_CONTEXT),
        "would run: docker volume create --label iot.registry=local iot-test-dry-data",
        f"would run: docker run -d --name iot-test-dry --label iot.registry=local --publish 127.0.0.1:{port}:5000 "
        f"--volume iot-test-dry-data:/var/lib/docker-registry {local.REGISTRY_IMAGE}",
    ]
    assert any("debootstrap" in m for m in said)  # the Debian base comes first when it is missing


def test_the_dry_image_build_is_the_one_the_cluster_runs(monkeypatch):
    """ensure_registry_image's dry line and ops.cluster.local.ensure_dind_image's real command are one."""
    from ops import images
    from ops.cluster import local as cluster_local
    from ops.cluster import registry as local

    monkeypatch.setattr(images, "image_exists", lambda ref: ref == cluster_local.DEBIAN_IMAGE)
    ran = []
    monkeypatch.setattr(cluster_local, "run", lambda cmd, progress=None, **kw: ran.append(cmd) or "")
    said = []
    local.ensure_registry_image(progress=said.append, dry=True)
    local.ensure_registry_image(progress=lambda m: None, dry=False)
    assert said == [f"would run: {shlex.join(ran[0])}"] and len(ran) == 1


def test_start_reuses_the_one_running_on_that_port_and_refuses_another_port(monkeypatch):
    from ops.cluster import registry as local

    fake_state(monkeypatch, registry_container(5123), {"Name": "iot-registry-data"})
    said = []
    reg = local.start_local(5123, dry=False, progress=said.append)
    assert reg.reused and said == ["a local registry already runs: http://127.0.0.1:5123 (container iot-registry, "
                                   "data in volume iot-registry-data)"]
    with pytest.raises(local.RegistryError, match=r"iot-registry already runs on 127.0.0.1:5123: stop it first "
                                                  r"\(./iot registry.stop --name iot-registry\)"):
        local.start_local(5124, dry=True, progress=said.append)


def test_a_stopped_container_is_replaced_and_its_volume_reused(monkeypatch):
    from ops.cluster import registry as local

    fake_state(monkeypatch, registry_container(5000, running=False), {"Name": "iot-registry-data"})
    said = []
    local.start_local(closed_port(), dry=True, progress=said.append)
    assert [m.split()[:4] for m in said] == [["would", "run:", "docker", "rm"], ["would", "run:", "docker", "run"]]


def test_a_port_taken_by_another_program_is_one_line():
    from ops.cluster import registry as local

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(local.RegistryError, match=f"port {port} on 127.0.0.1 is already in use by another program"):
            local.start_local(port, name="iot-test-taken", dry=True, progress=lambda m: None)


def test_stop_removes_the_container_keeps_the_volume_and_says_how_to_delete_it(monkeypatch):
    from ops.cluster import registry as local

    ran = []
    monkeypatch.setattr(local, "run", lambda cmd, progress=None, **kw: ran.append(cmd) or "")
    said = []
    fake_state(monkeypatch, registry_container(5000))
    assert local.stop_local(progress=said.append, dry=True) is True
    assert said == ["would run: docker stop iot-registry", "would run: docker rm iot-registry"] and ran == []
    said.clear()
    assert local.stop_local(progress=said.append) is True
    assert ran == [["docker", "stop", "iot-registry"], ["docker", "rm", "iot-registry"]]
    assert said == ["local registry iot-registry stopped; its data is kept in volume iot-registry-data "
                    "(delete it: docker volume rm iot-registry-data)"]


def test_stop_without_a_registry_is_not_an_error_and_never_removes_a_container_not_ours(monkeypatch):
    from ops.cluster import registry as local

    said = []
    fake_state(monkeypatch, None)
    assert local.stop_local("iot-test-none", progress=said.append) is False
    assert said == ["no local registry to stop (no container iot-test-none)"]
    fake_state(monkeypatch, registry_container(5000, label=None))
    with pytest.raises(local.RegistryError, match="was not started by ./iot registry.start"):
        local.stop_local("someones-registry", progress=said.append)


def test_stop_without_an_engine_is_one_line(monkeypatch):
    from ops.cluster import registry as local

    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)
    with pytest.raises(local.RegistryError, match=r"^the Docker engine does not answer \(.*\): start it with "
                                                  r"./iot engine$"):
        local.stop_local(dry=True, progress=lambda m: None)


REGISTRY_STAND_IN = textwrap.dedent("""\
    #!{python}
    import json, os, sys
    args = sys.argv[1:]
    with open(os.environ["REC_LOG"], "a") as log:
        log.write(json.dumps(["docker", *args]) + "\\n")
    if args[:2] in (["container", "inspect"], ["volume", "inspect"]):
        if args[0] == "container" and os.environ.get("REC_RUNNING"):
            print(json.dumps([{{"State": {{"Running": True}}, "Config": {{"Labels": {{"iot.registry": "local"}}}}}}]))
        else:
            sys.exit("Error: No such " + args[0] + ": " + args[2])
    """)  # anything else (image inspect, volume create, run, stop, rm): no output, exit 0


def test_dry_start_and_stop_record_exactly_the_commands_the_real_ones_run(stand_ins, monkeypatch, tmp_path):
    """Against a stand-in docker: what --dry echoes (IOT_RECORD_COMMANDS) is what the real run runs, in order."""
    from ops import run as runner
    from ops.cluster import registry as local

    calls = stand_ins(REGISTRY_STAND_IN, "docker")
    monkeypatch.setattr(local, "_wait", lambda host_port, timeout: True)  # no registry behind the stand-in
    port, plans = closed_port(), {}
    for what, action in (("start", lambda dry: local.start_local(port, name="iot-test-rec", dry=dry, progress=print)),
                         ("stop", lambda dry: local.stop_local("iot-test-rec", dry=dry, progress=print))):
        if what == "stop":
            monkeypatch.setenv("REC_RUNNING", "1")
        recorded = {}
        for dry in (True, False):
            monkeypatch.setenv(runner.RECORD_ENV, str(tmp_path / f"{what}-{dry}.jsonl"))
            before = len(calls())
            action(dry)
            recorded[dry] = runner.read_record(tmp_path / f"{what}-{dry}.jsonl")
            ran = [c for c in calls()[before:] if c[2:3] != ["inspect"]]  # what changes something
            assert ran == ([] if dry else recorded[dry]), (what, dry)
        assert recorded[True] == recorded[False], what
        plans[what] = [c[1:3] for c in recorded[True]]
    assert plans == {"start": [["volume", "create"], ["run", "-d"]], "stop": [["stop", "iot-test-rec"], ["rm", "iot-test-rec"]]}


def test_registry_tasks_dry_without_an_engine(monkeypatch):
    """`./iot --dry registry.start` needs no engine; `registry.stop` says in one line that it needs one."""
    import os
    import subprocess

    env = {**os.environ, "DOCKER_HOST": NO_ENGINE}
    port = closed_port()
    start = subprocess.run([str(ROOT / "iot"), "--dry", "registry.start", "--port", str(port), "--name", "iot-test-dry"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert start.returncode == 0, start.stderr
    assert (f"would run: docker run -d --name iot-test-dry --label iot.registry=local --publish 127.0.0.1:{port}:5000 "
            f"--volume iot-test-dry-data:/var/lib/docker-registry") in start.stderr
    stop = subprocess.run([str(ROOT / "iot"), "--dry", "registry.stop", "--name", "iot-test-dry"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert stop.returncode == 1 and "Traceback" not in stop.stderr
    assert stop.stderr.strip().splitlines()[-1].startswith("error: the Docker engine does not answer")


def test_a_dry_push_without_a_registry_stops_where_the_real_one_does():
    """--dry push once printed "would check that (no registry) answers" and went on with every push."""
    said: list[str] = []
    for dry in (True, False):
        with pytest.raises(registry.RegistryError, match="no registry to push to"):
            registry.push([], "", progress=said.append, dry=dry)
    assert said == []
    registry.push([], "127.0.0.1:5000/", progress=said.append, dry=True)
    assert said == ["would check that 127.0.0.1:5000 answers"]


@pytest.mark.parametrize("env", ["dev", "test", "prod"])
def test_the_publish_plan_takes_the_images_a_render_names_without_rendering(env, tmp_path, monkeypatch):
    """tag/push once rendered the env into a throw-away folder to learn its images: the values say them."""
    from ops import render

    overrides = {"registry": "r.example:5000/team/"}
    rendered = render.render(env, out_dir=tmp_path / "out", secrets_dir=tmp_path / "secrets", overrides=overrides)
    monkeypatch.setattr(render, "render", lambda *a, **k: pytest.fail("publish_plan rendered the env"))
    plans, prefix = registry.publish_plan(env, overrides, dry=True, branch="main", inspect=fake_inspect({}),
                                          head=lambda: SHA, progress=lambda m: None)
    assert prefix == "r.example:5000/team/"
    assert {p.name for p in plans} == set(rendered.images)
    for p in plans:  # not built here (dry): the plain local name, tagged into the registry
        assert p.source == rendered.images[p.name].removeprefix(prefix)
        assert all(t.startswith(rendered.images[p.name].rsplit(":", 1)[0] + ":") for t in p.targets), p


def test_with_online_bases_the_image_is_built_on_the_official_debian_without_debootstrap(monkeypatch):
    """A learner's laptop (Docker Hub reachable, no Debian host, no root) builds the registry image on the
    official debian image, which the build pulls; offline, on the debootstrapped base as the cluster does."""
    from ops import bases, engine, images
    from ops.cluster import registry as local

    monkeypatch.setattr(images, "image_exists", lambda ref: False)
    monkeypatch.setattr(bases, "image_exists", lambda ref: False)  # bases imported the name
    monkeypatch.setattr(engine, "registry_reachable", lambda *a, **k: True)
    online = local.chosen_debian_base("dev", {}, progress=lambda m: None)
    assert online == render.load_values("dev")["bases"]["online"]["debian"]
    said = []
    local.ensure_registry_image(progress=said.append, dry=True, debian_image=online)
    assert said == [f"would run: {shlex.join(local.registry_build_command(local.REGISTRY_IMAGE, online))}"]
    assert f"DEBIAN_IMAGE={online}" in said[0]

    monkeypatch.setattr(engine, "registry_reachable", lambda *a, **k: False)
    notes = []
    offline = local.chosen_debian_base("dev", {}, progress=notes.append)
    assert offline == render.load_values("dev")["bases"]["offline"]["debian"] and "offline" in notes[0]
    said = []
    local.ensure_registry_image(progress=said.append, dry=True, debian_image=offline)
    assert any("debootstrap" in m for m in said) and f"DEBIAN_IMAGE={offline}" in said[-1], said
