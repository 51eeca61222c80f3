"""web/docker-entrypoint.sh without a container: a bad setting is one clear line and exit 64, good
settings render a configuration nginx accepts and a config.json that is valid JSON whatever the password
holds. The page itself, behind a real nginx and broker, is tests/integration/test_web_page.py."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@pytest.fixture
def settings(tmp_path):
    password = tmp_path / "mqtt_web_password"
    password.write_text("s3cret\n")
    run = tmp_path / "run"
    run.mkdir()
    return {"PATH": os.environ["PATH"], "WEB_PORT": "8080", "MQTT_WS_UPSTREAM": "mosquitto:9001",
            "MQTT_WEB_USERNAME": "iot_web", "MQTT_WEB_PASSWORD_FILE": str(password),
            "WEB_ROOT": str(WEB / "site"), "WEB_TEMPLATE": str(WEB / "nginx.conf.template"),
            "WEB_RUN_DIR": str(run), "WEB_NGINX": "true"}  # `true` instead of nginx: render, then exit 0


def entrypoint(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(WEB / "docker-entrypoint.sh")], env=env, capture_output=True, text=True, timeout=10)


@pytest.mark.parametrize(("change", "named"), [
    ({"WEB_PORT": None}, "WEB_PORT is not set"),
    ({"WEB_PORT": "80a"}, "WEB_PORT='80a'"),
    ({"WEB_PORT": "70000"}, "WEB_PORT='70000'"),
    ({"MQTT_WS_UPSTREAM": None}, "MQTT_WS_UPSTREAM is not set"),
    ({"MQTT_WS_UPSTREAM": "mosquitto"}, "MQTT_WS_UPSTREAM='mosquitto' is not host:port"),
    ({"MQTT_WS_UPSTREAM": "mos quitto:9001"}, "is not host:port"),
    ({"MQTT_WS_UPSTREAM": "mosquitto:90x"}, "is not host:port"),
    ({"MQTT_WEB_USERNAME": None}, "MQTT_WEB_USERNAME is not set"),
    ({"MQTT_WEB_PASSWORD_FILE": "/nonexistent/password"}, "MQTT_WEB_PASSWORD_FILE='/nonexistent/password'"),
    ({"WEB_ROOT": "relative/site"}, "WEB_ROOT='relative/site' is not an absolute path"),
    ({"WEB_ROOT": "/tmp"}, "has no index.html"),
    ({"WEB_RUN_DIR": "/nonexistent"}, "WEB_RUN_DIR='/nonexistent' is not a writable folder"),
    ({"WEB_RESOLVER": "8.8.8.8 valid=1s"}, "WEB_RESOLVER='8.8.8.8 valid=1s' is not an address"),
    ({"WEB_NGINX": "/nonexistent/nginx"}, "WEB_NGINX='/nonexistent/nginx' not found"),
])
def test_a_bad_setting_is_one_clear_line_and_exit_64(settings, change, named):
    env = {k: v for k, v in {**settings, **change}.items() if v is not None}
    result = entrypoint(env)
    assert result.returncode == 64, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("web: ") and named in lines[0], result.stderr
    assert not (Path(settings["WEB_RUN_DIR"]) / "nginx.conf").exists()


def test_an_empty_or_multiline_password_is_refused(settings):
    path = Path(settings["MQTT_WEB_PASSWORD_FILE"])
    for text in ("", "\n", "one\ntwo\n", "tab\there\n"):
        path.write_text(text)
        result = entrypoint(settings)
        assert result.returncode == 64 and "MQTT_WEB_PASSWORD_FILE" in result.stderr, (text, result)


@pytest.mark.parametrize("password", ["s3cret", 'a"quote\\and backslash', "àccénts €", "$(touch /tmp/x) `id` ${HOME}"])
def test_config_json_holds_the_exact_credentials(settings, password):
    Path(settings["MQTT_WEB_PASSWORD_FILE"]).write_text(password + "\n")
    result = entrypoint(settings)
    assert result.returncode == 0, result.stderr
    config = Path(settings["WEB_RUN_DIR"]) / "config.json"
    assert json.loads(config.read_text(encoding="utf-8")) == {"username": "iot_web", "password": password}
    assert config.stat().st_mode & 0o777 == 0o644  # nginx's workers may run as another user


def test_the_rendered_configuration_is_complete_and_nginx_accepts_it(settings):
    settings.update(MQTT_WS_UPSTREAM="127.0.0.1:9001", WEB_BIND="127.0.0.1")
    assert entrypoint(settings).returncode == 0
    conf = (Path(settings["WEB_RUN_DIR"]) / "nginx.conf").read_text()
    assert "${WEB_" not in conf and "${MQTT_" not in conf  # every placeholder replaced
    assert "listen 127.0.0.1:8080;" in conf and "set $mqtt_upstream 127.0.0.1:9001;" in conf
    assert f"root {WEB / 'site'};" in conf and f"pid {settings['WEB_RUN_DIR']}/nginx.pid;" in conf
    assert "$http_upgrade" in conf and "${request_time}" in conf  # nginx's own variables untouched
    # The broker's name is resolved per connection, by the container's DNS (resolv.conf's first nameserver).
    nameservers = [line.split()[1] for line in Path("/etc/resolv.conf").read_text().splitlines()
                   if line.split()[:1] == ["nameserver"]] if Path("/etc/resolv.conf").exists() else []
    resolver = nameservers[0] if nameservers else "127.0.0.11"
    assert f"resolver {f'[{resolver}]' if ':' in resolver else resolver} valid=10s ipv6=off;" in conf
    settings["WEB_RESOLVER"] = "::1"
    assert entrypoint(settings).returncode == 0
    assert "resolver [::1] valid=10s" in (Path(settings["WEB_RUN_DIR"]) / "nginx.conf").read_text()
    settings["WEB_RESOLVER"] = "127.0.0.11"
    assert entrypoint(settings).returncode == 0
    if not os.path.exists(NGINX):
        pytest.skip(f"{NGINX} not found (Debian's nginx-light): the syntax check needs it")
    check = subprocess.run([NGINX, "-t", "-e", "stderr", "-c", str(Path(settings["WEB_RUN_DIR"]) / "nginx.conf")],
                           capture_output=True, text=True, timeout=10)
    assert check.returncode == 0, check.stderr
