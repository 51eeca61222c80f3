"""The values of an environment: stacks/values/defaults.yaml, deep-merged with stacks/values/<env>.yaml,
then the overrides (`--set key=value`), checked against ops/values_schema.py before anything uses them.

Each key remembers the file (or override) that set it, so an unknown key, a missing one or a wrong
type is a RenderError naming that file and the dotted key: one line, never a traceback.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from . import values_schema
from .errors import OpsError

ROOT = Path(__file__).resolve().parent.parent
VALUES_DIR = ROOT / "stacks" / "values"
DEFAULTS = "defaults"


class RenderError(OpsError):
    """Anything that stops a render; str() is the one line to show (it names the file and the key)."""


def rel(path: Path) -> str:
    """PATH as shown to the user: relative to the repository root when inside it."""
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
        raise RenderError(f"values error: {rel(path)}: cannot read it ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RenderError(f"values error: {rel(path)}{where}: not valid YAML ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RenderError(f"values error: {rel(path)}: must be a mapping of keys, got {type(data).__name__}")
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


def _nearest_origin(key: str, origins: dict[str, str]) -> str | None:
    while "." in key:
        key = key.rsplit(".", 1)[0]
        if key in origins:
            return origins[key]
    return None


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
    env_path = _env_file(env)
    defaults_path = VALUES_DIR / f"{DEFAULTS}.yaml"
    origins: dict[str, str] = {}
    values = _merge({}, _load_yaml(defaults_path), rel(defaults_path), origins)
    values = _merge(values, _load_yaml(env_path), rel(env_path), origins)
    if overrides:
        values = _apply_overrides(values, overrides, origins)
    found = values_schema.problem(values)
    if found:
        key, message = found
        where = origins.get(key) or _nearest_origin(key, origins) or rel(env_path)
        raise RenderError(f"values error: {where}: {key}: {message}")
    return values
