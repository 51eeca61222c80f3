"""The autotest's system under test check: its exit code is the verdict (0 pass, 1 fail, 2 bad setup).

Run by the simulator image's python in the `sut` service of the rendered autotest.yaml; standard
library only. Steps, each with a deadline (SUT_TIMEOUT seconds in all):
  1. wait until the api answers GET /readyz with 200 (InfluxDB reachable and set up);
  2. post DEVICES x COUNT readings with the real simulator (`python -m iot_simulator --json`), under
     a sensor prefix unique to this run, and require its summary to say all were stored;
  3. through the api: GET /sensors lists exactly DEVICES sensors with that prefix, and
     GET /data?sensor_id=… returns COUNT readings for each;
  4. directly in InfluxDB: SELECT COUNT("value") over the prefix equals DEVICES x COUNT.
Any mismatch prints what was expected and what was found, and exits 1.

Settings (environment): SUT_API_URL, SUT_INFLUXDB_URL, SUT_INFLUXDB_DB, SUT_INFLUXDB_RP,
SUT_MEASUREMENT, SUT_DEVICES, SUT_COUNT, SUT_TIMEOUT, SUT_WRITE_TOKEN_FILE, SUT_READ_TOKEN_FILE,
SUT_INFLUXDB_USER + SUT_INFLUXDB_PASSWORD_FILE (when InfluxDB has auth on), SUT_SIMULATOR (the
command that runs the simulator, default "<this python> -m iot_simulator").
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

EXIT_PASS, EXIT_FAIL, EXIT_SETUP = 0, 1, 2


class Failed(Exception):
    """The system under test did not do what it should: exit 1."""


class Setup(Exception):
    """The sut itself is misconfigured: exit 2."""


def log(message: str) -> None:
    print(f"sut: {message}", file=sys.stderr, flush=True)


def _setting(env: dict, name: str, default: str | None = None) -> str:
    value = env.get(name, "").strip() or default
    if value is None:
        raise Setup(f"{name} is not set")
    return value


def _int_setting(env: dict, name: str, default: int) -> int:
    raw = _setting(env, name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise Setup(f"{name}={raw!r}: must be an integer") from None
    if value < 1:
        raise Setup(f"{name}={raw!r}: must be at least 1")
    return value


def _secret_file(env: dict, name: str) -> str | None:
    path = env.get(name, "").strip()
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError as exc:
        raise Setup(f"{name}={path!r}: cannot read it ({exc.strerror})") from None


def http_get(url: str, headers: dict | None = None, timeout: float = 5.0) -> tuple[int, dict | None]:
    if not url.startswith(("http://", "https://")):
        raise Setup(f"{url!r}: not an http(s) URL")
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (scheme checked above)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    try:
        return status, json.loads(body) if body else None
    except ValueError:
        return status, None


def wait_ready(api_url: str, deadline: float) -> None:
    last = "no answer yet"
    while time.monotonic() < deadline:
        try:
            status, body = http_get(f"{api_url}/readyz", timeout=2.0)
            if status == 200:
                log(f"api ready at {api_url}")
                return
            last = f"{status} {body}"
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.5)
    raise Failed(f"api at {api_url} not ready before the deadline (last answer: {last})")


def post_readings(cmd: list[str], api_url: str, devices: int, count: int, prefix: str,
                  write_token_file: str | None, deadline: float) -> dict:
    args = cmd + ["--url", api_url, "--devices", str(devices), "--count", str(count), "--interval", "0",
                  "--sensor-prefix", prefix, "--batch", "10", "--json", "--progress-interval", "0",
                  "--drain-timeout", "30"]
    if write_token_file:
        args += ["--token-file", write_token_file]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMULATOR_")}  # the command line rules
    log("posting: " + shlex.join(args))
    try:
        done = subprocess.run(args, env=env, capture_output=True, text=True,  # noqa: S603
                              timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise Failed("the simulator did not finish before the deadline") from None
    except OSError as exc:
        raise Setup(f"cannot run the simulator {cmd[0]!r}: {exc.strerror}") from None
    if done.stderr.strip():
        sys.stderr.write(done.stderr if done.stderr.endswith("\n") else done.stderr + "\n")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise Failed(f"the simulator printed no JSON summary (exit {done.returncode})")
    summary = json.loads(lines[-1])
    expected = devices * count
    if done.returncode != 0 or summary.get("stored") != expected:
        raise Failed(f"the simulator stored {summary.get('stored')} of {expected} readings "
                     f"(rejected {summary.get('rejected')}, pending {summary.get('pending')}, "
                     f"exit {done.returncode})")
    log(f"posted {expected} readings: every one answered 201 (stored)")
    return summary


def check_api(api_url: str, prefix: str, devices: int, count: int, read_token: str | None) -> None:
    headers = {"Authorization": f"Bearer {read_token}"} if read_token else {}
    status, body = http_get(f"{api_url}/sensors", headers)
    if status != 200 or not isinstance(body, dict):
        raise Failed(f"GET /sensors answered {status}: {body}")
    ids = sorted(str(s.get("sensor_id")) for s in body.get("sensors", []) if str(s.get("sensor_id")).startswith(prefix))
    if len(ids) != devices:
        raise Failed(f"GET /sensors lists {len(ids)} sensors {prefix}*, expected {devices}")
    for sensor_id in ids:
        query = urllib.parse.urlencode({"sensor_id": sensor_id, "limit": count + 1})
        status, body = http_get(f"{api_url}/data?{query}", headers)
        if status != 200 or not isinstance(body, dict):
            raise Failed(f"GET /data?{query} answered {status}: {body}")
        got = len(body.get("readings", []))
        if got != count:
            raise Failed(f"GET /data?sensor_id={sensor_id} returned {got} readings, expected {count}")
    log(f"api: {devices} sensors with {count} readings each")


def check_influxdb(influx_url: str, db: str, rp: str, measurement: str, prefix: str, expected: int,
                   user: str | None, password: str | None) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", prefix):
        raise Setup(f"unsafe sensor prefix {prefix!r}")
    ident = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
    for name, value in (("SUT_INFLUXDB_RP", rp), ("SUT_MEASUREMENT", measurement)):
        if not ident.fullmatch(value):
            raise Setup(f"{name}={value!r}: not a plain identifier")
    # Identifiers and the regex cannot be bind parameters in InfluxQL; all three are checked above.
    q = f'SELECT COUNT("value") FROM "{rp}"."{measurement}" WHERE "sensor_id" =~ /^{prefix}/'  # noqa: S608
    params = {"db": db, "q": q}
    if user:
        params.update(u=user, p=password or "")
    status, body = http_get(f"{influx_url}/query?{urllib.parse.urlencode(params)}")
    if status != 200 or not isinstance(body, dict):
        raise Failed(f"InfluxDB query answered {status}: {body}")
    result = (body.get("results") or [{}])[0]
    if "error" in result:
        raise Failed(f"InfluxDB query failed: {result['error']}")
    series = result.get("series") or []
    got = series[0]["values"][0][1] if series else 0
    if got != expected:
        raise Failed(f"InfluxDB holds {got} points for {prefix}*, expected {expected}")
    log(f"influxdb: {got} points stored, as expected")


def main(env: dict | None = None) -> int:
    env = dict(os.environ if env is None else env)
    try:
        api_url = _setting(env, "SUT_API_URL", "http://api:1337").rstrip("/")
        influx_url = _setting(env, "SUT_INFLUXDB_URL", "http://influxdb:8086").rstrip("/")
        db = _setting(env, "SUT_INFLUXDB_DB", "iot")
        rp = _setting(env, "SUT_INFLUXDB_RP", "iot_rp")
        measurement = _setting(env, "SUT_MEASUREMENT", "data")
        devices = _int_setting(env, "SUT_DEVICES", 5)
        count = _int_setting(env, "SUT_COUNT", 20)
        timeout = _int_setting(env, "SUT_TIMEOUT", 180)
        read_token = _secret_file(env, "SUT_READ_TOKEN_FILE")
        write_token_file = env.get("SUT_WRITE_TOKEN_FILE", "").strip() or None
        _secret_file(env, "SUT_WRITE_TOKEN_FILE")  # readable, or a setup error now
        influx_user = env.get("SUT_INFLUXDB_USER", "").strip() or None
        influx_password = _secret_file(env, "SUT_INFLUXDB_PASSWORD_FILE")
        simulator = shlex.split(env.get("SUT_SIMULATOR", "")) or [sys.executable, "-m", "iot_simulator"]
    except Setup as exc:
        log(f"setup error: {exc}")
        return EXIT_SETUP

    deadline = time.monotonic() + timeout
    prefix = f"sut-{secrets.token_hex(4)}-"  # this run's sensors only, whatever the volume holds
    try:
        wait_ready(api_url, deadline)
        post_readings(simulator, api_url, devices, count, prefix, write_token_file, deadline)
        check_api(api_url, prefix, devices, count, read_token)
        check_influxdb(influx_url, db, rp, measurement, prefix, devices * count, influx_user, influx_password)
    except Setup as exc:
        log(f"setup error: {exc}")
        return EXIT_SETUP
    except (Failed, OSError, urllib.error.URLError) as exc:
        log(f"FAIL: {exc}")
        return EXIT_FAIL
    log(f"PASS: {devices * count} readings posted, read back through the api and counted in InfluxDB")
    return EXIT_PASS


if __name__ == "__main__":
    sys.exit(main())
