"""The device agent's settings: environment variables, flags over them, and exit 2 on a bad one."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from iot_device.config import DEFAULT_QUEUE_PATH, DEFAULT_TEMP_PATH, ConfigError, load

ROOT = Path(__file__).resolve().parents[2]
URL = {"DEVICE_API_URL": "http://backend:1337"}


def test_defaults():
    s = load([], dict(URL))
    assert s.command == "run" and not s.once
    assert s.api_url == "http://backend:1337" and s.data_url == "http://backend:1337/data"
    assert s.sensor_id == socket.gethostname()
    assert (s.type, s.interval, s.batch, s.max_queue) == ("temp", 60.0, 100, 1_000_000)
    assert s.temp_path == DEFAULT_TEMP_PATH == "/sys/class/thermal/thermal_zone0/temp"
    assert s.queue_path == DEFAULT_QUEUE_PATH == "/var/lib/iot-device/queue.sqlite3"
    assert s.token is None and s.token_file is None
    assert s.backoff_min <= s.backoff_max


def test_environment_is_read():
    env = {"DEVICE_API_URL": "https://api.example:8443/iot/", "DEVICE_SENSOR_ID": "pi-7", "DEVICE_TYPE": "cpu_temp",
           "DEVICE_INTERVAL": "0.2", "DEVICE_TEMP_PATH": "/tmp/t", "DEVICE_QUEUE_PATH": "/tmp/q.sqlite3",
           "DEVICE_BATCH": "500", "DEVICE_MAX_QUEUE": "1000", "DEVICE_TIMEOUT": "3",
           "DEVICE_BACKOFF_MIN": "0.1", "DEVICE_BACKOFF_MAX": "5", "DEVICE_TOKEN": "t" * 32,
           "DEVICE_LOG_LEVEL": "DEBUG"}
    s = load([], env)
    assert s.data_url == "https://api.example:8443/iot/data"  # a path prefix (reverse proxy) is kept
    assert (s.sensor_id, s.type, s.interval, s.temp_path, s.queue_path) == ("pi-7", "cpu_temp", 0.2, "/tmp/t",
                                                                            "/tmp/q.sqlite3")
    assert (s.batch, s.max_queue, s.timeout, s.backoff_min, s.backoff_max) == (500, 1000, 3.0, 0.1, 5.0)
    assert s.token == "t" * 32 and s.log_level == "debug"


def test_flags_override_environment(tmp_path):
    token = tmp_path / "token"
    token.write_text("flag-token-0123456789\n")
    env = {**URL, "DEVICE_SENSOR_ID": "from-env", "DEVICE_INTERVAL": "60", "DEVICE_TOKEN": "env-token-0123456789"}
    s = load(["--api-url", "http://other:1", "--sensor-id", "from-flag", "--interval", "5",
              "--token-file", str(token), "--once"], env)
    assert (s.api_url, s.sensor_id, s.interval, s.once) == ("http://other:1", "from-flag", 5.0, True)
    assert s.token == "flag-token-0123456789" and s.token_file == str(token)


def test_empty_variables_count_as_unset():
    s = load([], {**URL, "DEVICE_SENSOR_ID": "", "DEVICE_INTERVAL": " ", "DEVICE_TOKEN": ""})
    assert s.sensor_id == socket.gethostname() and s.interval == 60.0 and s.token is None


def test_systemd_state_directory_is_the_default_queue_place():
    s = load([], {**URL, "STATE_DIRECTORY": "/var/lib/iot-device"})
    assert s.queue_path == "/var/lib/iot-device/queue.sqlite3"
    assert load([], {**URL, "STATE_DIRECTORY": "/a", "DEVICE_QUEUE_PATH": "/b/q"}).queue_path == "/b/q"


def test_token_file_is_read_and_stripped(tmp_path):
    token = tmp_path / "token"
    token.write_text("  s3cret-token-0123456789\n")
    s = load([], {**URL, "DEVICE_TOKEN_FILE": str(token)})
    assert s.token == "s3cret-token-0123456789" and s.token_file == str(token)


def test_status_needs_no_api_settings():
    s = load(["status"], {"DEVICE_QUEUE_PATH": "/x/q.sqlite3", "DEVICE_TOKEN_FILE": "/unreadable"})
    assert s.command == "status" and s.queue_path == "/x/q.sqlite3" and s.api_url is None


@pytest.mark.parametrize(("argv", "env", "expected"), [
    ([], {}, "DEVICE_API_URL is not set"),
    ([], {"DEVICE_API_URL": "backend:1337"}, "must be an http(s) URL"),
    ([], {"DEVICE_API_URL": "ftp://backend"}, "must be an http(s) URL"),
    ([], {"DEVICE_API_URL": "http://backend:99999"}, "port"),
    ([], {"DEVICE_API_URL": "http://backend:1337/?x=1"}, "no query"),
    ([], {**URL, "DEVICE_INTERVAL": "abc"}, "DEVICE_INTERVAL='abc'"),
    ([], {**URL, "DEVICE_INTERVAL": "0"}, "DEVICE_INTERVAL='0'"),
    ([], {**URL, "DEVICE_INTERVAL": "-1"}, "DEVICE_INTERVAL"),
    ([], {**URL, "DEVICE_INTERVAL": "nan"}, "DEVICE_INTERVAL"),
    ([], {**URL, "DEVICE_INTERVAL": "inf"}, "DEVICE_INTERVAL"),
    ([], {**URL, "DEVICE_BATCH": "0"}, "DEVICE_BATCH"),
    ([], {**URL, "DEVICE_BATCH": "1.5"}, "DEVICE_BATCH"),
    ([], {**URL, "DEVICE_MAX_QUEUE": "-5"}, "DEVICE_MAX_QUEUE"),
    ([], {**URL, "DEVICE_TIMEOUT": "0"}, "DEVICE_TIMEOUT"),
    ([], {**URL, "DEVICE_BACKOFF_MIN": "10", "DEVICE_BACKOFF_MAX": "1"}, "below DEVICE_BACKOFF_MIN"),
    ([], {**URL, "DEVICE_SENSOR_ID": "kitchen pi"}, "DEVICE_SENSOR_ID='kitchen pi'"),
    ([], {**URL, "DEVICE_SENSOR_ID": "x" * 65}, "not a valid sensor id"),
    ([], {**URL, "DEVICE_TYPE": "9lives"}, "DEVICE_TYPE"),
    ([], {**URL, "DEVICE_LOG_LEVEL": "loud"}, "DEVICE_LOG_LEVEL"),
    ([], {**URL, "DEVICE_TOKEN": "a b"}, "DEVICE_TOKEN"),
    ([], {**URL, "DEVICE_TOKEN_FILE": "/nonexistent/token"}, "DEVICE_TOKEN_FILE='/nonexistent/token': cannot read"),
    ([], {**URL, "DEVICE_TOKEN": "x" * 20, "DEVICE_TOKEN_FILE": "/etc/hostname"}, "both set"),
    (["--interval"], URL, "expected one argument"),
    (["--bogus"], URL, "unrecognized arguments"),
    (["stats"], URL, "invalid choice"),
    (["status", "--once"], URL, "--once goes with `run`"),
])
def test_bad_settings_are_config_errors_naming_the_setting(argv, env, expected):
    with pytest.raises(ConfigError) as err:
        load(argv, env)
    assert expected in str(err.value)


def test_empty_token_file_is_an_error(tmp_path):
    token = tmp_path / "token"
    token.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        load([], {**URL, "DEVICE_TOKEN_FILE": str(token)})


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVICE_") and k != "STATE_DIRECTORY"}
    env.update(extra)
    return env


@pytest.mark.parametrize(("args", "extra", "expected"), [
    ([], {}, "DEVICE_API_URL is not set"),
    (["--interval", "soon"], {"DEVICE_API_URL": "http://backend:1337"}, "DEVICE_INTERVAL='soon'"),
    ([], {"DEVICE_API_URL": "http://backend:1337", "DEVICE_TOKEN_FILE": "/nonexistent/token"}, "cannot read"),
    (["--queue-path", "/proc/no/such/queue.sqlite3"], {"DEVICE_API_URL": "http://backend:1337"}, "queue"),
    (["--wat"], {}, "unrecognized arguments"),
])
def test_bad_settings_exit_2_with_one_line_and_no_traceback(args, extra, expected):
    proc = subprocess.run([sys.executable, "-m", "iot_device", *args], env=_clean_env(**extra),
                          capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("iot-device: error: ") and expected in lines[0]
    assert "Traceback" not in proc.stderr


def test_console_script_is_installed_and_behaves_the_same():
    script = Path(sys.executable).with_name("iot-device")
    if not script.exists():
        pytest.skip("iot-device console script not installed in this environment")
    proc = subprocess.run([str(script)], env=_clean_env(), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and proc.stderr.startswith("iot-device: error: DEVICE_API_URL is not set")


def test_help_lists_every_setting():
    proc = subprocess.run([sys.executable, "-m", "iot_device", "--help"], env=_clean_env(),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    for name in ("DEVICE_API_URL", "DEVICE_TOKEN_FILE", "DEVICE_SENSOR_ID", "DEVICE_TYPE", "DEVICE_INTERVAL",
                 "DEVICE_TEMP_PATH", "DEVICE_QUEUE_PATH", "DEVICE_BATCH", "DEVICE_MAX_QUEUE", "DEVICE_TIMEOUT",
                 "DEVICE_BACKOFF_MIN", "DEVICE_BACKOFF_MAX", "DEVICE_LOG_LEVEL"):
        assert name in proc.stdout
