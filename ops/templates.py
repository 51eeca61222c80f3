"""Jinja2 for stacks/templates: strict about undefined names, and naming them in full when they are.

Templates run with StrictUndefined over `Values` (a mapping that knows its dotted path), so a missing
key is a RenderError naming the key and the template line, e.g. `stacks/templates/compose.yaml.j2:12:
undefined value api.prot`. Mapping keys win over dict methods (`swarm.update_config`, never
`dict.update`), and the `q` filter quotes a scalar so that YAML reads back exactly that value.
"""
from __future__ import annotations

import json
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from iot_api import settings as api_settings

from .values import ROOT, RenderError, rel

TEMPLATES_DIR = ROOT / "stacks" / "templates"


class Values(dict):
    """A mapping that knows its dotted path, so an undefined key can be named in full."""

    def __init__(self, data: Mapping, path: str = ""):
        super().__init__({k: _wrap(v, f"{path}{k}.") for k, v in data.items()})
        self.path = path


def _wrap(value: Any, path: str) -> Any:
    if isinstance(value, dict):
        return Values(value, path)
    if isinstance(value, list):
        return [_wrap(item, f"{path}{i}.") for i, item in enumerate(value)]
    return value


class _Undefined(jinja2.StrictUndefined):
    @property
    def _undefined_message(self) -> str:  # type: ignore[override]
        obj, name = self._undefined_obj, self._undefined_name
        if isinstance(obj, Values):
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


@jinja2.pass_context
def _api_environment(ctx, swarm: bool = False) -> dict[str, str]:
    """The api's environment block, from its declaration (api/iot_api/settings.py) and these values."""
    return api_settings.stack_environment(ctx, swarm=swarm)


def environment() -> jinja2.Environment:
    """The Jinja2 environment of TEMPLATES_DIR (read when called, so a test may point it elsewhere)."""
    env = _Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)), undefined=_Undefined,
                       autoescape=False, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["q"] = _q
    env.globals["api_environment"] = _api_environment
    return env


def _template_location(exc: BaseException) -> str:
    where = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.startswith(str(TEMPLATES_DIR)):
            where = f"{rel(Path(frame.filename))}:{frame.lineno}"
    return where


def render_template(jenv: jinja2.Environment, template_name: str, ctx: Mapping) -> str:
    """TEMPLATE_NAME rendered with CTX; any template error is a RenderError naming the file and line."""
    try:
        return jenv.get_template(template_name).render(ctx)
    except jinja2.UndefinedError as exc:
        raise RenderError(f"render error: {_template_location(exc) or template_name}: {exc}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"render error: {rel(Path(exc.filename or template_name))}:{exc.lineno}: "
                          f"{exc.message}") from None
    except jinja2.TemplateError as exc:
        raise RenderError(f"render error: {_template_location(exc) or template_name}: {exc}") from None
