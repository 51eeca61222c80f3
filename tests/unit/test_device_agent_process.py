"""The device agent as a real process, without the api: signals, --once exit codes, status, sampling that
never waits on the network, journald log lines, and the systemd unit. (With the real api:
tests/integration/test_device_agent.py.)"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEVICE = ROOT / "device"


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dev(tmp_path):
    """Paths and environment of one agent: temperature file written by the test, queue in tmp_path."""
    temp = tmp_path / "temp"
    temp.write_text("48312\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DEVICE_") and k not in ("STATE_DIRECTORY", "JOURNAL_STREAM")}
    env.update(DEVICE_API_URL=f"http://127.0.0.1:{unused_port()}", DEVICE_TEMP_PATH=str(temp),
               DEVICE_QUEUE_PATH=str(tmp_path / "queue.sqlite3"), DEVICE_SENSOR_ID="pi-unit",
               DEVICE_BACKOFF_MIN="0.05", DEVICE_BACKOFF_MAX="0.2", DEVICE_TIMEOUT="2", DEVICE_LOG_LEVEL="debug")

    class Dev:
        pass

    d = Dev()
    d.temp, d.queue, d.env, d.log = temp, tmp_path / "queue.sqlite3", env, tmp_path / "agent.log"
    d.procs = []
    yield d
    for proc in d.procs:  # a failed test must not leave an agent running
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def run(dev, *args, **env):
    return subprocess.run([sys.executable, "-m", "iot_device", *args], env={**dev.env, **env},
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def start(dev, *args, **env) -> subprocess.Popen:
    with open(dev.log, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "iot_device", *args], env={**dev.env, **env},
                                stdout=log, stderr=log, cwd=ROOT)
    dev.procs.append(proc)
    return proc


def queued(dev) -> int:
    if not dev.queue.exists():
        return 0
    with sqlite3.connect(f"file:{dev.queue}?mode=ro", uri=True) as db:
        try:
            return db.execute("SELECT count(*) FROM queue").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def wait_for(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} not true after {timeout}s")


def stop(proc: subprocess.Popen, sig=signal.SIGTERM) -> tuple[int, float]:
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        code = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    return code, time.monotonic() - t0


# -- run: signals and decoupling ------------------------------------------------------------------------


def test_sigterm_while_idle_exits_0_promptly_and_keeps_the_reading(dev):
    proc = start(dev, DEVICE_INTERVAL="60")
    wait_for(lambda: queued(dev) == 1, what="first reading queued")
    time.sleep(0.3)  # the sender is now backing off against the unused port
    code, took = stop(proc)
    assert code == 0 and took < 3, dev.log.read_text()
    assert queued(dev) == 1
    assert "stopped: 1 reading(s) queued" in dev.log.read_text()


def test_sigint_too(dev):
    proc = start(dev, DEVICE_INTERVAL="60")
    wait_for(lambda: queued(dev) == 1, what="first reading queued")
    code, took = stop(proc, signal.SIGINT)
    assert code == 0 and took < 3


def test_sampling_never_waits_on_a_hung_api(dev):
    # A server that accepts connections and never answers: the first POST hangs for DEVICE_TIMEOUT (10 s).
    # Readings must keep coming at the interval meanwhile.
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)
    try:
        proc = start(dev, DEVICE_API_URL=f"http://127.0.0.1:{hung.getsockname()[1]}", DEVICE_INTERVAL="0.1",
                     DEVICE_TIMEOUT="10")
        wait_for(lambda: queued(dev) >= 10, timeout=6, what="10 readings while the api hangs")
        code, took = stop(proc)
    finally:
        hung.close()
    assert code == 0 and took < 4  # not held up by the 10 s request in flight
    assert "INFO sent " not in dev.log.read_text()


def test_sensor_errors_are_logged_and_sampling_goes_on(dev):
    dev.temp.unlink()
    proc = start(dev, DEVICE_INTERVAL="0.1")
    # the agent has tried (and logged the missing file) before the file comes back, however slow its start
    wait_for(lambda: dev.log.exists() and "does not exist (check DEVICE_TEMP_PATH)" in dev.log.read_text(),
             what="the missing file logged")
    assert queued(dev) == 0
    dev.temp.write_text("50000\n")
    wait_for(lambda: queued(dev) >= 2, what="readings after the file came back")
    code, _ = stop(proc)
    log = dev.log.read_text()
    assert code == 0
    assert "does not exist (check DEVICE_TEMP_PATH)" in log and "temperature readable again" in log
    assert "Traceback" not in log


def test_a_full_queue_drops_the_oldest_loudly(dev):
    proc = start(dev, DEVICE_INTERVAL="0.05", DEVICE_MAX_QUEUE="3")
    wait_for(lambda: "queue full" in dev.log.read_text(), what="queue full logged")
    stop(proc)
    assert queued(dev) == 3
    status = json.loads(run(dev, "status").stdout)
    assert status["dropped_total"] >= 1 and status["enqueued_total"] == status["dropped_total"] + 3
    assert "ERROR queue full (DEVICE_MAX_QUEUE=3): dropped the 1 oldest reading(s)" in dev.log.read_text()


# -- --once, status, rejected ---------------------------------------------------------------------------


def test_once_offline_queues_the_reading_and_exits_3(dev):
    proc = run(dev, "--once")
    assert proc.returncode == 3, proc.stderr
    assert "delivery failed" in proc.stderr and "cannot reach" in proc.stderr
    assert queued(dev) == 1
    assert run(dev, "--once").returncode == 3
    assert queued(dev) == 2


def test_once_without_a_temperature_exits_1(dev):
    dev.temp.write_text("garbage\n")
    proc = run(dev, "--once")
    assert proc.returncode == 1
    assert "not an integer number of millidegrees" in proc.stderr
    assert queued(dev) == 0


def test_status_prints_json(dev):
    run(dev, "--once")
    proc = run(dev, "status", DEVICE_API_URL="")  # status needs no api settings
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["queued"] == 1 and status["rejected"] == 0 and status["enqueued_total"] == 1
    assert status["queue_path"] == str(dev.queue)
    assert "cannot reach" in status["last_error"] and status["last_error_at"]
    assert status["oldest_queued_ts"].endswith("Z")
    rejected = run(dev, "rejected")
    assert rejected.returncode == 0 and json.loads(rejected.stdout) == []


def test_status_of_a_missing_queue_is_one_clear_line(dev):
    proc = run(dev, "status")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"iot-device: error: no queue at {dev.queue} (has the agent run? is " \
                                  "DEVICE_QUEUE_PATH right?)"
    assert not dev.queue.exists()


def test_journald_gets_priority_prefixes(dev, tmp_path):
    err = tmp_path / "stderr"
    with open(err, "wb") as fh:
        st = os.fstat(fh.fileno())
        subprocess.run([sys.executable, "-m", "iot_device", "--once"], stderr=fh, timeout=60, cwd=ROOT,
                       env={**dev.env, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    lines = err.read_text().splitlines()
    assert lines and all(line[:3] in ("<7>", "<6>", "<4>", "<3>") for line in lines), lines
    assert any(line.startswith("<4>delivery failed") for line in lines)


# -- the systemd unit -------------------------------------------------------------------------------------


def unit_entries() -> list[tuple[str, str, str]]:
    section, out = "", []
    for raw in (DEVICE / "iot-device.service").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key, value))
    return out


def test_unit_has_what_the_issue_asks():
    entries = unit_entries()
    d = {(s, k): v for s, k, v in entries}
    assert d[("Service", "Restart")] == "always"
    assert "network-online.target" in d[("Unit", "After")].split()
    assert "network-online.target" in d[("Unit", "Wants")].split()
    assert d[("Service", "EnvironmentFile")] == "-/etc/iot-device.env"
    assert d[("Service", "StateDirectory")] == "iot-device"
    assert d[("Service", "User")] == "iot-device"
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                       ("PrivateTmp", "yes")]:
        assert d[("Service", key)] == value
    assert d[("Service", "ExecStart")] == "/usr/bin/python3 -m iot_device"
    assert "PYTHONPATH=/opt/iot-device" in d[("Service", "Environment")].split()
    assert d[("Install", "WantedBy")] == "multi-user.target"


def test_unit_passes_systemd_analyze_verify(tmp_path):
    tool = shutil.which("systemd-analyze")
    if not tool:
        pytest.skip("systemd-analyze not installed")
    unit = tmp_path / "iot-device.service"
    shutil.copy(DEVICE / "iot-device.service", unit)
    proc = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    # verify reports unknown or malformed settings on stderr, sometimes with exit status 0
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr


def test_readme_documents_every_setting_and_no_other():
    readme = (DEVICE / "README.md").read_text()
    source = (DEVICE / "iot_device" / "config.py").read_text()
    in_code = set(re.findall(r"DEVICE_[A-Z_]+[A-Z]", source))
    in_readme = set(re.findall(r"DEVICE_[A-Z_]+[A-Z]", readme))
    assert in_code <= in_readme, f"undocumented: {in_code - in_readme}"
    assert in_readme <= in_code, f"documented but unknown: {in_readme - in_code}"
