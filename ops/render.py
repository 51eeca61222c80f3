"""Render the deployment files of an environment from stacks/templates + stacks/values.

    values  = stacks/values/defaults.yaml  <- deep-merged <-  stacks/values/<env>.yaml  <- overrides
    targets = compose.yaml (local), autotest.yaml (sut verdict), stack.yaml (Swarm, v3.8 schema)

The merged values are checked against SCHEMA before any template runs: an unknown key, a missing one
or a wrong type is a `RenderError` naming the file and the dotted key. Templates run with Jinja2's
StrictUndefined, and a missing key there names the key and the template line too. Output is
deterministic (same inputs, same bytes): no timestamps, mappings sorted where order is free, paths
relative to the output folder. Build metadata that changes per build (REVISION, CREATED) is left to
Compose interpolation: IOT_REVISION and IOT_CREATED in the environment of `docker compose build`.

Secrets are referenced, never written: in compose files by the variable IOT_SECRET_<NAME> that the
tasks set for `docker compose` from secrets/<env>/<name> (values.compose.secrets=environment; `file`
bind-mounts the 0600 file instead), in the stack by a name carrying a hash of their content plus the
file path. `render` generates the missing secrets first (ops/secrets.py).
"""
from __future__ import annotations

import json
import os
import re
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

from . import secrets as secrets_mod
from .errors import OpsError

ROOT = Path(__file__).resolve().parent.parent
STACKS = ROOT / "stacks"
VALUES_DIR = STACKS / "values"
TEMPLATES_DIR = STACKS / "templates"
DEFAULTS = "defaults"
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


class RenderError(OpsError):
    """Anything that stops a render; str() is the one line to show (it names the file and the key)."""


# -- values: load, merge, check -------------------------------------------------------------------
def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def list_envs() -> list[str]:
    """Environments that have a values file (every stacks/values/*.yaml but the defaults)."""
    return sorted(p.stem for p in VALUES_DIR.glob("*.yaml") if p.stem != DEFAULTS)


def _load_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RenderError(f"values error: {_rel(path)}: cannot read it ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RenderError(f"values error: {_rel(path)}{where}: not valid YAML ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RenderError(f"values error: {_rel(path)}: must be a mapping of keys, got {type(data).__name__}")
    return data


def _merge(base: dict, over: dict, origin: str, origins: dict[str, str], prefix: str = "") -> dict:
    """Deep merge OVER into a copy of BASE; ORIGINS records which file set each dotted key."""
    out = dict(base)
    for key, value in over.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, origin, origins, dotted + ".")
        else:
            out[key] = value
            for known in [k for k in origins if k.startswith(dotted + ".")]:
                del origins[known]
            _mark(value, origin, origins, dotted)
    return out


def _mark(value: Any, origin: str, origins: dict[str, str], dotted: str) -> None:
    origins[dotted] = origin
    if isinstance(value, dict):
        for key, sub in value.items():
            _mark(sub, origin, origins, f"{dotted}.{key}")


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`["bases.mode=offline", "api.published_port=8080"]` -> {dotted key: YAML-typed value}."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise RenderError(f"override {item!r}: expected KEY=VALUE, e.g. bases.mode=offline")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def _apply_overrides(values: dict, overrides: Mapping[str, Any], origins: dict[str, str]) -> dict:
    for dotted, value in sorted(overrides.items()):
        if isinstance(value, str):
            value = parse_overrides([f"{dotted}={value}"])[dotted]
        parts = dotted.split(".")
        node = values
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part) if isinstance(node, dict) else None
            if not isinstance(nxt, dict):
                raise RenderError(f"values error: override {dotted}: {'.'.join(parts[:i + 1])} is not a mapping")
            node = nxt
        if not isinstance(node, dict) or parts[-1] not in node:
            raise RenderError(f"values error: override {dotted}: unknown key")
        values = _merge(values, _nest(parts, value), f"override {dotted}", origins)
    return values


def _nest(parts: list[str], value: Any) -> dict:
    out: Any = value
    for part in reversed(parts):
        out = {part: out}
    return out


# A tiny schema: a dict is a mapping with exactly these keys; a callable checks a leaf (and raises
# ValueError with the message that follows "<key>: ").
Check = Callable[[Any], None]


def _got(value: Any) -> str:
    return repr(value) if not isinstance(value, str) else f"'{value}'"


def _int(lo: int, hi: int) -> Check:
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"must be an integer between {lo} and {hi}, got {_got(v)}")
    return check


def _nullable(inner: Check) -> Check:
    def check(v):
        if v is not None:
            try:
                inner(v)
            except ValueError as exc:
                raise ValueError(f"{exc} (or null)") from None
    return check


def _match(pattern: str, what: str) -> Check:
    rx = re.compile(pattern)

    def check(v):
        if not isinstance(v, str) or not rx.fullmatch(v):
            raise ValueError(f"must be {what}, got {_got(v)}")
    return check


def _choice(*options: str) -> Check:
    def check(v):
        if v not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {_got(v)}")
    return check


def _bool(v):
    if not isinstance(v, bool):
        raise ValueError(f"must be true or false, got {_got(v)}")


def _number_text(lo: float, hi: float | None = None, inclusive: bool = False) -> Check:
    """A number, as YAML number or text ("0.5"): > LO (>= LO when INCLUSIVE), <= HI."""
    def check(v):
        try:
            x = float(v) if not isinstance(v, bool) else None
            ok = x is not None and (x >= lo if inclusive else x > lo) and (hi is None or x <= hi)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            bound = f"at least {lo:g}" if inclusive else f"greater than {lo:g}"
            bound += f" and at most {hi:g}" if hi is not None else ""
            raise ValueError(f"must be a number {bound}, got {_got(v)}")
    return check


def _list_of(inner: Check) -> Check:
    def check(v):
        if not isinstance(v, list):
            raise ValueError(f"must be a list, got {_got(v)}")
        for i, item in enumerate(v):
            try:
                inner(item)
            except ValueError as exc:
                raise ValueError(f"item {i}: {exc}") from None
    return check


def _image_ref(v):
    if not isinstance(v, str) or not re.fullmatch(r"[a-z0-9][a-z0-9._:/-]*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", v) \
            or ":" not in v.rsplit("/", 1)[-1]:
        raise ValueError(f"must be an image with a pinned tag (name:tag), got {_got(v)}")
    if v.rsplit(":", 1)[1] == "latest":
        raise ValueError(f"must pin a version, not :latest, got {_got(v)}")


def _tag(v):
    _match(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", "an image tag (letters, digits, _ . -)")(v)
    if v == "latest":
        raise ValueError("must be a version, not 'latest'")


_DURATION = _match(r"([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+", "a duration like 500ms, 5s, 1m30s")
_MEMORY = _match(r"[0-9]+(\.[0-9]+)?[bkmgBKMG]?", "a size like 256M or 1G")
_IDENT = _match(r"[A-Za-z_][A-Za-z0-9_-]{0,63}", "a name of letters, digits, _ and - (max 64)")
_PORT = _int(1, 65535)
_REPO = _match(r"[a-z0-9]+([._/-][a-z0-9]+)*", "an image repository like iot/api (lowercase)")

_RESOURCES = {"cpus": _number_text(0), "memory": _MEMORY}
_LIMITS = dict(_RESOURCES, pids=_int(16, 100_000))  # pids: Compose only (Swarm's v3.8 schema has none)
_DEPLOY = {
    "replicas": _int(0, 100),
    "update_order": _choice("start-first", "stop-first"),
    "placement": _list_of(_match(r"\S.*\S", "a placement constraint like node.labels.x == true")),
    "resources": {"limits": _LIMITS, "reservations": _RESOURCES},
}


def _user(v):
    """What a container runs as: uid[:gid] or a user name of its image, never root."""
    _match(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?",
           "a user like 10001:10001 (uid:gid) or a user name of the image")(v)
    if v.split(":", 1)[0] in ("0", "root"):
        raise ValueError(f"must not be root (containers run as an unprivileged user), got {_got(v)}")
_BASES = {"debian": _image_ref, "python": _image_ref, "influxdb": _image_ref, "grafana": _nullable(_image_ref)}
_SERVICE = {"user": _user, "resources": {"limits": _LIMITS}}  # a client service of the compose files

SCHEMA: dict = {
    "project": _match(r"[a-z0-9][a-z0-9_-]{0,40}", "a lowercase name (letters, digits, _ -)"),
    "version": _tag,
    "registry": _match(r"([a-z0-9][a-z0-9.-]*(:[0-9]+)?(/[a-z0-9._-]+)*/)?",
                       "empty or a registry prefix ending in '/', e.g. localhost:5000/"),
    "images": {"api": _REPO, "simulator": _REPO, "device": _REPO, "broker": _REPO, "web": _REPO},
    "bases": {"mode": _choice("online", "offline"), "online": _BASES, "offline": _BASES},
    "build": {"ca_bundle": _nullable(_match(r"/\S+", "an absolute path"))},
    "label_prefix": _match(r"[a-z0-9]+([.-][a-z0-9]+)*", "a label prefix like iot or org.example.iot"),
    "logging": {"driver": _match(r"[a-z0-9_-]+", "a logging driver name"), "max_size": _MEMORY,
                "max_file": _int(1, 100)},
    "hardening": {"read_only": _bool, "tmp_size_mb": _int(1, 4096)},
    "healthcheck": {"interval": _DURATION, "timeout": _DURATION, "retries": _int(1, 1000),
                    "start_period": _DURATION},
    "api": {
        "port": _PORT, "published_port": _PORT, "user": _user, "workers": _int(1, 64),
        "log_level": _choice("debug", "info", "warning", "error"),
        "health_path": _choice("/readyz", "/healthz"), "stop_grace_period": _DURATION, "deploy": _DEPLOY,
    },
    "influxdb": {
        "port": _PORT, "user": _user, "db": _IDENT, "rp": _IDENT, "measurement": _IDENT,
        "retention": _match(r"INF|([0-9]+(w|d|h|m|s))+", "an InfluxQL duration (30d, 2w, 1h…) or INF"),
        "data_dir": _match(r"/\S*", "an absolute path"), "published_port": _nullable(_PORT), "auth": _bool,
        "users": {"admin": _IDENT, "writer": _IDENT, "reader": _IDENT}, "deploy": _DEPLOY,
    },
    "grafana": {"port": _PORT, "published_port": _PORT, "user": _user, "admin_user": _IDENT, "anonymous_viewers": _bool,
                "deploy": _DEPLOY},
    "simulator": {"devices": _int(1, 100_000), "interval": _number_text(0, inclusive=True),
                  "types": _match(r"[A-Za-z0-9_:.,-]+", "a comma-separated list of reading types"),
                  "user": _user, "resources": {"limits": _LIMITS}},
    "autotest": {"devices": _int(1, 1000), "count": _int(1, 9_999), "timeout": _int(10, 3600),
                 "grafana": _bool},
    "mqtt": {
        "port": _PORT, "ws_port": _PORT, "user": _user,
        "users": {"fleet": _IDENT, "historian": _IDENT, "processor": _IDENT, "web": _IDENT},
        "max_queued_messages": _int(1, 1_000_000_000), "max_queued_bytes": _int(1, 2**40),
        "max_inflight_messages": _int(1, 65_535), "autosave_interval": _int(1, 1_000_000), "deploy": _DEPLOY,
    },
    "fleet": dict(_SERVICE, interval=_number_text(0), replicas=_int(0, 1)),
    "historian": dict(_SERVICE, batch_max=_int(1, 65_535), batch_ms=_int(1, 60_000)),
    "processor": dict(_SERVICE, window=_int(1, 86_400), publish_every=_number_text(0, 3600)),
    "web": dict(_SERVICE, port=_PORT, published_port=_PORT),
    "compose": {"secrets": _choice("environment", "file")},
    "swarm": {
        "endpoint_mode": _choice("vip", "dnsrr"), "publish_mode": _choice("ingress", "host"),
        "secrets": _choice("file", "external"),
        "update_config": {"parallelism": _int(0, 100), "delay": _DURATION, "monitor": _DURATION,
                          "max_failure_ratio": _number_text(0, 1, inclusive=True)},
        "rollback_config": {"parallelism": _int(0, 100), "delay": _DURATION, "monitor": _DURATION,
                            "max_failure_ratio": _number_text(0, 1, inclusive=True)},
        "restart_policy": {"condition": _choice("none", "on-failure", "any"), "delay": _DURATION,
                           "max_attempts": _int(0, 1000), "window": _DURATION},
    },
}


def _validate(values: Any, schema: Any, origins: dict[str, str], default_file: str, path: str = "") -> None:
    def fail(key: str, message: str) -> None:
        where = origins.get(key) or _nearest_origin(key, origins) or default_file
        raise RenderError(f"values error: {where}: {key}: {message}")

    if isinstance(schema, dict):
        if not isinstance(values, dict):
            fail(path.rstrip("."), f"must be a mapping with keys {', '.join(schema)}, got {_got(values)}")
        for key in values:
            if key not in schema:
                fail(f"{path}{key}", f"unknown key (known here: {', '.join(schema)})")
        for key, sub in schema.items():
            if key not in values:
                fail(f"{path}{key}", "missing (add it to stacks/values/defaults.yaml or the env file)")
            _validate(values[key], sub, origins, default_file, f"{path}{key}.")
        return
    try:
        schema(values)
    except ValueError as exc:
        fail(path.rstrip("."), str(exc))


def _nearest_origin(key: str, origins: dict[str, str]) -> str | None:
    while "." in key:
        key = key.rsplit(".", 1)[0]
        if key in origins:
            return origins[key]
    return None


def _cross_checks(v: dict, origins: dict[str, str]) -> None:
    def fail(key: str, message: str) -> None:
        raise RenderError(f"values error: {origins.get(key, 'values')}: {key}: {message}")

    base = v["bases"][v["bases"]["mode"]]
    for name in ("debian", "python", "influxdb"):
        if base[name] is None:
            fail(f"bases.{v['bases']['mode']}.{name}", "must be set: the stack cannot run without it")
    if v["swarm"]["endpoint_mode"] == "dnsrr" and v["swarm"]["publish_mode"] == "ingress":
        fail("swarm.publish_mode", "must be host when swarm.endpoint_mode is dnsrr (Swarm refuses "
                                   "ingress-published ports on dnsrr services)")
    if v["influxdb"]["deploy"]["replicas"] != 1:
        replicas = v["influxdb"]["deploy"]["replicas"]
        fail("influxdb.deploy.replicas", f"must be 1 (a stateful service on one volume), got {replicas}")
    if v["mqtt"]["deploy"]["replicas"] != 1:
        replicas = v["mqtt"]["deploy"]["replicas"]
        fail("mqtt.deploy.replicas", f"must be 1 (one broker, its persistence on one volume), got {replicas}")
    inflight = v["mqtt"]["max_inflight_messages"]
    if v["historian"]["batch_max"] > inflight:
        fail("historian.batch_max", f"must be at most mqtt.max_inflight_messages ({inflight}): the broker would "
                                    "stop sending before a batch is full, and the historian acks whole batches")
    if v["mqtt"]["port"] == v["mqtt"]["ws_port"]:
        fail("mqtt.ws_port", "must differ from mqtt.port")
    published = {"api.published_port": v["api"]["published_port"],
                 "web.published_port": v["web"]["published_port"],
                 "grafana.published_port": v["grafana"]["published_port"],
                 "influxdb.published_port": v["influxdb"]["published_port"]}
    seen: dict[int, str] = {}
    for key, port in published.items():
        if port is not None and port in seen:
            fail(key, f"port {port} is already published by {seen[port]}")
        if port is not None:
            seen[port] = key


def _env_file(env: str) -> Path:
    if not isinstance(env, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", env) or env == DEFAULTS:
        raise RenderError(f"unknown env {env!r}: available: {', '.join(list_envs())}")
    path = VALUES_DIR / f"{env}.yaml"
    if not path.is_file():
        raise RenderError(f"unknown env {env!r}: available: {', '.join(list_envs())} "
                          f"(one stacks/values/<env>.yaml each)")
    return path


def load_values(env: str, overrides: Mapping[str, Any] | None = None) -> dict:
    """The checked values of ENV: defaults.yaml, deep-merged with <env>.yaml, then OVERRIDES
    ({"bases.mode": "offline"}: dotted keys that must exist). RenderError names file and key."""
    values, _ = _load_checked(env, overrides)
    return values


def _load_checked(env: str, overrides: Mapping[str, Any] | None) -> tuple[dict, dict[str, str]]:
    env_path = _env_file(env)
    defaults_path = VALUES_DIR / f"{DEFAULTS}.yaml"
    origins: dict[str, str] = {}
    values = _merge({}, _load_yaml(defaults_path), _rel(defaults_path), origins)
    values = _merge(values, _load_yaml(env_path), _rel(env_path), origins)
    if overrides:
        values = _apply_overrides(values, overrides, origins)
    _validate(values, SCHEMA, origins, _rel(env_path))
    _cross_checks(values, origins)
    return values, origins


# -- templates ------------------------------------------------------------------------------------
class _Values(dict):
    """A mapping that knows its dotted path, so an undefined key can be named in full."""

    def __init__(self, data: Mapping, path: str = ""):
        super().__init__({k: _wrap(v, f"{path}{k}.") for k, v in data.items()})
        self.path = path


def _wrap(value: Any, path: str) -> Any:
    if isinstance(value, dict):
        return _Values(value, path)
    if isinstance(value, list):
        return [_wrap(item, f"{path}{i}.") for i, item in enumerate(value)]
    return value


class _Undefined(jinja2.StrictUndefined):
    @property
    def _undefined_message(self) -> str:  # type: ignore[override]
        obj, name = self._undefined_obj, self._undefined_name
        if isinstance(obj, _Values):
            return f"undefined value {obj.path}{name}"
        if obj is jinja2.utils.missing:
            return f"undefined value {name}"
        return super()._undefined_message


class _Environment(jinja2.Environment):
    """Mapping keys win over dict methods: `swarm.update_config`, never `dict.update`."""

    def getattr(self, obj, attribute):
        if isinstance(obj, dict):
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)


def _q(value: Any) -> str:
    """A YAML scalar that reads back as exactly this value (JSON is YAML): strings always quoted."""
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()  # StrictUndefined: raises, naming the key
    if isinstance(value, str):
        return json.dumps(value.replace("$", "$$"))  # Compose and `docker stack` interpolate $
    if isinstance(value, int | float | bool) or value is None:
        return json.dumps(value)
    raise jinja2.TemplateRuntimeError(f"cannot quote a {type(value).__name__} as a YAML scalar")


def _environment() -> jinja2.Environment:
    env = _Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)), undefined=_Undefined,
                       autoescape=False, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["q"] = _q
    return env


def _template_location(exc: BaseException) -> str:
    where = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.startswith(str(TEMPLATES_DIR)):
            where = f"{_rel(Path(frame.filename))}:{frame.lineno}"
    return where


# -- render ---------------------------------------------------------------------------------------
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

    def lines(self) -> list[str]:
        """What `invoke render` / `up` print: files, URLs, where the credentials are, notes."""
        written = [*self.files.values()] + [p for k, p in self.config_files.items() if k == MOSQUITTO_CONF_KEY]
        out = [f"rendered env {self.env}: " + ", ".join(_rel(path) for path in written)]
        out += [f"{name}: {url}" for name, url in self.urls.items()]
        out.append(f"credentials: files in {_rel(self.secrets[secrets_mod.API_TOKENS].parent)}/ "
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
    values, _ = _load_checked(env, overrides)
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
    registry, version = values["registry"], values["version"]
    images = {name: f"{registry}{repo}:{version}" for name, repo in values["images"].items()}
    project = f"{values['project']}-{env}"
    stack_name = f"{values['project']}-{env}"
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

    hashes = {name: secrets_mod.content_hash(path) for name, path in secret_paths.items()}
    swarm_names = {name: f"{stack_name}_{name}_{digest}" for name, digest in sorted(hashes.items())}
    provisioning = grafana_provisioning_files() if grafana else []
    # The broker's configuration first: the stacks mount it, and Swarm names it by its content.
    conf_path = out_dir / MOSQUITTO_CONF
    _write_if_changed(conf_path, mosquitto_conf(
        values["mqtt"], password_file=f"/run/secrets/{secrets_mod.MOSQUITTO_PASSWD}",
        acl_file=f"/run/secrets/{secrets_mod.MOSQUITTO_ACL}",
        header=_header(env, "mosquitto.conf.j2", overrides)))
    config_files = {MOSQUITTO_CONF_KEY: conf_path} | {c["key"]: c["path"] for c in provisioning}
    config_names = {key: f"{stack_name}_{key}_{secrets_mod.content_hash(path)}" for key, path in config_files.items()}

    ctx_common = {
        "env": env,
        "image": images,
        "base": bases,
        "grafana_on": grafana,
        "build_args": {"BASE_IMAGE": bases["python"], "VERSION": version},
        "secret_names": swarm_names,
        "grafana_provisioning_target": GRAFANA_PROVISIONING_TARGET,
        "mosquitto_data_dir": MOSQUITTO_DATA_DIR,
        "mosquitto_conf_name": config_names[MOSQUITTO_CONF_KEY],
    }
    files: dict[str, Path] = {}
    jenv = _environment()
    for target, template_name in TARGETS.items():
        rel = {name: _relpath(path, out_dir) for name, path in SERVICE_DIRS.items()}
        ctx = dict(values)
        ctx.update(ctx_common)
        ctx.update({
            "target": target,
            "compose_project": f"{project}-autotest" if target == "autotest.yaml" else project,
            "path": dict(rel, sut=_relpath(SUT_SCRIPT, out_dir), grafana=_relpath(GRAFANA_PROVISIONING, out_dir)),
            "grafana_folders": sorted(GRAFANA_FOLDERS),
            "grafana_configs": [{"key": c["key"], "name": config_names[c["key"]], "target": c["target"],
                                 "file": _relpath(c["path"], out_dir)} for c in provisioning],
            "secret_file": {name: _relpath(path, out_dir) for name, path in secret_paths.items()},
            "mosquitto_conf_file": _relpath(conf_path, out_dir),
            "header": _header(env, template_name, overrides),
        })
        text = _render_one(jenv, template_name, _Values(ctx))
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
        build_args=dict(ctx_common["build_args"]), project=project, autotest_project=f"{project}-autotest",
        stack_name=stack_name, urls=urls, secrets=secret_paths, swarm_secret_names=swarm_names, grafana=grafana,
        swarm_config_names=config_names, config_files=config_files)


def mosquitto_conf(mqtt: Mapping[str, Any], *, password_file: str, acl_file: str,
                   data_dir: str = MOSQUITTO_DATA_DIR, bind: str | None = None, header: str = "",
                   run_as: str | None = None) -> str:
    """The broker's mosquitto.conf for the values' MQTT (one template for the stacks and the tests,
    which run a real mosquitto on loopback with BIND 127.0.0.1 and their own folders; RUN_AS: the
    user mosquitto keeps when started as root, which the tests' root needs to read its files)."""
    ctx = {"run_as": run_as, "mqtt": _Values(dict(mqtt), "mqtt."), "password_file": password_file, "acl_file": acl_file,
           "data_dir": data_dir.rstrip("/"), "bind": bind,
           "header": header or "# GENERATED by ops/render.py from stacks/templates/mosquitto.conf.j2"}
    return _render_one(_environment(), "mosquitto.conf.j2", ctx)


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


def _render_one(jenv: jinja2.Environment, template_name: str, ctx: Mapping) -> str:
    try:
        return jenv.get_template(template_name).render(ctx)
    except jinja2.UndefinedError as exc:
        raise RenderError(f"render error: {_template_location(exc) or template_name}: {exc}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"render error: {_rel(Path(exc.filename or template_name))}:{exc.lineno}: "
                          f"{exc.message}") from None
    except jinja2.TemplateError as exc:
        raise RenderError(f"render error: {_template_location(exc) or template_name}: {exc}") from None


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
