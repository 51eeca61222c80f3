"""What a valid values tree is: SCHEMA (every key, its type and range) and the rules across keys.

Pure: no files, no error type. `problem(values)` is the first broken rule as (dotted key, message);
ops/values.py turns it into a RenderError naming the file that set the key.
A new setting is a line here, beside its commented default in stacks/values/defaults.yaml. The keys
the api reads (api.port, influxdb.retention…) are not written here: the api's declaration
(api/iot_api/settings.py, SETTINGS) names them, and each is checked with the api's own rule for its
variable, so a value the api would refuse at start stops the render instead.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from iot_api import settings as api_settings

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
    "api": {  # + the keys of the api's SETTINGS (port, workers, log_level): _with_api_settings
        "published_port": _PORT, "user": _user,
        "health_path": _choice("/readyz", "/healthz"), "stop_grace_period": _DURATION, "deploy": _DEPLOY,
    },
    "influxdb": {  # + the keys of the api's SETTINGS (db, rp, measurement, retention): _with_api_settings
        "port": _PORT, "user": _user,
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


def _api_check(setting: api_settings.Setting) -> Check:
    """The values key of SETTING: the YAML type its kind has, then the api's own parser of its variable."""
    kind = setting.kind

    def check(v):
        if isinstance(v, bool) != (kind.yaml is bool) or not isinstance(v, kind.yaml):
            raise ValueError(f"must be {kind.accepted}, got {_got(v)}")
        try:
            kind.parse(api_settings.env_text(v))
        except ValueError as exc:
            raise ValueError(f"{exc} (the api's {setting.env}), got {_got(v)}") from None
    return check


def _with_api_settings(schema: dict) -> dict:
    """SCHEMA plus a check for each values key the api's SETTINGS pass as is to a variable (secrets and
    user names keep the checks written above: they are stricter than the api's)."""
    for setting in api_settings.SETTINGS:
        key = setting.values_key
        if key is None or setting.secret:
            continue
        *parents, leaf = key.split(".")
        node = schema
        for part in parents:
            node = node.setdefault(part, {})
        if leaf in node:
            raise AssertionError(f"{key}: checked twice, here and by the api's {setting.env} (iot_api/settings.py)")
        node[leaf] = _api_check(setting)
    return schema


SCHEMA = _with_api_settings(SCHEMA)


def problem(values: Any) -> tuple[str, str] | None:
    """The first broken rule as (dotted key, message), or None: SCHEMA first, then the rules across
    keys (which assume a tree of the right shape, so they only run once SCHEMA holds)."""
    return _shape_problem(values, SCHEMA) or next(_cross_checks(values), None)


def _shape_problem(values: Any, schema: Any, path: str = "") -> tuple[str, str] | None:
    if isinstance(schema, dict):
        if not isinstance(values, dict):
            return path.rstrip("."), f"must be a mapping with keys {', '.join(schema)}, got {_got(values)}"
        for key in values:
            if key not in schema:
                return f"{path}{key}", f"unknown key (known here: {', '.join(schema)})"
        for key, sub in schema.items():
            if key not in values:
                return f"{path}{key}", "missing (add it to stacks/values/defaults.yaml or the env file)"
            found = _shape_problem(values[key], sub, f"{path}{key}.")
            if found:
                return found
        return None
    try:
        schema(values)
    except ValueError as exc:
        return path.rstrip("."), str(exc)
    return None


def _cross_checks(v: dict) -> Iterator[tuple[str, str]]:
    """The rules across keys, in order; the caller stops at the first."""
    base = v["bases"][v["bases"]["mode"]]
    for name in ("debian", "python", "influxdb"):
        if base[name] is None:
            yield (f"bases.{v['bases']['mode']}.{name}", "must be set: the stack cannot run without it")
    if v["swarm"]["endpoint_mode"] == "dnsrr" and v["swarm"]["publish_mode"] == "ingress":
        yield ("swarm.publish_mode", "must be host when swarm.endpoint_mode is dnsrr (Swarm refuses "
                                     "ingress-published ports on dnsrr services)")
    if v["influxdb"]["deploy"]["replicas"] != 1:
        replicas = v["influxdb"]["deploy"]["replicas"]
        yield ("influxdb.deploy.replicas", f"must be 1 (a stateful service on one volume), got {replicas}")
    if v["mqtt"]["deploy"]["replicas"] != 1:
        replicas = v["mqtt"]["deploy"]["replicas"]
        yield ("mqtt.deploy.replicas", f"must be 1 (one broker, its persistence on one volume), got {replicas}")
    inflight = v["mqtt"]["max_inflight_messages"]
    if v["historian"]["batch_max"] > inflight:
        yield ("historian.batch_max", f"must be at most mqtt.max_inflight_messages ({inflight}): the broker would "
                                      "stop sending before a batch is full, and the historian acks whole batches")
    if v["mqtt"]["port"] == v["mqtt"]["ws_port"]:
        yield ("mqtt.ws_port", "must differ from mqtt.port")
    published = {"api.published_port": v["api"]["published_port"],
                 "web.published_port": v["web"]["published_port"],
                 "grafana.published_port": v["grafana"]["published_port"],
                 "influxdb.published_port": v["influxdb"]["published_port"]}
    seen: dict[int, str] = {}
    for key, port in published.items():
        if port is not None and port in seen:
            yield (key, f"port {port} is already published by {seen[port]}")
        if port is not None:
            seen[port] = key

