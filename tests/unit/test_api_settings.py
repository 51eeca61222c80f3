"""The api's settings are declared once (api/iot_api/settings.py, SETTINGS) and everything else follows:
the api reads them (iot_api.config), the values schema checks their keys with the api's rules, the
rendered stacks set them, docs/api.md's table is generated from them, and defaults.yaml agrees."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from iot_api import config
from iot_api import settings as api_settings

from ops import render, values_schema

ROOT = Path(__file__).resolve().parents[2]
API_PAGE = ROOT / "docs" / "api.md"
SETTINGS = api_settings.SETTINGS


def test_the_docs_table_is_the_generated_one():
    page = API_PAGE.read_text(encoding="utf-8")
    assert api_settings.rewrite_table(page) == page, \
        "docs/api.md's variables table is stale: run .venv/bin/python -m iot_api.settings docs/api.md"


def test_the_docs_check_can_fail():
    page = API_PAGE.read_text(encoding="utf-8")
    stale = page.replace("| `API_PORT` | `1337` |", "| `API_PORT` | `8080` |")
    assert stale != page and api_settings.rewrite_table(stale) == page


def test_every_setting_is_read_with_its_default():
    """Unset, each variable takes its declared default: the same as setting it to that text."""
    defaults = config.load({})
    explicit = config.load({s.env: s.default for s in SETTINGS if s.default is not None})
    assert defaults == explicit
    assert (defaults.port, defaults.workers, defaults.influxdb_url, defaults.retention) == \
        (1337, 1, "http://influxdb:8086", "INF")
    assert defaults.keepalive_timeout_s == 30.0 and defaults.max_future_ns == 3600 * 10**9


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.kind not in (api_settings.TEXT, api_settings.PATH)],
                         ids=lambda s: s.env)
def test_a_bad_value_is_one_line_naming_the_variable(setting):
    bad = "\x01" if setting.kind is api_settings.SECRET else "nonsense value"
    env = {setting.env: bad}
    if setting.secret:  # users and passwords go in pairs: give the other half
        pair = {"INFLUXDB_USER": "INFLUXDB_PASSWORD", "INFLUXDB_ADMIN_USER": "INFLUXDB_ADMIN_PASSWORD",
                "INFLUXDB_READER_USER": "INFLUXDB_READER_PASSWORD"}
        other = pair.get(setting.env) or {v: k for k, v in pair.items()}[setting.env]
        env[other] = "fine"
    with pytest.raises(config.ConfigError) as err:
        config.load(env)
    message = str(err.value)
    assert message.startswith(setting.env) and "\n" not in message
    if setting.secret:
        assert bad not in message  # never echoed


def test_defaults_yaml_agrees_with_the_declaration():
    """What the stacks set from stacks/values/defaults.yaml is each variable's declared default: the
    values an operator reads there are the api's own defaults."""
    defaults = yaml.safe_load((ROOT / "stacks" / "values" / "defaults.yaml").read_text(encoding="utf-8"))
    env = api_settings.stack_environment(defaults)
    differ = {s.env: (env[s.env], s.default) for s in SETTINGS
              if s.default is not None and s.env in env and env[s.env] != s.default}
    assert differ == {}, "stacks/values/defaults.yaml vs api/iot_api/settings.py (set by the stacks, default)"
    assert {"API_PORT", "API_WORKERS", "API_RETENTION", "INFLUXDB_URL", "INFLUXDB_DB"} <= set(env)


def test_the_schema_checks_every_values_key_with_the_api_s_rule():
    for s in SETTINGS:
        if s.values_key and not s.secret:
            node = values_schema.SCHEMA
            for part in s.values_key.split("."):
                node = node[part]
            assert callable(node), s.values_key


@pytest.mark.parametrize(("key", "value", "says"), [
    ("influxdb.retention", "30m", "InfluxDB needs at least 1h (or INF) (the api's API_RETENTION), got '30m'"),
    ("influxdb.retention", "1h30m", "must be a duration"),  # the old regex took it; the api never did
    ("api.workers", 65, "must be between 1 and 64 (the api's API_WORKERS), got 65"),
    ("api.port", "abc", "must be an integer between 1 and 65535, got 'abc'"),
    ("api.log_level", "loud", "must be debug, info, warning or error"),
    ("influxdb.db", "a.b", "must be a name of letters"),
])
def test_a_value_the_api_would_refuse_stops_the_render(key, value, says):
    with pytest.raises(render.RenderError) as err:
        render.load_values("dev", {key: value})
    assert f"override {key}: {key}: " in str(err.value) and says in str(err.value)


@pytest.mark.parametrize("env", ["dev", "test", "prod"])
@pytest.mark.parametrize("auth", [True, False])
def test_the_rendered_api_environment_is_the_declaration_s(tmp_path, env, auth):
    values = render.load_values(env, {"influxdb.auth": auth})
    result = render.render(env, out_dir=tmp_path / "out", secrets_dir=tmp_path / "secrets",
                           overrides={"influxdb.auth": auth})
    compose = yaml.safe_load((Path(result.out_dir) / "compose.yaml").read_text(encoding="utf-8"))
    stack = yaml.safe_load((Path(result.out_dir) / "stack.yaml").read_text(encoding="utf-8"))
    assert compose["services"]["api"]["environment"] == api_settings.stack_environment(values)
    assert stack["services"]["api"]["environment"] == api_settings.stack_environment(values, swarm=True)
    assert ("INFLUXDB_PASSWORD_FILE" in compose["services"]["api"]["environment"]) == auth
    assert stack["services"]["api"]["environment"]["API_INSTANCE"] == "{{.Task.Slot}}"
    # and the api accepts what the stacks give it (secrets aside: their files exist only in a container)
    given = {k: v for k, v in api_settings.stack_environment(values).items() if not k.endswith("_FILE")}
    given = {k: v for k, v in given.items() if not k.startswith("INFLUXDB_") or not k.endswith("_USER")}
    assert config.load(given).influxdb_db == values["influxdb"]["db"]


def test_adding_a_setting_is_one_line(monkeypatch):
    """docs/development.md's claim: one Setting line and the api reads the variable, the docs table has its
    row, and (with `stack=`) the schema asks defaults.yaml for its key and the stacks set it."""
    new = api_settings.Setting("API_MAX_BATCH", api_settings.integer(1, 1_000_000), "5000", "readings per request",
                               stack="{api.max_batch}")
    monkeypatch.setattr(api_settings, "SETTINGS", (new,))
    assert "| `API_MAX_BATCH` | `5000` | an integer between 1 and 1000000 | `api.max_batch` |" in \
        api_settings.markdown_table()
    schema = values_schema._with_api_settings({k: v for k, v in values_schema.SCHEMA.items() if k != "api"} |
                                              {"api": dict(values_schema.SCHEMA["api"])})
    values = render.load_values("dev")
    assert values_schema._shape_problem(values, schema) == \
        ("api.max_batch", "missing (add it to stacks/values/defaults.yaml or the env file)")
    values["api"]["max_batch"] = 0
    assert values_schema._shape_problem(values, schema)[1].startswith("must be between 1 and 1000000 (the api's")
    values["api"]["max_batch"] = 200
    assert values_schema._shape_problem(values, schema) is None
    assert api_settings.stack_environment(values) == {"API_MAX_BATCH": "200"}
