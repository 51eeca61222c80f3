"""Security of the rendered files (issue #6): every container hardened in every target, prod exposing
only the api and Grafana, Grafana locked down, the hardening values checked with errors naming the key,
and the images' own users matching the values.

What each target can carry (SECURITY.md): compose files get user, cap_drop ALL, no-new-privileges,
cpu/memory/pids limits, and a read-only root filesystem where Compose allows it (a service without
secrets: Compose refuses read_only where it copies secrets in); the Swarm stack gets user, cap_drop ALL,
read-only root filesystems on every service (Swarm mounts secrets itself) and cpu/memory limits, and
no security_opt (docker stack deploy ignores it) nor pids (not in the v3.8 schema).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ops import render

ROOT = Path(__file__).resolve().parents[2]

ENVS = ["dev", "test", "prod"]
NNP = "no-new-privileges:true"
OURS = {"api", "simulator", "sut"}  # our images (uid 10001)


def rendered(env: str, tmp_path: Path, overrides: dict | None = None) -> dict[str, dict]:
    result = render.render(env, out_dir=tmp_path / "out" / env, secrets_dir=tmp_path / "secrets" / env,
                           overrides=overrides)
    return {name: yaml.safe_load(path.read_text()) for name, path in result.files.items()}


def tmp_mounts(service: dict) -> list[dict]:
    return [v for v in service.get("volumes", []) if isinstance(v, dict) and v.get("type") == "tmpfs"]


def non_root(user: str) -> bool:
    return bool(user) and user.split(":", 1)[0] not in ("0", "root")


@pytest.mark.parametrize("env", ENVS)
def test_every_compose_service_is_hardened(env, tmp_path):
    files = rendered(env, tmp_path)
    values = render.load_values(env)
    for target in ("compose.yaml", "autotest.yaml"):
        services = files[target]["services"]
        assert {"api", "influxdb"} <= set(services)
        for name, svc in services.items():
            where = f"{env} {target} {name}"
            assert non_root(svc.get("user", "")), where
            assert svc["cap_drop"] == ["ALL"] and "cap_add" not in svc, where
            assert svc["security_opt"] == [NNP], where
            assert "privileged" not in svc, where
            limits = svc["deploy"]["resources"]["limits"]
            assert float(limits["cpus"]) > 0 and re.fullmatch(r"[0-9]+[MG]", limits["memory"]), where
            assert isinstance(limits["pids"], int) and limits["pids"] >= 16, where
            if name in OURS:
                assert svc["user"] == "10001:10001", where
        # Compose copies environment-sourced secrets into the container and refuses that in a
        # read-only one: read-only exactly where a service gets no secret.
        for name, svc in services.items():
            if svc.get("secrets"):
                assert "read_only" not in svc, f"{env} {target} {name}"
            else:
                assert svc.get("read_only") is True, f"{env} {target} {name}"
                assert [m["target"] for m in tmp_mounts(svc)] == ["/tmp"]
                assert tmp_mounts(svc)[0]["tmpfs"]["size"] == values["hardening"]["tmp_size_mb"] * 1048576
        assert services["influxdb"]["read_only"] is True
        assert services["influxdb"]["user"] == values["influxdb"]["user"]
        assert services["api"]["deploy"]["resources"]["limits"]["memory"] == \
            values["api"]["deploy"]["resources"]["limits"]["memory"]


@pytest.mark.parametrize("env", ENVS)
def test_every_stack_service_is_hardened_with_what_swarm_honours(env, tmp_path):
    stack = rendered(env, tmp_path)["stack.yaml"]
    for name, svc in stack["services"].items():
        where = f"{env} stack.yaml {name}"
        assert non_root(svc.get("user", "")), where
        assert svc["cap_drop"] == ["ALL"], where
        assert svc["read_only"] is True, where
        assert [m["target"] for m in tmp_mounts(svc)] == ["/tmp"], where
        assert "security_opt" not in svc, where  # ignored by `docker stack deploy`: not pretended
        assert "tmpfs" not in svc, where          # service-level tmpfs: ignored by Swarm too
        limits = svc["deploy"]["resources"]["limits"]
        assert set(limits) == {"cpus", "memory"}, where
        assert float(limits["cpus"]) > 0 and limits["memory"], where


def test_read_only_off_removes_it_and_the_tmpfs(tmp_path):
    files = rendered("test", tmp_path, {"hardening.read_only": False})
    for target, data in files.items():
        for name, svc in data["services"].items():
            assert "read_only" not in svc and not tmp_mounts(svc), f"{target} {name}"
            assert svc["cap_drop"] == ["ALL"]  # the rest stays


def test_prod_publishes_only_api_and_grafana_and_keeps_influxdb_internal(tmp_path):
    files = rendered("prod", tmp_path)
    values = render.load_values("prod")
    assert values["bases"]["mode"] == "online"  # prod has Grafana
    stack = files["stack.yaml"]
    published = {name: [p["published"] for p in svc.get("ports", [])] for name, svc in stack["services"].items()}
    assert published == {"api": [values["api"]["published_port"]], "influxdb": [],
                         "grafana": [values["grafana"]["published_port"]], "web": [values["web"]["published_port"]],
                         "mqtt": [], "historian": [], "processor": [], "fleet": []}  # the broker only through web
    assert stack["services"]["influxdb"]["networks"] == ["backend"]
    assert stack["networks"]["backend"]["internal"] is True
    compose = files["compose.yaml"]
    assert "ports" not in compose["services"]["influxdb"]
    assert compose["services"]["influxdb"]["networks"] == ["backend"]
    assert compose["networks"]["backend"]["internal"] is True
    for target in ("compose.yaml", "stack.yaml"):
        for svc in files[target]["services"].values():  # no service shares the host's namespaces
            assert svc.get("network_mode") is None and svc.get("pid") is None and svc.get("ipc") is None


@pytest.mark.parametrize("target", ["compose.yaml", "stack.yaml"])
def test_prod_grafana_admin_from_a_secret_no_anonymous_no_sign_up(target, tmp_path):
    grafana = rendered("prod", tmp_path)[target]["services"]["grafana"]
    env = grafana["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE" not in env
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert env["GF_LOG_MODE"] == "console"  # no log file on the read-only root filesystem
    assert "grafana_admin_password" in [s["source"] for s in grafana["secrets"]]
    assert grafana["user"] == "472"



@pytest.mark.parametrize("yaml_text, key, message", [
    ('api:\n  user: "0:0"\n', "api.user", "must not be root"),
    ("influxdb:\n  user: root\n", "influxdb.user", "must not be root"),
    ('grafana:\n  user: "472 --privileged"\n', "grafana.user", "a user like 10001:10001"),
    ("simulator:\n  user: 10001\n", "simulator.user", "a user like"),  # a YAML int: quote it
    ("hardening:\n  read_only: maybe\n", "hardening.read_only", "true or false"),
    ("hardening:\n  tmp_size_mb: 0\n", "hardening.tmp_size_mb", "between 1 and 4096"),
    ("api:\n  deploy:\n    resources:\n      limits: {pids: 2}\n", "api.deploy.resources.limits.pids",
     "between 16 and 100000"),
    ("simulator:\n  resources:\n    limits: {memory: lots}\n", "simulator.resources.limits.memory", "a size like"),
    ("influxdb:\n  deploy:\n    resources:\n      reservations: {pids: 100}\n",
     "influxdb.deploy.resources.reservations.pids", "unknown key"),
])
def test_bad_hardening_values_name_the_key(values_dir, yaml_text, key, message):
    (values_dir / "dev.yaml").write_text(yaml_text)
    with pytest.raises(render.RenderError) as err:
        render.load_values("dev")
    assert f"dev.yaml: {key}: " in str(err.value)
    assert message in str(err.value)


def _dockerfile_user(path: Path) -> str:
    users = re.findall(r"^USER\s+(\S+)", path.read_text(), re.M)
    assert users, f"{path}: no USER"
    return users[-1]


@pytest.mark.parametrize("service, folder", [("api", "api"), ("simulator", "simulator"), ("device", "device")])
def test_our_images_run_as_the_values_user(service, folder):
    user = _dockerfile_user(ROOT / folder / "Dockerfile")
    assert non_root(user) and user == "10001:10001"
    values = render.load_values("dev")
    assert values.get(service, {}).get("user", user) == user  # the device has no service in the stacks


def test_offline_influxdb_image_is_non_root_and_owns_its_data_dir():
    """A fresh named volume takes the ownership of the image's folder: the image must create
    /var/lib/influxdb owned by the user it runs as (uid 1000, named influxdb like the values say)."""
    text = (ROOT / "images" / "influxdb" / "Dockerfile").read_text()
    assert _dockerfile_user(ROOT / "images" / "influxdb" / "Dockerfile") == "1000:1000"
    assert re.search(r"useradd[^\n]*--uid 1000[^\n]*influxdb", text.replace("\\\n", " "))
    assert "chown influxdb:influxdb /var/lib/influxdb" in text
    assert render.load_values("test")["influxdb"]["user"] == "influxdb"
