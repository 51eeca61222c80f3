"""Simulator command line: the course's `-h HOST -p PORT`, env variables, and usage errors (exit 2)."""
from __future__ import annotations

import subprocess
import sys

import pytest
from iot_simulator.__main__ import main
from iot_simulator.cli import UsageError, parse_args


def cfg(*argv, env=None):
    return parse_args(list(argv), env=env or {})


def test_no_arguments_is_the_courses_simulator():
    c = cfg()
    assert c.url == "http://localhost:1337/data"
    assert c.sensor_ids == [123]  # an integer on the wire, like the course's payload
    assert [t.name for t in c.types] == ["temp"]
    assert c.interval == 1.0 and c.devices == 1 and c.batch == 1
    assert c.count is None and c.duration is None and not c.bounded  # forever
    assert c.token is None and c.seed is None and not c.uniform


def test_course_invocation_dash_h_dash_p():
    c = cfg("-h", "collector", "-p", "1337")
    assert c.url == "http://collector:1337/data"
    assert cfg("-h", "::1", "-p", "8080").url == "http://[::1]:8080/data"
    assert cfg("--host", "10.0.0.5", "--port", "9").url == "http://10.0.0.5:9/data"


@pytest.mark.parametrize(("given", "expected"), [
    ("http://api:1337", "http://api:1337/data"),
    ("http://api:1337/", "http://api:1337/data"),
    ("http://api:1337/data", "http://api:1337/data"),
    ("https://iot.example/prefix", "https://iot.example/prefix/data"),
])
def test_url_overrides_host_and_port(given, expected):
    assert cfg("--url", given).url == expected
    assert cfg("-h", "x", "-p", "1", "--url", given).url == expected


def test_many_devices_get_prefixed_ids():
    c = cfg("--devices", "3")
    assert c.sensor_ids == ["sim-0001", "sim-0002", "sim-0003"]
    assert cfg("--devices", "12000").sensor_ids[-1] == "sim-12000"
    assert cfg("--devices", "2", "--sensor-prefix", "lab.").sensor_ids == ["lab.0001", "lab.0002"]
    assert cfg("--sensor-prefix", "pi-").sensor_ids == ["pi-0001"]
    assert cfg("--sensor-id", "kitchen").sensor_ids == ["kitchen"]
    assert cfg("--sensor-id", "007").sensor_ids == ["007"]  # leading zero: keep the string


def test_types_count_duration_batch_seed():
    c = cfg("--types", "temp,pressure,humidity", "--count", "5", "--duration", "2.5", "--batch", "10",
            "--seed", "42", "--interval", "0", "--uniform", "--json")
    assert [t.name for t in c.types] == ["temp", "pressure", "humidity"]
    assert (c.count, c.duration, c.batch, c.seed, c.interval) == (5, 2.5, 10, 42, 0.0)
    assert c.uniform and c.json and c.bounded


def test_environment_variables_and_flags_win():
    env = {"SIMULATOR_URL": "http://api:1337", "SIMULATOR_DEVICES": "50", "SIMULATOR_INTERVAL": "0.5",
           "SIMULATOR_TYPES": "temp,humidity", "SIMULATOR_UNIFORM": "yes", "SIMULATOR_DRAIN_TIMEOUT": "7",
           "SIMULATOR_JSON": "0"}
    c = cfg(env=env)
    assert c.url == "http://api:1337/data" and c.devices == 50 and c.interval == 0.5
    assert [t.name for t in c.types] == ["temp", "humidity"] and c.uniform and not c.json
    assert c.drain_timeout == 7
    c = cfg("--devices", "2", "--interval", "3", env=env)
    assert c.devices == 2 and c.interval == 3
    # -h/-p on the command line beat SIMULATOR_URL from the environment
    assert cfg("-h", "localhost", "-p", "8000", env=env).url == "http://localhost:8000/data"
    assert cfg(env={"SIMULATOR_HOST": "db", "SIMULATOR_PORT": "81"}).url == "http://db:81/data"


def test_token_from_flag_file_and_environment(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("s3cret-token\n")
    assert cfg("--token", "abc").token == "abc"
    assert cfg("--token-file", str(secret)).token == "s3cret-token"
    assert cfg(env={"SIMULATOR_TOKEN_FILE": str(secret)}).token == "s3cret-token"
    assert cfg(env={"SIMULATOR_TOKEN": "envtok"}).token == "envtok"
    assert cfg("--token", "flag", env={"SIMULATOR_TOKEN_FILE": str(secret)}).token == "flag"
    assert cfg("--token-file", str(secret), env={"SIMULATOR_TOKEN": "envtok"}).token == "s3cret-token"
    with pytest.raises(UsageError, match="one or the other"):
        cfg("--token", "a", "--token-file", str(secret))
    with pytest.raises(UsageError, match="No such file"):
        cfg("--token-file", str(tmp_path / "missing"))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(UsageError, match="empty"):
        cfg("--token-file", str(tmp_path / "empty"))


@pytest.mark.parametrize(("argv", "needle"), [
    (["--devices", "0"], "--devices: must be at least 1"),
    (["--devices", "many"], "--devices: must be an integer"),
    (["--interval", "-1"], "--interval: must be at least 0"),
    (["--interval", "nan"], "--interval"),
    (["--count", "0"], "--count: must be at least 1"),
    (["--duration", "0"], "--duration: must be greater than 0"),
    (["-p", "70000"], "-p/--port: must be at most 65535"),
    (["-p", "http"], "-p/--port: must be an integer"),
    (["--url", "ftp://api:1337"], "--url"),
    (["--url", "api:1337"], "--url"),
    (["--url", "http://api:99999"], "--url"),
    (["--url", "http://api:1337/?x=1"], "--url"),
    (["-h", "http://api"], "--host"),
    (["--types", "temp;pressure"], "--types"),
    (["--types", "foo"], "unknown type 'foo'"),
    (["--batch", "10", "--buffer", "5"], "--buffer: 5 is smaller than --batch 10"),
    (["--sensor-id", "a b"], "--sensor-id"),
    (["--devices", "2", "--sensor-id", "x"], "only for a single device"),
    (["--devices", "2", "--sensor-prefix", "bad/"], "--sensor-prefix"),
    (["--backoff", "5", "--max-backoff", "1"], "--max-backoff"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["-p"], "expected one argument"),
    (["stray"], "unrecognized arguments: stray"),
])
def test_bad_usage_exits_2_with_one_line(argv, needle, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("iot-simulator: error: "), err
    assert needle in err
    assert "Traceback" not in err


def test_bad_environment_variable_names_it(capsys, monkeypatch):
    monkeypatch.setenv("SIMULATOR_DEVICES", "-3")
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "SIMULATOR_DEVICES='-3': must be at least 1" in err


def test_help_is_double_dash_only_and_lists_env_names():
    proc = subprocess.run([sys.executable, "-m", "iot_simulator", "--help"], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0
    assert "-h HOST" in proc.stdout and "-p PORT" in proc.stdout
    for flag in ("--url", "--devices", "--interval", "--types", "--count", "--duration", "--batch",
                 "--token", "--token-file", "--seed", "--buffer", "--drain-timeout", "--json",
                 "SIMULATOR_DEVICES", "SIMULATOR_TOKEN_FILE"):
        assert flag in proc.stdout
    # `-h` takes a host: alone it is a usage error, not help
    proc = subprocess.run([sys.executable, "-m", "iot_simulator", "-h"], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 2 and "expected one argument" in proc.stderr
