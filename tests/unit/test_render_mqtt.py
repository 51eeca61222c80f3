"""The MQTT module in the rendered stacks (docs/mqtt.md "In the stacks"): the broker, the historian, the
processor, the fleet and the page, wired by the contract, hardened like the other services, the broker's
configuration a hash-named Swarm config, and the values checks that keep the broker from losing data."""
from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from ops import mqtt_auth, render, secrets

ENVS = ["dev", "test", "prod"]
MQTT_SERVICES = ("mqtt", "historian", "processor", "fleet", "web")
CLIENTS = {"fleet": "fleet", "historian": "historian", "processor": "processor", "web": "web"}  # service -> broker role


@pytest.fixture
def make(tmp_path):
    def do(env="dev", overrides=None, out="out"):
        return render.render(env, out_dir=tmp_path / out, secrets_dir=tmp_path / "secrets" / env, overrides=overrides)
    return do


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def docs(result) -> tuple[dict, dict]:
    return load(result.files["compose.yaml"]), load(result.files["stack.yaml"])


@pytest.mark.parametrize("env", ENVS)
def test_every_mqtt_service_is_in_compose_and_the_stack(make, env):
    result = make(env)
    compose, stack = docs(result)
    for name in MQTT_SERVICES:
        assert name in compose["services"], name
        assert name in stack["services"], name
    values = render.load_values(env)
    assert compose["services"]["mqtt"]["image"] == stack["services"]["mqtt"]["image"] == result.images["broker"]
    assert compose["services"]["web"]["image"] == stack["services"]["web"]["image"] == result.images["web"]
    for name in ("historian", "processor"):  # the api image runs them
        assert stack["services"][name]["image"] == result.images["api"]
        assert stack["services"][name]["command"] == ["python", "-m", "iot_stream", name]
    fleet = stack["services"]["fleet"]
    assert fleet["image"] == result.images["simulator"]
    # the simulator image's ENTRYPOINT runs the HTTP simulator: replaced, tini kept as PID 1
    assert fleet["entrypoint"] == ["/usr/bin/tini", "--"] and fleet["command"] == ["python", "-m", "iot_simulator.fleet"]
    assert compose["volumes"]["mqtt-data"] == {} and stack["volumes"]["mqtt-data"] == {}
    assert result.urls["web"] == f"http://localhost:{values['web']['published_port']}"


def test_autotest_stays_on_the_http_path(make):
    """The sut checks the HTTP path only: the MQTT services would slow it and prove nothing there."""
    autotest = load(make("dev").files["autotest.yaml"])
    assert not set(MQTT_SERVICES) & set(autotest["services"])
    assert not any(name.startswith(("mqtt_", "mosquitto_")) for name in autotest["secrets"])


@pytest.mark.parametrize("env", ENVS)
def test_the_broker_is_never_published_and_lives_on_the_internal_network(make, env):
    compose, stack = docs(make(env))
    values = render.load_values(env)
    for doc in (compose, stack):
        assert doc["networks"]["backend"]["internal"] is True
        broker = doc["services"]["mqtt"]
        assert "ports" not in broker and "expose" not in broker
        assert broker["networks"] == ["backend"]
        for name in ("historian", "processor", "fleet"):
            assert "ports" not in doc["services"][name]
            assert doc["services"][name]["networks"] == ["backend"]
        web = doc["services"]["web"]
        assert sorted(web["networks"]) == ["backend", "frontend"]
        assert [(p["target"], int(p["published"])) for p in web["ports"]] == [
            (values["web"]["port"], values["web"]["published_port"])]
    text = make(env).files["stack.yaml"].read_text()
    for port in (values["mqtt"]["port"], values["mqtt"]["ws_port"]):  # no published: line names a broker port
        assert f"published: {port}\n" not in text and f'published: "{port}"' not in text


@pytest.mark.parametrize("env", ENVS)
def test_secrets_each_service_gets_and_nothing_more(make, env):
    result = make(env)
    values = render.load_values(env)
    auth = values["influxdb"]["auth"]
    want = {
        "mqtt": {"mosquitto_passwd", "mosquitto_acl"},
        "fleet": {"mqtt_fleet_password"},
        "historian": {"mqtt_historian_password"} | ({"influxdb_writer_password"} if auth else set()),
        "processor": {"mqtt_processor_password"} | ({"influxdb_reader_password"} if auth else set()),
        "web": {"mqtt_web_password"},
    }
    compose, stack = docs(result)
    for doc in (compose, stack):
        for name, names in want.items():
            got = {s["source"] for s in doc["services"][name]["secrets"]}
            assert got == names, (name, got)
            for s in doc["services"][name]["secrets"]:
                assert s["target"] == s["source"]  # /run/secrets/<name>
            assert set(names) <= set(doc["secrets"])
    for name in want["mqtt"] | {f"mqtt_{r}_password" for r in mqtt_auth.ROLES}:
        assert stack["secrets"][name]["name"] == result.swarm_secret_names[name]
        assert compose["secrets"][name] == {"environment": secrets.compose_variable(name)}


@pytest.mark.parametrize("env", ENVS)
def test_client_settings_follow_the_contract(make, env):
    values = render.load_values(env)
    compose, stack = docs(make(env))
    mqtt = values["mqtt"]
    for doc in (compose, stack):
        s = doc["services"]
        for name in ("fleet", "historian", "processor"):
            e = s[name]["environment"]
            assert e["MQTT_HOST"] == "mqtt" and e["MQTT_PORT"] == str(mqtt["port"])
            assert e["MQTT_USERNAME"] == mqtt["users"][name]
            assert e["MQTT_PASSWORD_FILE"] == f"/run/secrets/mqtt_{name}_password"
            assert e["MQTT_CLIENT_ID"] == f"{values['project']}-{name}"
            assert not any("PASSWORD" in k and not k.endswith("_FILE") for k in e)  # never a value
        h, p = s["historian"]["environment"], s["processor"]["environment"]
        assert h["HISTORIAN_BATCH_MAX"] == str(values["historian"]["batch_max"])
        assert h["HISTORIAN_BATCH_MS"] == str(values["historian"]["batch_ms"])
        assert p["PROCESSOR_WINDOW"] == str(values["processor"]["window"])
        assert p["PROCESSOR_PUBLISH_EVERY"] == str(values["processor"]["publish_every"])
        assert s["fleet"]["environment"]["FLEET_INTERVAL"] == str(values["fleet"]["interval"])
        api_env = s["api"]["environment"]
        for e, role in ((h, "writer"), (p, "reader")):
            for key in ("INFLUXDB_URL", "INFLUXDB_DB", "INFLUXDB_RP", "INFLUXDB_MEASUREMENT"):
                assert e[key] == api_env[key]
            assert e["INFLUXDB_USER"] == values["influxdb"]["users"][role]
            assert e["INFLUXDB_PASSWORD_FILE"] == f"/run/secrets/influxdb_{role}_password"
        assert s["web"]["environment"] == {
            "WEB_PORT": str(values["web"]["port"]), "MQTT_WS_UPSTREAM": f"mqtt:{mqtt['ws_port']}",
            "MQTT_WEB_USERNAME": mqtt["users"]["web"], "MQTT_WEB_PASSWORD_FILE": "/run/secrets/mqtt_web_password"}


def test_compose_start_order_and_profiles(make):
    compose = load(make("dev").files["compose.yaml"])
    s = compose["services"]
    healthy = {"condition": "service_healthy"}
    assert s["historian"]["depends_on"] == s["processor"]["depends_on"] == {"api": healthy, "mqtt": healthy}
    assert s["fleet"]["depends_on"] == {"mqtt": healthy} and s["web"]["depends_on"] == {"mqtt": healthy}
    assert s["fleet"]["profiles"] == ["simulator"]
    assert all("profiles" not in s[n] for n in ("mqtt", "historian", "processor", "web"))
    for name in ("historian", "processor", "fleet"):  # built by the api / simulator services
        assert "build" not in s[name] and s[name]["pull_policy"] == "never"
    for name, folder in (("mqtt", "images/mosquitto"), ("web", "web")):
        assert s[name]["build"]["context"].endswith(folder)
        assert "secrets" not in s[name]["build"]  # apt over plain http: no CA bundle needed


@pytest.mark.parametrize("env", ENVS)
def test_the_broker_configuration_is_rendered_and_mounted(make, tmp_path, env):
    result = make(env)
    values = render.load_values(env)
    conf_path = result.config_files[render.MOSQUITTO_CONF_KEY]
    assert conf_path == tmp_path / "out" / "mosquitto.conf"
    conf = conf_path.read_text()
    lines = set(conf.splitlines())
    assert {"allow_anonymous false", "password_file /run/secrets/mosquitto_passwd",
            "acl_file /run/secrets/mosquitto_acl", f"persistence_location {render.MOSQUITTO_DATA_DIR}/",
            f"listener {values['mqtt']['port']}", f"listener {values['mqtt']['ws_port']}",
            f"max_inflight_messages {values['mqtt']['max_inflight_messages']}"} <= lines
    assert not any(line.startswith("user ") for line in lines)  # runs as the image's user, never switches
    assert "mosquitto.conf" in "\n".join(result.lines())
    compose, stack = docs(result)
    assert compose["configs"]["mosquitto_conf"] == {"file": "mosquitto.conf"}  # beside compose.yaml
    assert stack["configs"]["mosquitto_conf"] == {"name": result.swarm_config_names["mosquitto_conf"],
                                                  "file": "mosquitto.conf"}
    for doc in (compose, stack):
        mounts = doc["services"]["mqtt"]["configs"]
        assert [(c["source"], c["target"]) for c in mounts] == [("mosquitto_conf", "/etc/mosquitto/mosquitto.conf")]
        volumes = doc["services"]["mqtt"]["volumes"]
        assert {"type": "volume", "source": "mqtt-data", "target": render.MOSQUITTO_DATA_DIR} in volumes


def test_hashed_config_name_follows_the_content(make):
    first = make("test").swarm_config_names["mosquitto_conf"]
    again = make("test").swarm_config_names["mosquitto_conf"]
    assert first == again  # deterministic: a redeploy without change does not roll the broker
    changed = make("test", {"mqtt.max_inflight_messages": 2000})
    assert changed.swarm_config_names["mosquitto_conf"] != first
    assert changed.swarm_config_names["mosquitto_conf"].startswith("iot-test_mosquitto_conf_")
    digest = secrets.content_hash(changed.config_files["mosquitto_conf"])
    assert changed.swarm_config_names["mosquitto_conf"].endswith("_" + digest)
    stack = load(changed.files["stack.yaml"])
    assert stack["configs"]["mosquitto_conf"]["name"] == changed.swarm_config_names["mosquitto_conf"]


@pytest.mark.parametrize("env", ENVS)
def test_hardening_of_the_mqtt_services(make, env):
    values = render.load_values(env)
    compose, stack = docs(make(env))
    limits = {"mqtt": values["mqtt"]["deploy"]["resources"]["limits"], **{
        n: values[n]["resources"]["limits"] for n in ("historian", "processor", "fleet", "web")}}
    users = {"mqtt": values["mqtt"]["user"], **{n: values[n]["user"] for n in ("historian", "processor", "fleet", "web")}}
    assert users["mqtt"] == "10002:10002"  # images/mosquitto/Dockerfile's user
    for name in MQTT_SERVICES:
        c, s = compose["services"][name], stack["services"][name]
        for svc in (c, s):
            assert svc["user"] == users[name] and svc["cap_drop"] == ["ALL"]
            assert svc["logging"]["options"]["max-size"]
        assert c["security_opt"] == ["no-new-privileges:true"]
        assert "security_opt" not in s  # Swarm ignores it
        assert s["read_only"] is True  # Swarm mounts the secrets itself: read-only everywhere
        assert {"type": "tmpfs", "target": "/tmp", "tmpfs": {"size": values["hardening"]["tmp_size_mb"] * 1048576}} \
            in s["volumes"]
        assert c["deploy"]["resources"]["limits"] == {"cpus": str(limits[name]["cpus"]), "memory": limits[name]["memory"],
                                                      "pids": limits[name]["pids"]}
        assert s["deploy"]["resources"]["limits"] == {"cpus": str(limits[name]["cpus"]), "memory": limits[name]["memory"]}
        assert c["restart"] == "unless-stopped"


def test_hardening_read_only_in_compose_with_file_secrets(make):
    compose = load(make("dev", {"compose.secrets": "file"}).files["compose.yaml"])
    for name in MQTT_SERVICES:
        assert compose["services"][name]["read_only"] is True, name
        assert any(v.get("target") == "/tmp" for v in compose["services"][name]["volumes"]), name


@pytest.mark.parametrize("env", ENVS)
def test_swarm_deploy_blocks(make, env):
    values = render.load_values(env)
    stack = load(make(env).files["stack.yaml"])["services"]
    broker = stack["mqtt"]["deploy"]
    assert broker["replicas"] == 1 and broker["update_config"]["order"] == "stop-first"
    assert broker["placement"]["constraints"] == ["node.labels.iot.mqtt == true"]
    assert broker["endpoint_mode"] == values["swarm"]["endpoint_mode"]
    for name in ("historian", "processor"):  # a fixed client id: never two at once
        assert stack[name]["deploy"]["replicas"] == 1 and stack[name]["deploy"]["update_config"]["order"] == "stop-first"
    assert stack["fleet"]["deploy"]["replicas"] == values["fleet"]["replicas"]
    web = stack["web"]
    host = values["swarm"]["publish_mode"] == "host"
    assert web["ports"][0]["mode"] == values["swarm"]["publish_mode"]
    assert web["deploy"]["update_config"]["order"] == ("stop-first" if host else "start-first")
    assert ("max_replicas_per_node" in web["deploy"].get("placement", {})) is host
    for name in MQTT_SERVICES:
        d = stack[name]["deploy"]
        assert d["update_config"]["failure_action"] == "rollback" and d["restart_policy"]["condition"] == "any"
        assert d["labels"]["iot.component"] == name


def test_healthchecks(make):
    compose, stack = docs(make("dev"))
    for doc in (compose, stack):
        s = doc["services"]
        assert s["mqtt"]["healthcheck"]["test"][:3] == ["CMD", "bash", "-c"]
        assert s["web"]["healthcheck"]["test"][:3] == ["CMD", "bash", "-c"]
        assert "GET /healthz" in s["web"]["healthcheck"]["test"][3] and "/8080" in s["web"]["healthcheck"]["test"][3]
        assert s["historian"]["healthcheck"]["test"] == ["CMD", "python", "-m", "iot_stream", "check", "historian"]
        assert s["fleet"]["healthcheck"] == {"disable": True}  # a client that keeps its readings and retries
    # the processor: connected to the broker is what `up --wait` waits for (Compose); Swarm would kill it
    # while the broker is away, so there the api image's HTTP check is only switched off
    assert stack["services"]["processor"]["healthcheck"] == {"disable": True}
    probe = compose["services"]["processor"]["healthcheck"]["test"]
    assert probe[:3] == ["CMD", "python3", "-c"] and "/proc/net/tcp" in probe[3] and "% 1883" in probe[3]


def _probe_against(script: str, answer: bytes) -> tuple[int, bytes]:
    """Run the broker's healthcheck command (bash) against a fake broker on loopback that answers
    ANSWER to whatever it gets; returns (exit code, bytes the probe sent)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    received = bytearray()

    def serve():
        conn, _ = server.accept()
        with conn:
            conn.settimeout(5)
            while len(received) < 14:  # bash's printf may write the packet in pieces (at NUL bytes)
                chunk = conn.recv(64)
                if not chunk:
                    break
                received.extend(chunk)
            conn.sendall(answer)
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    script = script.replace("/dev/tcp/127.0.0.1/1883", f"/dev/tcp/127.0.0.1/{port}")
    rc = subprocess.run(["bash", "-c", script], timeout=10, check=False).returncode
    t.join(5)
    server.close()
    return rc, bytes(received)


def test_broker_probe_sends_an_mqtt_connect_and_wants_anonymous_refused(make):
    compose = load(make("dev").files["compose.yaml"])
    script = compose["services"]["mqtt"]["healthcheck"]["test"][3].replace("$$", "$")  # Compose's $ escape
    rc, sent = _probe_against(script, bytes([0x20, 0x02, 0x00, 0x05]))  # CONNACK: not authorised
    assert rc == 0
    # MQTT 3.1.1 CONNECT, clean session, no client id, no credentials
    assert sent == bytes([0x10, 0x0C, 0x00, 0x04]) + b"MQTT" + bytes([0x04, 0x02, 0x00, 0x0A, 0x00, 0x00])
    assert _probe_against(script, bytes([0x20, 0x02, 0x00, 0x00]))[0] != 0  # a broker that lets anyone in
    assert _probe_against(script, b"HTTP")[0] != 0  # not a broker


@pytest.mark.parametrize("key, value, words", [
    ("historian.batch_max", 5000, ["historian.batch_max", "mqtt.max_inflight_messages (1000)", "acks whole batches"]),
    ("mqtt.max_inflight_messages", 10, ["historian.batch_max", "mqtt.max_inflight_messages (10)"]),
    ("mqtt.deploy.replicas", 2, ["mqtt.deploy.replicas", "must be 1"]),
    ("mqtt.ws_port", 1883, ["mqtt.ws_port", "must differ from mqtt.port"]),
    ("web.published_port", 1337, ["web.published_port", "already published by api.published_port"]),
    ("fleet.replicas", 2, ["fleet.replicas", "between 0 and 1"]),
    ("mqtt.user", "0:0", ["mqtt.user", "must not be root"]),
])
def test_values_errors_are_one_clear_line(make, key, value, words):
    with pytest.raises(render.RenderError) as err:
        make("dev", {key: value})
    message = str(err.value)
    assert "\n" not in message and message.startswith("values error:")
    for word in words:
        assert word in message, message


def test_no_fleet_in_the_stack_where_real_stations_publish(make):
    stack = load(make("prod", {"fleet.replicas": 0}).files["stack.yaml"])
    assert stack["services"]["fleet"]["deploy"]["replicas"] == 0
