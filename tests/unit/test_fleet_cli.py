"""The fleet's flags and environment: the course's -h/-p, MQTT_* like the api image, FLEET_*, and bad
input as one line and exit 2 (never a traceback), in process and as a real command."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from iot_simulator.fleet.__main__ import main
from iot_simulator.fleet.settings import UsageError, parse


def test_defaults():
    c = parse([], {})
    assert (c.host, c.port, c.client_id, c.username, c.password) == ("localhost", 1883, "iot-fleet", None, None)
    assert c.interval == 1.0 and c.duration is None and c.count is None and c.stations is None
    assert c.faults and c.seed is None and c.ack_log is None and c.drain_timeout == 10.0


def test_course_flags_env_and_precedence(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    env = {"MQTT_HOST": "mosquitto", "MQTT_PORT": "1884", "MQTT_USERNAME": "iot_fleet", "MQTT_PASSWORD_FILE": str(pw),
           "MQTT_CLIENT_ID": "fleet-2", "FLEET_INTERVAL": "0.5", "FLEET_DURATION": "60", "FLEET_COUNT": "10",
           "FLEET_STATIONS": "5", "FLEET_SEED": "7", "FLEET_NO_FAULTS": "1"}
    c = parse([], env)
    assert (c.host, c.port, c.username, c.password, c.client_id) == ("mosquitto", 1884, "iot_fleet", "s3cret", "fleet-2")
    assert (c.interval, c.duration, c.count, c.stations, c.seed, c.faults) == (0.5, 60.0, 10, 5, 7, False)
    c = parse(["-h", "broker", "-p", "1", "--interval", "2", "--count", "3", "--stations", "77"], env)
    assert (c.host, c.port, c.interval, c.count, c.stations) == ("broker", 1, 2.0, 3, 77)


@pytest.mark.parametrize(("argv", "env", "says"), [
    (["--interval", "0"], {}, "--interval='0': must be at least 0.01"),
    (["--interval", "fast"], {}, "must be a number"),
    (["--interval", "nan"], {}, "must be finite"),
    (["-p", "70000"], {}, "--port='70000': must be at most 65535"),
    (["--count", "0"], {}, "--count='0'"),
    (["--duration", "0"], {}, "greater than 0"),
    (["--stations", "x"], {}, "must be an integer"),
    (["--seed", "1.5"], {}, "must be an integer"),
    (["--frobnicate"], {}, "unrecognized arguments"),
    (["-h"], {}, "expected one argument"),  # -h is the host, like the course's script
    ([], {"MQTT_PORT": "mqtt"}, "MQTT_PORT='mqtt'"),
    ([], {"FLEET_INTERVAL": "-1"}, "FLEET_INTERVAL='-1'"),
    ([], {"FLEET_NO_FAULTS": "maybe"}, "FLEET_NO_FAULTS"),
    ([], {"MQTT_USERNAME": "u", "MQTT_PASSWORD_FILE": "/nonexistent/pw"}, "MQTT_PASSWORD_FILE=/nonexistent/pw: cannot read"),
    ([], {"MQTT_PASSWORD": "p"}, "MQTT_USERNAME is not"),
    ([], {"MQTT_CLIENT_ID": " "}, "MQTT_CLIENT_ID"),
    (["-h", "a b"], {}, "not a host"),
    (["--ack-log", "/nonexistent/dir/ack.log"], {}, "--ack-log"),
])
def test_bad_input_is_a_usage_error(argv, env, says):
    with pytest.raises(UsageError) as exc:
        parse(argv, env)
    assert says in str(exc.value) and "\n" not in str(exc.value)


def test_empty_password_file(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("\n")
    with pytest.raises(UsageError, match="the file is empty"):
        parse([], {"MQTT_USERNAME": "u", "MQTT_PASSWORD_FILE": str(pw)})


def test_too_many_stations_exits_2(capsys, monkeypatch):
    for name in [k for k in os.environ if k.startswith(("MQTT_", "FLEET_"))]:
        monkeypatch.delenv(name)
    assert main(["--stations", "78"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "there are 77 stations" in err


def fleet(*argv, env=None):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "FLEET_"))}
    return subprocess.run([sys.executable, "-m", "iot_simulator.fleet", *argv], env=base | (env or {}),
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(("argv", "env"), [
    (["--interval", "soon"], None),
    ([], {"MQTT_USERNAME": "iot_fleet", "MQTT_PASSWORD_FILE": "/run/secrets/missing"}),
])
def test_bad_input_as_a_command_is_one_line_exit_2(argv, env):
    p = fleet(*argv, env=env)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("python -m iot_simulator.fleet: error: ")
    assert "Traceback" not in p.stderr


def test_help_is_double_dash_only():
    p = fleet("--help")
    assert p.returncode == 0 and "-h HOST, --host HOST" in p.stdout and "ODbL" in p.stdout
