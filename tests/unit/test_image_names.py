"""Which image a stack runs (ops.images.reference, `./iot images.name`) and how the base mode is chosen
(ops.stack.choose_bases): the names the labs run by hand come from the values, never from the docs.

Only the Docker Hub probe is replaced (choose_bases' tests); everything else is the real values files.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ops import engine, images, render, stack

ROOT = Path(__file__).resolve().parents[2]

OURS = ("api", "simulator", "device", "broker", "web")
BASES = ("debian", "python", "influxdb", "grafana")


@pytest.mark.parametrize("mode", ["online", "offline"])
@pytest.mark.parametrize("env", render.list_envs())
def test_reference_is_what_the_render_puts_in_the_stacks(env, mode, tmp_path):
    overrides = {"bases.mode": mode, "registry": "localhost:5000/"}
    result = render.render(env, out_dir=tmp_path / "out", secrets_dir=tmp_path / "secrets", overrides=overrides)
    values = render.load_values(env, overrides)
    for name in OURS:
        assert images.reference(values, name) == result.images[name]
    for name in BASES:
        if result.bases[name] is None:
            with pytest.raises(images.ImageError, match=rf"^{name}: no image with {mode} bases"):
                images.reference(values, name)
        else:
            assert images.reference(values, name) == result.bases[name]
    # and the compose file runs that InfluxDB
    assert f'image: "{images.reference(values, "influxdb")}"' in (tmp_path / "out" / "compose.yaml").read_text()


def test_reference_follows_the_mode():
    online = render.load_values("dev", {"bases.mode": "online"})
    offline = render.load_values("dev", {"bases.mode": "offline"})
    assert images.reference(online, "influxdb") == online["bases"]["online"]["influxdb"]
    assert images.reference(offline, "influxdb") == offline["bases"]["offline"]["influxdb"]
    assert images.reference(online, "influxdb") != images.reference(offline, "influxdb")


def test_unknown_name_lists_the_choices():
    with pytest.raises(images.ImageError) as exc:
        images.reference(render.load_values("dev"), "influx")
    assert str(exc.value) == f"unknown image 'influx': one of {', '.join(OURS + BASES)}"


# -- the mode: values, --set, and the Docker Hub probe ----------------------------------------------------
@pytest.fixture
def hub(monkeypatch):
    """Docker Hub's reachability, as choose_bases sees it; records how often it was asked."""
    state = {"reachable": False, "asked": 0}

    def probe(*_a, **_k):
        state["asked"] += 1
        return state["reachable"]

    monkeypatch.setattr(engine, "registry_reachable", probe)
    return state


def test_online_values_switch_to_offline_when_docker_hub_is_unreachable(hub):
    said = []
    assert stack.choose_bases("dev", {}, said.append) == {"bases.mode": "offline"}
    assert said == ["Docker Hub cannot be reached: using the offline base images (built from a Debian mirror)"]


def test_online_values_stay_online_when_docker_hub_answers(hub):
    hub["reachable"] = True
    said = []
    assert stack.choose_bases("dev", {}, said.append) == {}
    assert said == [] and hub["asked"] == 1


def test_a_forced_online_mode_is_kept_with_a_note(hub):
    said = []
    forced = {"bases.mode": "online", "api.published_port": 28337}
    assert stack.choose_bases("test", forced, said.append) == forced  # test's values say offline
    assert len(said) == 1 and said[0].startswith("note: bases.mode=online as asked")


def test_offline_values_never_probe(hub):
    assert stack.choose_bases("test", {}, print) == {}
    assert stack.choose_bases("dev", {"bases.mode": "offline"}, print) == {"bases.mode": "offline"}
    assert hub["asked"] == 0


# -- the task, as a learner types it ---------------------------------------------------------------------
def iot(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)


def test_task_prints_only_the_name_on_stdout():
    proc = iot("images.name", "influxdb", "--set", "bases.mode=online")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == render.load_values("dev", {"bases.mode": "online"})["bases"]["online"]["influxdb"] + "\n"
    proc = iot("images.name", "api", "--env", "test", "--set", "registry=localhost:5000/")
    assert proc.stdout == images.reference(render.load_values("test", {"registry": "localhost:5000/"}), "api") + "\n"


@pytest.mark.parametrize(("args", "message"), [
    (("images.name", "influx", "--set", "bases.mode=offline"), "error: unknown image 'influx': one of api,"),
    (("images.name", "grafana", "--set", "bases.mode=offline"), "error: grafana: no image with offline bases"),
    (("images.name", "api", "--env", "nosuchenv"), "error: "),
])
def test_task_bad_input_is_one_line_and_exit_1(args, message):
    proc = iot(*args)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith(message) and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr


# -- the Dockerfiles' defaults are the values' online bases -----------------------------------------------
@pytest.mark.parametrize(("dockerfile", "arg", "base"), [
    ("api/Dockerfile", "BASE_IMAGE", "python"), ("simulator/Dockerfile", "BASE_IMAGE", "python"),
    ("device/Dockerfile", "BASE_IMAGE", "python"), ("web/Dockerfile", "DEBIAN_IMAGE", "debian"),
    ("images/mosquitto/Dockerfile", "DEBIAN_IMAGE", "debian"),
])
def test_dockerfile_default_base_is_the_values_online_one(dockerfile, arg, base):
    """A build without the argument (`docker build api`, the device image online) gets the values' base."""
    lines = [line for line in (ROOT / dockerfile).read_text().splitlines() if line.startswith(f"ARG {arg}=")]
    assert lines == [f"ARG {arg}={render.load_values('dev')['bases']['online'][base]}"]
