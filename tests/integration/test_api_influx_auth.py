"""InfluxDB with auth on (issue 4): the api, given the admin's credentials, creates the admin at
first start, then the writer (itself) and the reader (Grafana), with their grants; rotated
passwords take effect at the next start; no password ever reaches a log.

A real influxd with `auth-enabled = true` and no user at first start (Debian's package has no
first-start user creation of its own), and the api as a real process.
"""
from __future__ import annotations

import json
import signal

import pytest
from harness import InfluxServer, wait_until
from iot_api import config

# Quotes, backslashes and spaces: the passwords travel inside InfluxQL string literals.
ADMIN = ("admin", "adm'in \\pw\"1-" + "a" * 20)
WRITER = ("iot_writer", "wr'iter\\' pw-" + "b" * 20)
READER = ("iot_reader", "rea\\der' pw-" + "c" * 20)
READING = {"type": "temp", "value": 21.5, "sensor_id": "auth-1"}


@pytest.fixture
def auth_influx():
    server = InfluxServer(auth=True)
    yield server
    server.close()


def _env(tmp_path, admin=ADMIN, writer=WRITER, reader=READER) -> dict:
    """Users by name, passwords from files (*_FILE), as in the stacks."""
    env = {}
    tmp_path.mkdir(exist_ok=True)
    for (user_var, pw_var), (name, password) in (
            (("INFLUXDB_ADMIN_USER", "INFLUXDB_ADMIN_PASSWORD"), admin),
            (("INFLUXDB_USER", "INFLUXDB_PASSWORD"), writer),
            (("INFLUXDB_READER_USER", "INFLUXDB_READER_PASSWORD"), reader)):
        path = tmp_path / pw_var.lower()
        path.write_text(password + "\n")
        env[user_var] = name
        env[pw_var + "_FILE"] = str(path)
    return env


def _no_secret_in(text: str, *passwords: str) -> None:
    for password in passwords:
        assert password not in text
        assert password.replace("\\", "\\\\").replace("'", "\\'") not in text  # nor quoted


def test_api_creates_admin_writer_reader_and_grants(start_api, auth_influx, tmp_path):
    api = start_api(env=_env(tmp_path), influx=auth_influx)
    assert api.post("/data", READING)[0] == 201

    users = {row[0]: row[1] for s in auth_influx.query("SHOW USERS", auth=ADMIN) for row in s["values"]}
    assert users == {"admin": True, "iot_writer": False, "iot_reader": False}
    grants = {name: auth_influx.query(f'SHOW GRANTS FOR "{name}"', auth=ADMIN)[0]["values"]
              for name in ("iot_writer", "iot_reader")}
    assert grants == {"iot_writer": [[api.db, "ALL PRIVILEGES"]], "iot_reader": [[api.db, "READ"]]}

    # The reader reads, and may not write; the writer may not administer.
    assert auth_influx.count(api.db, auth=READER) == 1
    status, body = auth_influx.write(api.db, "data,sensor_id=x,type=temp value=1", auth=READER)
    assert status == 403, body
    with pytest.raises(RuntimeError, match="requires admin privilege"):
        auth_influx.query('CREATE DATABASE "not_yours"', auth=WRITER)
    assert auth_influx.count(api.db, auth=WRITER) == 1
    # Without credentials, nothing.
    assert auth_influx.write(api.db, "data,sensor_id=x,type=temp value=1")[0] == 401
    # The api reads with the writer's ALL privilege.
    status, _, body = api.get("/data?sensor_id=auth-1")
    assert status == 200 and body["count"] == 1

    api.stop()
    _no_secret_in(api.log(), ADMIN[1], WRITER[1], READER[1])
    _no_secret_in(auth_influx.log(), ADMIN[1], WRITER[1], READER[1])


def test_several_workers_bootstrap_at_once(start_api, auth_influx, tmp_path):
    """Each worker process runs the setup: concurrent CREATE USER / GRANT must all succeed."""
    api = start_api(env={**_env(tmp_path), "API_WORKERS": "3"}, influx=auth_influx)
    # /readyz answered by one worker says nothing of the others: wait until each logged its setup.
    wait_until(lambda: api.log().count('"msg":"InfluxDB ready"') == 3, 15, "every worker ready")
    for i in range(12):
        assert api.post("/data", {**READING, "sensor_id": f"w-{i}"})[0] == 201
    assert auth_influx.count(api.db, auth=READER) == 12
    assert "retrying" not in api.log(), api.log()


def test_wrong_admin_password_not_ready_with_clear_log(start_api, auth_influx, tmp_path):
    first = start_api(env=_env(tmp_path / "ok"), influx=auth_influx)
    first.stop()
    wrong = ("admin", "not-the-admin-password-" + "d" * 16)
    api = start_api(env={**_env(tmp_path / "bad", admin=wrong), "API_STARTUP_BACKOFF_MAX": "500ms"},
                    influx=auth_influx, wait_ready=False)
    wait_until(lambda: "refused the api's credentials" in api.log(), 15, "the credentials error logged")
    status, _, body = api.get("/readyz")
    assert status == 503 and body["ready"] is False
    assert api.post("/data", READING)[0] == 503
    line = next(json.loads(ln) for ln in api.log().splitlines()
                if "refused the api's credentials" in ln)
    assert line["level"] == "error"
    assert "INFLUXDB_ADMIN_PASSWORD" in line["error"] and "'admin'" in line["error"]
    api.stop()
    _no_secret_in(api.log(), wrong[1], ADMIN[1], WRITER[1], READER[1])


def test_rotated_passwords_take_effect_at_restart(start_api, auth_influx, tmp_path):
    api = start_api(env=_env(tmp_path / "v1"), influx=auth_influx)
    assert api.post("/data", READING)[0] == 201
    assert api.stop(signal.SIGTERM) == 0

    writer2 = (WRITER[0], "rotated-writer-" + "e" * 20)
    reader2 = (READER[0], "rotated-reader-" + "f" * 20)
    api = start_api(env=_env(tmp_path / "v2", writer=writer2, reader=reader2), influx=auth_influx,
                    db=api.db)
    assert api.post("/data", {**READING, "sensor_id": "auth-2"})[0] == 201
    assert auth_influx.count(api.db, auth=reader2) == 2
    for old in (WRITER, READER):
        with pytest.raises(RuntimeError, match="authorization failed"):
            auth_influx.count(api.db, auth=old)
    assert "InfluxDB user password set" in api.log()
    api.stop()
    _no_secret_in(api.log(), writer2[1], reader2[1], ADMIN[1])


@pytest.mark.parametrize("env, message", [
    ({"INFLUXDB_ADMIN_USER": "admin", "INFLUXDB_ADMIN_PASSWORD": "x" * 20},
     "INFLUXDB_ADMIN_USER needs INFLUXDB_USER"),
    ({"INFLUXDB_ADMIN_USER": "admin"}, "INFLUXDB_ADMIN_USER and INFLUXDB_ADMIN_PASSWORD"),
    ({"INFLUXDB_USER": "w", "INFLUXDB_PASSWORD": "p" * 20, "INFLUXDB_READER_USER": "r",
      "INFLUXDB_READER_PASSWORD": "q" * 20}, "INFLUXDB_READER_USER needs INFLUXDB_ADMIN_USER"),
    ({"INFLUXDB_USER": "same", "INFLUXDB_PASSWORD": "p" * 20, "INFLUXDB_ADMIN_USER": "same",
      "INFLUXDB_ADMIN_PASSWORD": "q" * 20}, "must differ"),
    ({"INFLUXDB_USER": "w", "INFLUXDB_PASSWORD": "line1\nline2-secret"},
     "INFLUXDB_PASSWORD: must not contain control characters (value not shown)"),
])
def test_bad_user_settings_refused(env, message):
    with pytest.raises(config.ConfigError) as info:
        config.load(env)
    assert message in str(info.value)
    assert "line2-secret" not in str(info.value)
