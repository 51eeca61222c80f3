"""ops/render.py: values checked with errors naming the key, StrictUndefined, deterministic output,
offline without Grafana, no secret value in any rendered file, the shape every target must keep."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from ops import render, secrets, templates

ENVS = ["dev", "test", "prod"]


@pytest.fixture
def out(tmp_path):
    return tmp_path / "out"


@pytest.fixture
def secrets_dir(tmp_path):
    return tmp_path / "secrets"


def do_render(env, out, secrets_dir, **kw):
    return render.render(env, out_dir=out / env, secrets_dir=secrets_dir / env, **kw)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())



# -- environments and values ----------------------------------------------------------------------
def test_every_env_is_listed_and_loads():
    assert set(ENVS) <= set(render.list_envs())
    assert "defaults" not in render.list_envs()
    for env in ENVS:
        values = render.load_values(env)
        assert values["api"]["port"] == 1337


def test_unknown_env_lists_the_available_ones():
    with pytest.raises(render.RenderError) as err:
        render.load_values("staging")
    assert "unknown env 'staging'" in str(err.value)
    for env in ENVS:
        assert env in str(err.value)
    with pytest.raises(render.RenderError, match="unknown env 'defaults'"):
        render.load_values("defaults")
    with pytest.raises(render.RenderError, match="unknown env '../dev'"):
        render.load_values("../dev")


def test_env_file_is_deep_merged_over_the_defaults():
    dev, test = render.load_values("dev"), render.load_values("test")
    assert dev["api"]["log_level"] == "debug"
    assert dev["api"]["deploy"]["replicas"] == 1
    assert dev["api"]["deploy"]["update_order"] == "start-first"  # kept from the defaults
    assert test["bases"]["mode"] == "offline"
    assert test["bases"]["online"]["influxdb"] == "influxdb:1.12"  # untouched sibling
    assert (test["swarm"]["endpoint_mode"], test["swarm"]["publish_mode"]) == ("dnsrr", "host")
    prod = render.load_values("prod")
    assert (prod["swarm"]["endpoint_mode"], prod["swarm"]["publish_mode"]) == ("vip", "ingress")


def test_wrong_type_names_file_and_key(values_dir):
    (values_dir / "dev.yaml").write_text("api:\n  port: abc\n")
    with pytest.raises(render.RenderError) as err:
        render.load_values("dev")
    assert str(err.value).endswith("dev.yaml: api.port: must be an integer between 1 and 65535, got 'abc'")
    assert str(err.value).startswith("values error: ")


def test_wrong_type_in_the_defaults_names_the_defaults(values_dir):
    text = (values_dir / "defaults.yaml").read_text().replace("max_file: 3", "max_file: three")
    (values_dir / "defaults.yaml").write_text(text)
    with pytest.raises(render.RenderError, match=r"defaults\.yaml: logging\.max_file: must be an integer"):
        render.load_values("dev")


@pytest.mark.parametrize("yaml_text, key, message", [
    ("api:\n  prot: 1\n", "api.prot", "unknown key"),
    ("bases:\n  mode: airgap\n", "bases.mode", "must be one of online, offline"),
    ("version: latest\n", "version", "not 'latest'"),
    ("bases:\n  online:\n    influxdb: influxdb\n", "bases.online.influxdb", "pinned tag"),
    ("bases:\n  online:\n    grafana: grafana/grafana:latest\n", "bases.online.grafana", "not :latest"),
    ("influxdb:\n  auth: yes please\n", "influxdb.auth", "true or false"),
    ("api:\n  deploy:\n    replicas: true\n", "api.deploy.replicas", "must be an integer"),
    ("swarm:\n  publish_mode: ingress\n  endpoint_mode: dnsrr\n", "swarm.publish_mode", "must be host"),
    ("grafana:\n  published_port: 1337\n", "grafana.published_port", "already published by api"),
    ("registry: localhost:5000\n", "registry", "ending in '/'"),
    ("api: 3\n", "api", "must be a mapping"),
    ("simulator:\n  interval: -1\n", "simulator.interval", "at least 0"),
    ("swarm:\n  update_config:\n    max_failure_ratio: 2\n", "swarm.update_config.max_failure_ratio", "at most 1"),
    ("api:\n  deploy:\n    resources:\n      limits: {cpus: none}\n", "api.deploy.resources.limits.cpus",
     "greater than 0"),
])
def test_bad_values_name_the_key(values_dir, yaml_text, key, message):
    (values_dir / "dev.yaml").write_text(yaml_text)
    with pytest.raises(render.RenderError) as err:
        render.load_values("dev")
    assert f"dev.yaml: {key}: " in str(err.value)
    assert message in str(err.value)


def test_missing_key_is_named(values_dir):
    text = (values_dir / "defaults.yaml").read_text().replace("  health_path: /readyz", "")
    (values_dir / "defaults.yaml").write_text(text)
    with pytest.raises(render.RenderError, match=r"api\.health_path: missing"):
        render.load_values("dev")


def test_invalid_yaml_names_file_and_line(values_dir):
    (values_dir / "dev.yaml").write_text("api:\n  port: 1\n bad indent: [\n")
    with pytest.raises(render.RenderError, match=r"values error: .*dev\.yaml:\d+:\d+: not valid YAML"):
        render.load_values("dev")


def test_overrides(out, secrets_dir):
    values = render.load_values("dev", {"bases.mode": "offline", "api.published_port": "8080"})
    assert values["bases"]["mode"] == "offline" and values["api"]["published_port"] == 8080
    assert render.parse_overrides(["a.b=1", "c=x=y"]) == {"a.b": 1, "c": "x=y"}
    with pytest.raises(render.RenderError, match="override api.prot: unknown key"):
        render.load_values("dev", {"api.prot": 1})
    with pytest.raises(render.RenderError, match="override api.port: api.port: must be an integer"):
        render.load_values("dev", {"api.port": "abc"})
    result = do_render("dev", out, secrets_dir, overrides={"bases.mode": "offline"})
    assert "overrides bases.mode=offline" in result.files["compose.yaml"].read_text()


# -- templates: StrictUndefined -------------------------------------------------------------------
def test_undefined_value_names_the_key_and_template_line(tmp_path, monkeypatch, out, secrets_dir):
    copy = tmp_path / "templates"
    shutil.copytree(templates.TEMPLATES_DIR, copy)
    lines = (copy / "compose.yaml.j2").read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith("name:"))
    lines.insert(at + 1, "x-port: {{ api.prot }}\n")
    (copy / "compose.yaml.j2").write_text("".join(lines))
    monkeypatch.setattr(templates, "TEMPLATES_DIR", copy)
    with pytest.raises(render.RenderError) as err:
        do_render("dev", out, secrets_dir)
    assert "undefined value api.prot" in str(err.value)
    assert f"compose.yaml.j2:{at + 2}" in str(err.value)


def test_undefined_top_level_name(tmp_path, monkeypatch, out, secrets_dir):
    copy = tmp_path / "templates"
    shutil.copytree(templates.TEMPLATES_DIR, copy)
    path = copy / "stack.yaml.j2"
    path.write_text(path.read_text() + "x-nope: {{ nope | q }}\n")
    monkeypatch.setattr(templates, "TEMPLATES_DIR", copy)
    with pytest.raises(render.RenderError, match=r"stack\.yaml\.j2:\d+: undefined value nope"):
        do_render("dev", out, secrets_dir)


# -- output ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("env", ENVS)
def test_deterministic(env, tmp_path, secrets_dir):
    first = render.render(env, out_dir=tmp_path / "one", secrets_dir=secrets_dir)
    second = render.render(env, out_dir=tmp_path / "two", secrets_dir=secrets_dir)
    third = render.render(env, out_dir=tmp_path / "one", secrets_dir=secrets_dir)
    for target in render.TARGETS:
        data = first.files[target].read_bytes()
        assert data == second.files[target].read_bytes() == third.files[target].read_bytes(), target
        assert data.startswith(b"# GENERATED by ops/render.py")
        assert f"for env '{env}'".encode() in data


def test_default_output_and_secret_folders(monkeypatch, tmp_path):
    monkeypatch.setattr(render, "ROOT", tmp_path)
    result = render.render("dev")
    assert result.out_dir == tmp_path / "build" / "dev"
    assert result.secrets[secrets.API_TOKENS] == tmp_path / "secrets" / "dev" / "api_tokens"
    assert sorted(result.files) == sorted(render.TARGETS)


@pytest.mark.parametrize("env", ENVS)
def test_no_secret_value_in_any_rendered_file(env, out, secrets_dir):
    result = do_render(env, out, secrets_dir)
    values = []
    for name, path in result.secrets.items():
        if name == secrets.MOSQUITTO_ACL:  # user names and topics: nothing secret in it
            continue
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                values.append(line.split()[-1])
    assert len(values) >= len(secrets.ALL) - 1
    for target, path in {**result.files, **result.config_files}.items():
        text = path.read_text()
        for value in values:
            assert value not in text, f"a secret value is in {target}"
    assert not any(v in "\n".join(result.lines()) for v in values)


def test_offline_leaves_grafana_out_and_says_why(out, secrets_dir):
    result = do_render("test", out, secrets_dir)
    assert not result.grafana and "grafana" not in result.urls
    assert any(note.startswith("grafana left out: offline bases") for note in result.notes)
    assert any("grafana left out" in line for line in result.lines())
    for target in render.TARGETS:
        doc = load(result.files[target])
        assert "grafana" not in doc["services"], target
        assert "grafana-data" not in (doc.get("volumes") or {}), target
        assert "grafana_admin_password" not in (doc.get("secrets") or {}), target


def test_online_has_grafana(out, secrets_dir):
    result = do_render("dev", out, secrets_dir)
    assert result.grafana and result.urls["grafana"] == "http://localhost:3000"
    assert not any("grafana" in note for note in result.notes)
    compose = load(result.files["compose.yaml"])
    assert compose["services"]["grafana"]["image"].startswith("grafana/grafana:1")
    assert "grafana" in load(result.files["stack.yaml"])["services"]
    assert "grafana" not in load(result.files["autotest.yaml"])["services"]  # autotest.grafana: false


@pytest.mark.parametrize("env", ENVS)
def test_compose_shape(env, out, secrets_dir):
    result = do_render(env, out, secrets_dir)
    for target in ("compose.yaml", "autotest.yaml"):
        text = result.files[target].read_text()
        assert "container_name" not in text and ":latest" not in text, target
        assert "start_interval" not in text, target  # engine 20.10 rejects it
        doc = load(result.files[target])
        assert doc["name"] == (result.project if target == "compose.yaml" else result.autotest_project)
        for name, service in doc["services"].items():
            assert "logging" in service and service["logging"]["options"]["max-size"], (target, name)
            if "build" in service:
                assert service["pull_policy"] == "never", (target, name)
                # our Python images build on bases.<mode>.python, the broker and the page on .debian
                base_arg = "DEBIAN_IMAGE" if name in ("mqtt", "web") else "BASE_IMAGE"
                assert set(service["build"]["args"]) == {base_arg, "VERSION", "REVISION", "CREATED"}
                assert service["build"]["args"][base_arg] == result.bases["debian" if name in ("mqtt", "web") else "python"]
                assert service["image"] in result.images.values()
            for dep in (service.get("depends_on") or {}).values():
                assert dep == {"condition": "service_healthy"}
        assert doc["services"]["api"]["depends_on"] == {"influxdb": {"condition": "service_healthy"}}
        assert doc["services"]["influxdb"]["init"] is True
        assert doc["networks"]["backend"]["internal"] is True
        assert doc["services"]["influxdb"]["networks"] == ["backend"]
        assert "ports" not in doc["services"]["influxdb"]
        assert doc["volumes"]["influxdb-data"] == {}  # named, kept by `down`
        for name, secret in doc["secrets"].items():
            if name == "cabundle":
                assert secret == {"file": "/etc/ssl/certs/ca-certificates.crt"}
            else:
                assert secret == {"environment": secrets.compose_variable(name)}


def test_simulator_is_behind_its_profile(out, secrets_dir):
    compose = load(do_render("dev", out, secrets_dir).files["compose.yaml"])
    sim = compose["services"]["simulator"]
    assert sim["profiles"] == ["simulator"]
    assert sim["environment"]["SIMULATOR_TOKEN_FILE"] == "/run/secrets/simulator_token"
    assert sim["depends_on"] == {"api": {"condition": "service_healthy"}}
    assert compose["services"]["fleet"]["profiles"] == ["simulator"]  # the MQTT fleet: a simulator too
    assert all("profiles" not in s for n, s in compose["services"].items() if n not in ("simulator", "fleet"))


def test_images_and_bases_from_the_values(out, secrets_dir):
    dev = do_render("dev", out, secrets_dir)
    assert dev.images == {"api": "iot/api:0.1.0", "simulator": "iot/simulator:0.1.0", "device": "iot/device:0.1.0",
                          "broker": "iot/mosquitto:0.1.0", "web": "iot/web:0.1.0"}
    assert dev.bases == {"debian": "debian:bookworm-slim", "python": "python:3.11-slim-bookworm",
                         "influxdb": "influxdb:1.12", "grafana": "grafana/grafana:12.2.1"}
    prod = do_render("prod", out, secrets_dir)
    assert prod.images["api"] == "localhost:5000/iot/api:0.1.0"
    test = do_render("test", out, secrets_dir)
    assert test.bases["python"] == "iot-base/python:3.11-bookworm" and test.bases["grafana"] is None
    compose = load(test.files["compose.yaml"])
    assert compose["services"]["api"]["build"]["args"]["BASE_IMAGE"] == "iot-base/python:3.11-bookworm"
    assert compose["services"]["influxdb"]["image"] == "iot-base/influxdb:1.6.7"
    assert compose["services"]["influxdb"]["pull_policy"] == "never"


def test_api_reads_its_secrets_from_files(out, secrets_dir):
    result = do_render("dev", out, secrets_dir)
    for target in render.TARGETS:
        api = load(result.files[target])["services"]["api"]
        assert api["environment"]["API_TOKENS_FILE"] == "/run/secrets/api_tokens"
        assert {"source": "api_tokens", "target": "api_tokens"} in api["secrets"]


def test_autotest_sut(out, secrets_dir):
    doc = load(do_render("test", out, secrets_dir).files["autotest.yaml"])
    sut = doc["services"]["sut"]
    assert sut["entrypoint"] == ["python3", "/sut/sut.py"]
    assert sut["configs"] == [{"source": "sut", "target": "/sut/sut.py"}]
    assert (out / "test" / doc["configs"]["sut"]["file"]).resolve() == render.SUT_SCRIPT
    assert sut["depends_on"] == {"api": {"condition": "service_healthy"},
                                 "influxdb": {"condition": "service_healthy"}}
    assert sut["restart"] == "no"
    assert sut["environment"]["SUT_DEVICES"] == "5" and sut["environment"]["SUT_COUNT"] == "20"
    assert "simulator" not in doc["services"]


def test_stack_shape(out, secrets_dir):
    for env in ENVS:
        result = do_render(env, out, secrets_dir)
        text = result.files["stack.yaml"].read_text()
        doc = load(result.files["stack.yaml"])
        assert doc["version"] == "3.8"
        assert "container_name" not in text and ":latest" not in text
        for name, service in doc["services"].items():
            for key in ("build", "pull_policy", "depends_on", "profiles"):  # not in the v3 schema
                assert key not in service, (env, name, key)
        values = render.load_values(env)
        for service in doc["services"].values():
            deploy = service["deploy"]
            assert deploy["endpoint_mode"] == values["swarm"]["endpoint_mode"]
            assert deploy["update_config"]["failure_action"] == "rollback"
            assert deploy["restart_policy"]["max_attempts"] >= 1 and deploy["restart_policy"]["window"]
            assert deploy["resources"]["limits"]["memory"] and deploy["rollback_config"]
            for port in service.get("ports", []):
                assert port["mode"] == values["swarm"]["publish_mode"]
        assert doc["services"]["api"]["deploy"]["update_config"]["order"] == "start-first"
        assert doc["services"]["influxdb"]["deploy"]["update_config"]["order"] == "stop-first"
        assert doc["services"]["influxdb"]["deploy"]["placement"]["constraints"] == ["node.labels.iot.influxdb == true"]
        assert doc["services"]["influxdb"]["networks"] == ["backend"] and "ports" not in doc["services"]["influxdb"]
        assert doc["networks"]["backend"] == {"driver": "overlay", "internal": True}
        for name, secret in doc["secrets"].items():
            digest = secrets.content_hash(result.secrets[name])
            assert secret["name"] == f"{result.stack_name}_{name}_{digest}"
            assert (out / env / secret["file"]).resolve() == result.secrets[name].resolve()


def test_swarm_secret_names_follow_content(out, secrets_dir):
    first = do_render("dev", out, secrets_dir).swarm_secret_names
    path = secrets_dir / "dev" / secrets.GRAFANA_ADMIN_PASSWORD
    path.write_text("rotated-by-hand-0123456789abcdef\n")
    second = do_render("dev", out, secrets_dir).swarm_secret_names
    assert second[secrets.GRAFANA_ADMIN_PASSWORD] != first[secrets.GRAFANA_ADMIN_PASSWORD]
    assert second[secrets.API_TOKENS] == first[secrets.API_TOKENS]


def test_external_secrets_and_host_mode(out, secrets_dir):
    result = do_render("test", out, secrets_dir,
                       overrides={"swarm.secrets": "external", "api.deploy.replicas": 2})
    doc = load(result.files["stack.yaml"])
    assert all(s.get("external") is True and "file" not in s for s in doc["secrets"].values())
    assert doc["services"]["api"]["deploy"]["placement"]["max_replicas_per_node"] == 1
    assert any("host mode" in note for note in result.notes)


def test_influxdb_auth_wires_the_user_secrets(out, secrets_dir):
    result = do_render("dev", out, secrets_dir, overrides={"influxdb.auth": True})
    compose = load(result.files["compose.yaml"])
    api, influx = compose["services"]["api"], compose["services"]["influxdb"]
    assert api["environment"]["INFLUXDB_USER"] == "iot_writer"
    assert api["environment"]["INFLUXDB_PASSWORD_FILE"] == "/run/secrets/influxdb_writer_password"
    assert influx["environment"]["INFLUXDB_HTTP_AUTH_ENABLED"] == "true"
    # The api creates the users (InfluxDB reads no secret, has no user variable).
    assert api["environment"]["INFLUXDB_ADMIN_USER"] == "admin"
    assert api["environment"]["INFLUXDB_ADMIN_PASSWORD_FILE"] == "/run/secrets/influxdb_admin_password"
    assert api["environment"]["INFLUXDB_READER_USER"] == "iot_reader"
    assert api["environment"]["INFLUXDB_READER_PASSWORD_FILE"] == "/run/secrets/influxdb_reader_password"
    assert {s["source"] for s in api["secrets"]} == {
        "api_tokens", "influxdb_admin_password", "influxdb_reader_password", "influxdb_writer_password"}
    assert "secrets" not in influx and not any("USER" in k for k in influx["environment"])
    sut = load(result.files["autotest.yaml"])["services"]["sut"]
    assert sut["environment"]["SUT_INFLUXDB_PASSWORD_FILE"] == "/run/secrets/influxdb_reader_password"


def test_dollar_is_escaped_for_compose_interpolation(out, secrets_dir):
    compose = do_render("dev", out, secrets_dir).files["compose.yaml"].read_text()
    assert '\\"$$code\\" = 204' in compose  # the InfluxDB probe's shell variable
    assert "${IOT_REVISION:-unknown}" in compose  # interpolation meant for Compose stays


def test_autotest_publishes_no_host_port(tmp_path):
    """An autotest must run beside a live stack of the same environment: no host port to collide on."""
    import yaml

    result = render.render("test", out_dir=tmp_path / "out", secrets_dir=tmp_path / "secrets")
    doc = yaml.safe_load(result.files["autotest.yaml"].read_text())
    assert all("ports" not in svc for svc in doc["services"].values())
    compose_doc = yaml.safe_load(result.files["compose.yaml"].read_text())
    assert compose_doc["services"]["api"]["ports"][0]["published"] == "18080"


@pytest.mark.parametrize("env", ["dev", "test", "prod"])
def test_each_swarm_replica_of_the_api_gets_its_own_instance_number(env, out, secrets_dir):
    """API_INSTANCE is Swarm's task slot in the stack (replicas must not share server-time ids); the
    Compose files run one api and leave it unset (0)."""
    do_render(env, out, secrets_dir)
    stack = load(out / env / "stack.yaml")
    compose = load(out / env / "compose.yaml")
    assert stack["services"]["api"]["environment"]["API_INSTANCE"] == "{{.Task.Slot}}"
    assert "API_INSTANCE" not in compose["services"]["api"]["environment"]
