"""Device authentication with a tokens file, and bad settings refused at start."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from harness import ROOT

WRITE = "w-" + "a" * 30
READ = "r-" + "b" * 30
READING = {"type": "temp", "value": 20, "sensor_id": "auth"}


@pytest.fixture
def tokens_file(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(f"# devices\nwrite {WRITE}\nread {READ}\n")
    path.chmod(0o600)
    return str(path)


def test_tokens_required_when_configured(start_api, tokens_file, influxdb):
    api = start_api(env={"API_TOKENS_FILE": tokens_file})
    assert api.post("/data", READING)[0] == 401
    status, headers, _ = api.post("/data", READING, headers={"Authorization": "Bearer wrong-token-123456"})
    assert status == 401 and headers.get("www-authenticate", "").startswith("Bearer")
    assert api.post("/data", READING, headers={"Authorization": f"Bearer {READ}"})[0] == 403
    assert api.post("/data", READING, headers={"Authorization": f"Basic {WRITE}"})[0] == 401
    assert influxdb.count(api.db) == 0
    assert api.post("/data", READING, headers={"Authorization": f"Bearer {WRITE}"})[0] == 201
    assert influxdb.count(api.db) == 1

    assert api.get("/data")[0] == 401
    assert api.get("/data", headers={"Authorization": f"Bearer {WRITE}"})[0] == 403
    status, _, body = api.get("/data", headers={"Authorization": f"Bearer {READ}"})
    assert status == 200 and body["count"] == 1
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):  # probes stay open
        assert api.get(path)[0] == 200
    assert WRITE not in api.log() and READ not in api.log()


def test_open_mode_says_so(api):
    assert "runs OPEN" in api.log()


def _run_api(env: dict) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "INFLUXDB_"))}
    full.update({"API_HOST": "127.0.0.1", "API_PORT": "1", **env})
    return subprocess.run([sys.executable, "-m", "iot_api"], env=full, cwd=ROOT, capture_output=True,
                          text=True, timeout=30)


@pytest.mark.parametrize("env, message", [
    ({"API_PORT": "http"}, "API_PORT='http': must be an integer"),
    ({"API_PORT": "70000"}, "API_PORT='70000': must be between 1 and 65535"),
    ({"INFLUXDB_URL": "influxdb:8086"}, "INFLUXDB_URL='influxdb:8086': must be an http(s) URL"),
    ({"INFLUXDB_URL": "http://influxdb:99999"}, "INFLUXDB_URL: Port out of range 0-65535"),
    ({"INFLUXDB_URL": "http://influxdb:port"}, "INFLUXDB_URL: Port could not be cast to integer"),
    ({"INFLUXDB_URL": "http://[::1:8086"}, "INFLUXDB_URL: Invalid IPv6 URL"),
    ({"INFLUXDB_DB": "iot; DROP"}, "INFLUXDB_DB='iot; DROP'"),
    ({"API_RETENTION": "30 days"}, "API_RETENTION='30 days': must be a duration"),
    ({"API_RETENTION": "10m"}, "InfluxDB needs at least 1h"),
    ({"API_GROUP_COMMIT": "maybe"}, "API_GROUP_COMMIT='maybe': must be true or false"),
    ({"API_MIN_TS": "2000"}, "API_MIN_TS='2000'"),
    ({"INFLUXDB_PASSWORD_FILE": "/nonexistent/pw"}, "INFLUXDB_PASSWORD_FILE='/nonexistent/pw': cannot read"),
    ({"INFLUXDB_USER": "writer"}, "INFLUXDB_USER and INFLUXDB_PASSWORD"),
    ({"API_TOKENS_FILE": "/nonexistent/tokens"}, "API_TOKENS_FILE='/nonexistent/tokens': cannot read"),
    ({"API_LOG_LEVEL": "loud"}, "API_LOG_LEVEL='loud'"),
])
def test_bad_settings_exit_2_with_one_clear_line(env, message):
    proc = _run_api(env)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("url", ["http://writer:s3cret-pw@influxdb:8086", "htp://writer:s3cret-pw@influxdb:8086",
                                 "http://writer:s3cret-pw@influxdb:99999"])
def test_credentials_in_the_influxdb_url_are_refused_without_echoing_them(url):
    proc = _run_api({"INFLUXDB_URL": url})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "s3cret-pw" not in proc.stderr and "INFLUXDB_URL" in proc.stderr


@pytest.mark.parametrize("content, message", [
    ("", "no tokens in it"),
    ("write short\n", "16-256 printable characters"),
    (f"admin {WRITE}\n", "unknown scope"),
    (f"write {WRITE} extra\n", "expected '<scopes> <token>'"),
])
def test_bad_tokens_file_exits_2(tmp_path, content, message):
    path = tmp_path / "tokens"
    path.write_text(content)
    proc = _run_api({"API_TOKENS_FILE": str(path)})
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_password_from_file_is_used(tmp_path):
    """*_FILE secrets are read; config.load() is the one place that does it."""
    from iot_api import config

    (tmp_path / "pw").write_text("s3cret-from-file\n")
    settings = config.load({"INFLUXDB_USER": "writer", "INFLUXDB_PASSWORD_FILE": str(tmp_path / "pw")})
    assert settings.influxdb_password == "s3cret-from-file"
    assert settings.port == 1337 and settings.influxdb_url == "http://influxdb:8086" and settings.influxdb_db == "iot"
