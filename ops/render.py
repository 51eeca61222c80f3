"""Render the deployment files of an environment from stacks/templates + stacks/values.

    values  = stacks/values/defaults.yaml  <- deep-merged <-  stacks/values/<env>.yaml  <- overrides
    targets = compose.yaml (local), autotest.yaml (sut verdict), stack.yaml (Swarm, v3.8 schema)

This module writes an env's files and says what it wrote (RenderResult); the steps before it are
their own modules: ops/values.py loads the values and checks them against ops/values_schema.py (an
unknown key, a missing one or a wrong type is a `RenderError` naming the file and the dotted key),
ops/templates.py runs Jinja2 strictly (a missing key names the key and the template line), and
ops/names.py names the stack and its Swarm objects. Output is deterministic (same inputs, same bytes):
no timestamps, mappings sorted where order is free, paths relative to the output folder. Build
metadata that changes per build (REVISION, CREATED) is left to Compose interpolation: IOT_REVISION and
IOT_CREATED in the environment of `docker compose build`.

Secrets are referenced, never written: in compose files by the variable IOT_SECRET_<NAME> that the
tasks set for `docker compose` from secrets/<env>/<name> (values.compose.secrets=environment; `file`
bind-mounts the 0600 file instead), in the stack by a name carrying a hash of their content plus the
file path. `render` generates the missing secrets first (ops/secrets.py).

The names of the values, templates and naming modules are re-exported here (`render.load_values`,
`render.RenderError`, …), so callers keep one import.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import names
from . import secrets as secrets_mod
from . import templates as templates_mod
from .values import DEFAULTS, ROOT, RenderError, list_envs, load_values, parse_overrides, rel  # noqa: F401 - re-exported

STACKS = ROOT / "stacks"
SUT_SCRIPT = STACKS / "autotest" / "sut.py"
SERVICE_DIRS = {"api": ROOT / "api", "simulator": ROOT / "simulator", "device": ROOT / "device",
                "broker": ROOT / "images" / "mosquitto", "web": ROOT / "web"}  # build contexts
# Grafana's provisioning: datasources/*.yaml and dashboards/ (provider.yaml + *.json), mounted under
# GRAFANA_PROVISIONING_TARGET/<folder>/ (a bind mount per folder in compose, a config per file in Swarm).
GRAFANA_PROVISIONING = ROOT / "grafana-provisioning"
GRAFANA_PROVISIONING_TARGET = "/etc/grafana/provisioning"
GRAFANA_FOLDERS = {"datasources": "datasource", "dashboards": "dashboard"}  # folder -> config name part

# target file -> template
TARGETS = {"compose.yaml": "compose.yaml.j2", "autotest.yaml": "autotest.yaml.j2", "stack.yaml": "stack.yaml.j2"}
# The broker's configuration, rendered beside them and mounted into the broker (a config in Swarm, named
# <stack>_mosquitto_conf_<hash>); it names the secrets the broker reads its users and ACL from.
MOSQUITTO_CONF = "mosquitto.conf"
MOSQUITTO_CONF_KEY = "mosquitto_conf"  # the config's key in compose.yaml / stack.yaml
MOSQUITTO_DATA_DIR = "/var/lib/mosquitto"  # images/mosquitto/Dockerfile's volume


@dataclass(frozen=True)
class RenderResult:
    env: str
    out_dir: Path
    files: dict[str, Path]            # target name (compose.yaml…) -> written file
    notes: list[str]                  # what the user should know (e.g. why Grafana is left out)
    images: dict[str, str]            # our images to build/tag/push: name -> full reference
    bases: dict[str, str | None]      # active base images: python, influxdb, grafana (None offline)
    build_args: dict[str, str]        # BASE_IMAGE / VERSION for `docker build` of our Dockerfiles
    project: str                      # compose project name of compose.yaml
    autotest_project: str             # compose project name of autotest.yaml
    stack_name: str                   # `docker stack deploy` name for stack.yaml
    urls: dict[str, str]              # what `up` prints: api, grafana (when in the stack)
    secrets: dict[str, Path]          # secret name -> file (values never read here)
    swarm_secret_names: dict[str, str] = field(default_factory=dict)  # name -> <stack>_<name>_<hash>
    swarm_config_names: dict[str, str] = field(default_factory=dict)  # mosquitto.conf, Grafana provisioning: same form
    grafana: bool = True              # Grafana in compose.yaml and stack.yaml
    config_files: dict[str, Path] = field(default_factory=dict)  # config key -> file (the Swarm configs' content)
    values: dict = field(default_factory=dict, repr=False)  # the checked values this render used (overrides applied)

    def lines(self) -> list[str]:
        """What `invoke render` / `up` print: files, URLs, where the credentials are, notes."""
        written = [*self.files.values()] + [p for k, p in self.config_files.items() if k == MOSQUITTO_CONF_KEY]
        out = [f"rendered env {self.env}: " + ", ".join(rel(path) for path in written)]
        out += [f"{name}: {url}" for name, url in self.urls.items()]
        out.append(f"credentials: files in {rel(self.secrets[secrets_mod.API_TOKENS].parent)}/ "
                   f"(api tokens: {secrets_mod.SIMULATOR_TOKEN} write, {secrets_mod.API_READ_TOKEN} read"
                   + (f"; Grafana admin password: {secrets_mod.GRAFANA_ADMIN_PASSWORD}" if self.grafana else "")
                   + "; MQTT broker passwords: mqtt_<role>_password, the page's user: "
                   + f"{secrets_mod.MQTT_PASSWORDS['web']})")
        out += [f"note: {note}" for note in self.notes]
        return out


def _relpath(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target.resolve(), start.resolve())).as_posix()


def _resolve(path: Path) -> Path:
    path = Path(path)
    return path if path.is_absolute() else ROOT / path


def render(env: str, out_dir: Path | None = None, secrets_dir: Path | None = None,
           overrides: Mapping[str, Any] | None = None) -> RenderResult:
    """Render every target of ENV into OUT_DIR (default build/<env>, relative paths from the
    repository root) and return what was written. Secrets missing in SECRETS_DIR (default
    secrets/<env>) are generated first; their values are never read into a rendered file."""
    values = load_values(env, overrides)
    out_dir = _resolve(out_dir if out_dir is not None else Path("build") / env)
    secrets_dir = _resolve(secrets_dir if secrets_dir is not None else Path("secrets") / env)
    try:
        secret_paths = secrets_mod.ensure_secrets(secrets_dir, mqtt_users=values["mqtt"]["users"])
    except secrets_mod.SecretsError as exc:
        raise RenderError(str(exc)) from None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RenderError(f"output folder {out_dir}: cannot create it ({exc.strerror})") from None

    mode = values["bases"]["mode"]
    bases = dict(values["bases"][mode])
    grafana = bases["grafana"] is not None
    images = names.our_images(values)
    stack_name = names.stack_name(values, env)
    notes: list[str] = []
    if not grafana:
        notes.append(f"grafana left out: {mode} bases (bases.mode={mode}) and Grafana has no offline "
                     "source (no Debian package, no registry); render with online bases to include it")
    if not values["influxdb"]["auth"]:
        notes.append("influxdb auth is off (influxdb.auth=false): InfluxDB is reachable only on the "
                     "internal backend network" + (", and on 127.0.0.1 where published"
                                                   if values["influxdb"]["published_port"] else ""))
    if values["swarm"]["publish_mode"] == "host" and values["api"]["deploy"]["replicas"] > 1:
        notes.append(f"stack.yaml: api publishes port {values['api']['published_port']} in host mode: "
                     "at most one api task per node (placement.max_replicas_per_node 1)")

    swarm_names = names.swarm_object_names(stack_name, dict(sorted(secret_paths.items())))
    provisioning = grafana_provisioning_files() if grafana else []
    # The broker's configuration first: the stacks mount it, and Swarm names it by its content.
    conf_path = out_dir / MOSQUITTO_CONF
    _write_if_changed(conf_path, mosquitto_conf(
        values["mqtt"], password_file=f"/run/secrets/{secrets_mod.MOSQUITTO_PASSWD}",
        acl_file=f"/run/secrets/{secrets_mod.MOSQUITTO_ACL}",
        header=_header(env, "mosquitto.conf.j2", overrides)))
    config_files = {MOSQUITTO_CONF_KEY: conf_path} | {c["key"]: c["path"] for c in provisioning}
    config_names = names.swarm_object_names(stack_name, config_files)

    ctx_common = {
        "env": env,
        "stack_name": stack_name,
        "image": images,
        "base": bases,
        "grafana_on": grafana,
        "build_args": {"BASE_IMAGE": bases["python"], "VERSION": values["version"]},
        "secret_names": swarm_names,
        "grafana_provisioning_target": GRAFANA_PROVISIONING_TARGET,
        "mosquitto_data_dir": MOSQUITTO_DATA_DIR,
        "mosquitto_conf_name": config_names[MOSQUITTO_CONF_KEY],
    }
    files: dict[str, Path] = {}
    jenv = templates_mod.environment()
    for target, template_name in TARGETS.items():
        service_paths = {name: _relpath(path, out_dir) for name, path in SERVICE_DIRS.items()}
        ctx = dict(values)
        ctx.update(ctx_common)
        ctx.update({
            "target": target,
            "compose_project": names.autotest_project(values, env) if target == "autotest.yaml" else stack_name,
            "path": dict(service_paths, sut=_relpath(SUT_SCRIPT, out_dir), grafana=_relpath(GRAFANA_PROVISIONING, out_dir)),
            "grafana_folders": sorted(GRAFANA_FOLDERS),
            "grafana_configs": [{"key": c["key"], "name": config_names[c["key"]], "target": c["target"],
                                 "file": _relpath(c["path"], out_dir)} for c in provisioning],
            "secret_file": {name: _relpath(path, out_dir) for name, path in secret_paths.items()},
            "mosquitto_conf_file": _relpath(conf_path, out_dir),
            "header": _header(env, template_name, overrides),
        })
        text = templates_mod.render_template(jenv, template_name, templates_mod.Values(ctx))
        try:
            yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RenderError(f"render error: {template_name} for env {env} is not valid YAML ({exc})") from None
        path = out_dir / target
        _write_if_changed(path, text)
        files[target] = path

    urls = {"api": f"http://localhost:{values['api']['published_port']}"}
    if grafana:
        urls["grafana"] = f"http://localhost:{values['grafana']['published_port']}"
    urls["web"] = f"http://localhost:{values['web']['published_port']}"  # the live MQTT page
    return RenderResult(
        env=env, out_dir=out_dir, files=files, notes=notes, images=images, bases=bases,
        build_args=dict(ctx_common["build_args"]), project=stack_name,
        autotest_project=names.autotest_project(values, env), stack_name=stack_name, urls=urls, secrets=secret_paths,
        swarm_secret_names=swarm_names, grafana=grafana,
        swarm_config_names=config_names, config_files=config_files, values=values)


def mosquitto_conf(mqtt: Mapping[str, Any], *, password_file: str, acl_file: str,
                   data_dir: str = MOSQUITTO_DATA_DIR, bind: str | None = None, header: str = "",
                   run_as: str | None = None) -> str:
    """The broker's mosquitto.conf for the values' MQTT (one template for the stacks and the tests,
    which run a real mosquitto on loopback with BIND 127.0.0.1 and their own folders; RUN_AS: the
    user mosquitto keeps when started as root, which the tests' root needs to read its files)."""
    ctx = {"run_as": run_as, "mqtt": templates_mod.Values(dict(mqtt), "mqtt."), "password_file": password_file,
           "acl_file": acl_file, "data_dir": data_dir.rstrip("/"), "bind": bind,
           "header": header or "# GENERATED by ops/render.py from stacks/templates/mosquitto.conf.j2"}
    return templates_mod.render_template(templates_mod.environment(), "mosquitto.conf.j2", ctx)


def grafana_provisioning_files() -> list[dict]:
    """Every file Grafana reads from grafana-provisioning/ (datasources/*.yaml, dashboards/*.yaml and
    *.json), sorted: key (the Swarm config name without stack and hash), path, target in the container."""
    out = []
    for folder, part in sorted(GRAFANA_FOLDERS.items()):
        for path in sorted((GRAFANA_PROVISIONING / folder).iterdir()):
            if path.is_file() and path.suffix in (".yaml", ".yml", ".json"):
                out.append({"key": f"gf_{part}_{path.stem}", "path": path,
                            "target": f"{GRAFANA_PROVISIONING_TARGET}/{folder}/{path.name}"})
    return out


def _header(env: str, template_name: str, overrides: Mapping[str, Any] | None) -> str:
    sources = f"stacks/values/{DEFAULTS}.yaml + stacks/values/{env}.yaml"
    if overrides:
        sources += " + overrides " + ", ".join(f"{k}={v}" for k, v in sorted(overrides.items()))
    return (f"# GENERATED by ops/render.py from stacks/templates/{template_name} for env '{env}'\n"
            f"# ({sources}). Do not edit: change the values or the template and run `./iot render --env {env}`.")


def _write_if_changed(path: Path, text: str) -> None:
    data = text.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return
    except OSError:
        pass
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
