"""Real local servers on free loopback ports: InfluxDB 1.x, the api, mosquitto. The tests run against them
and `./iot bench` measures them, so they live here rather than in tests/.

Nothing here is a mock. `InfluxServer` runs Debian's `influxd` with its data in a temporary
directory (or wraps an external server given by INFLUXDB_URL); `ApiServer` runs `python -m iot_api`
as a real subprocess; `MosquittoServer` runs Debian's mosquitto with the stacks' own configuration.
Each can be stopped and started again, which the fault tests use.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ops import http_client, mqtt_auth, render

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: bytes | dict | None = None, headers: dict | None = None,
         timeout: float = 10.0) -> tuple[int, dict, bytes]:
    """One HTTP request; returns (status, headers, body) and never raises on 4xx/5xx (OSError when no answer).
    A dict BODY goes form-encoded. No gzip is asked for unless HEADERS do (requests would ask, and decode
    the answer), so the body returned is the one the server sent."""
    resp = http_client.request(method, url, data=body, headers={"Accept-Encoding": "identity", **(headers or {})},
                               timeout=timeout)
    return resp.status_code, dict(resp.headers), resp.content


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - we report the last one on timeout
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not true after {timeout}s (last error: {last_exc!r})")


class InfluxServer:
    """A real InfluxDB 1.x: our own influxd on loopback, or an external one from INFLUXDB_URL."""

    def __init__(self, url: str | None = None, auth: bool = False, data_dir: str | Path | None = None):
        """auth=True: `auth-enabled = true` (HTTP basic auth; no user exists at first start). The
        helpers below then send `credentials` ((user, password), set by the test) unless given
        `auth=` themselves. data_dir: where influxd keeps its data and WAL (`data/`, `wal/` inside
        it; e.g. a small filesystem that a test fills up), instead of the temporary directory; the
        meta store stays in the temporary directory, and close() leaves data_dir to its owner."""
        self.external = url is not None
        self.proc: subprocess.Popen | None = None
        self.tmp: Path | None = None
        self.credentials: tuple[str, str] | None = None
        if url:
            self.url = url.rstrip("/")
            return
        binary = shutil.which("influxd") or "/usr/bin/influxd"
        if not os.path.exists(binary):
            raise RuntimeError("influxd not found: install Debian's 'influxdb' package "
                               "(.ci/run does) or set INFLUXDB_URL to a running InfluxDB 1.x")
        self.binary = binary
        self.tmp = Path(tempfile.mkdtemp(prefix="iot-influxdb-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        storage = Path(data_dir) if data_dir is not None else self.tmp
        (self.tmp / "influxdb.conf").write_text(
            f"""reporting-disabled = true
bind-address = "127.0.0.1:{free_port()}"
[meta]
  dir = "{self.tmp}/meta"
[data]
  dir = "{storage}/data"
  wal-dir = "{storage}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
  auth-enabled = {"true" if auth else "false"}
"""
        )
        self.start()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        if self.external:
            return
        log = open(self.tmp / "influxd.log", "ab")
        self.proc = subprocess.Popen([self.binary, "-config", str(self.tmp / "influxdb.conf")],
                                     stdout=log, stderr=subprocess.STDOUT)
        wait_until(self.ping, timeout, f"influxd on {self.url}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- client helpers for assertions ----------------------------------------------------------
    def ping(self) -> bool:
        try:
            status, _, _ = http("GET", self.url + "/ping", timeout=1.0)
        except OSError:
            return False
        return status == 204

    def _auth_headers(self, auth: tuple[str, str] | None) -> dict:
        auth = auth or self.credentials
        if not auth:
            return {}
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def query(self, q: str, db: str | None = None, params: dict | None = None,
              auth: tuple[str, str] | None = None, epoch: str | None = None) -> list[dict]:
        """Run InfluxQL; returns the list of series of the first statement (empty list if none).
        epoch="ns": times as integer nanoseconds instead of RFC 3339 text."""
        form = {"q": q}
        if db:
            form["db"] = db
        if params:
            form["params"] = json.dumps(params)
        if epoch:
            form["epoch"] = epoch
        status, _, body = http("POST", self.url + "/query", form, self._auth_headers(auth))
        data = json.loads(body)
        if status != 200 or "error" in data or "error" in data["results"][0]:
            raise RuntimeError(f"InfluxQL failed ({status}): {q}: {body[:300]!r}")
        return data["results"][0].get("series", [])

    def count(self, db: str, where: str = "", params: dict | None = None,
              measurement: str = "data", auth: tuple[str, str] | None = None) -> int:
        series = self.query(f'SELECT count("value") FROM "{measurement}" {where}', db=db, params=params,  # noqa: S608
                            auth=auth)
        return sum(row[1] for s in series for row in s["values"])

    def points(self, db: str, where: str = "", params: dict | None = None,
               measurement: str = "data") -> list[tuple[str, str, int]]:
        """Every stored point as (sensor_id, type, time in ns), duplicates kept: the exact set the
        fault tests compare with what the api acknowledged."""
        series = self.query(f'SELECT "value" FROM "{measurement}" {where} GROUP BY "sensor_id", "type"',  # noqa: S608
                            db=db, params=params, epoch="ns")
        return [(s["tags"]["sensor_id"], s["tags"]["type"], row[0]) for s in series for row in s["values"]]

    def write(self, db: str, lines: str, precision: str = "ns",
              auth: tuple[str, str] | None = None) -> tuple[int, bytes]:
        status, _, body = http("POST", f"{self.url}/write?db={db}&precision={precision}",
                               lines.encode(), {"Content-Type": "text/plain", **self._auth_headers(auth)})
        return status, body

    def log(self) -> str:
        """influxd's own log (our server only)."""
        return (self.tmp / "influxd.log").read_text(errors="replace") if self.tmp else ""


class ApiServer:
    """The api as a real `python -m iot_api` process on a free loopback port."""

    def __init__(self, influx_url: str, db: str, env: dict | None = None, wait_ready: bool = True):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = db
        self.env = {
            **os.environ,
            "API_HOST": "127.0.0.1",
            "API_PORT": str(self.port),
            "INFLUXDB_URL": influx_url,
            "INFLUXDB_DB": db,
            "API_LOG_LEVEL": "info",
            **(env or {}),
        }
        self.log_path = Path(tempfile.mkstemp(prefix="iot-api-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None
        self.start(wait_ready=wait_ready)

    def start(self, wait_ready: bool = True, timeout: float = 30.0) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "iot_api"], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        wait_until(lambda: self._status("/healthz") == 200 or self._died(), timeout,
                   f"api /healthz on {self.url}")
        if self._died():
            raise RuntimeError(f"api exited with {self.proc.returncode}:\n{self.log()}")
        if wait_ready:
            wait_until(lambda: self._status("/readyz") == 200, timeout, f"api /readyz on {self.url}")

    def _died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def _status(self, path: str) -> int:
        try:
            return http("GET", self.url + path, timeout=1.0)[0]
        except OSError:
            return 0

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode if self.proc else None
        self.proc = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    # -- request helpers -------------------------------------------------------------------
    def post(self, path: str, payload, headers: dict | None = None, raw: bytes | None = None):
        body = raw if raw is not None else json.dumps(payload).encode()
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        status, resp_headers, resp_body = http("POST", self.url + path, body, hdrs)
        return status, resp_headers, _json_or_text(resp_body)

    def get(self, path: str, headers: dict | None = None):
        status, resp_headers, resp_body = http("GET", self.url + path, None, headers or {})
        return status, resp_headers, _json_or_text(resp_body)


def _json_or_text(body: bytes):
    try:
        return json.loads(body)
    except ValueError:
        return body.decode(errors="replace")


# -- mosquitto ----------------------------------------------------------------------------------------
# A real mosquitto broker for the tests, on free loopback ports, with the stacks' own configuration.
#
# `MosquittoServer` renders stacks/templates/mosquitto.conf.j2 with the values of an environment (so
# the tests run the broker exactly as configured, limits and persistence included), a password file and
# an ACL made by ops/mqtt_auth.py for the four roles, and its persistence in a temporary folder. It can
# be stopped with any signal and started again on the same folder and ports (the fault tests do).
class MosquittoServer:
    def __init__(self, env: str = "test", overrides: dict | None = None, start: bool = True):
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.path.exists(binary):
            raise RuntimeError("mosquitto not found: install Debian's 'mosquitto' package (.ci/run does)")
        self.binary = binary
        self.values = render.load_values(env, overrides)
        self.mqtt = dict(self.values["mqtt"], port=free_port(), ws_port=free_port())
        self.port, self.ws_port = self.mqtt["port"], self.mqtt["ws_port"]
        self.host = "127.0.0.1"
        self.users: dict[str, str] = dict(self.values["mqtt"]["users"])
        self.passwords = {role: secrets.token_urlsafe(16) for role in mqtt_auth.ROLES}
        self.tmp = Path(tempfile.mkdtemp(prefix="iot-mosquitto-"))
        (self.tmp / "data").mkdir()
        (self.tmp / "passwd").write_text(mqtt_auth.password_file(self.users, self.passwords))
        (self.tmp / "acl").write_text(mqtt_auth.acl_file(self.users))
        for role, password in self.passwords.items():
            path = self.password_path(role)
            path.write_text(password + "\n")
            path.chmod(0o600)
        run_as = "root" if os.geteuid() == 0 else None
        self.conf = self.tmp / "mosquitto.conf"
        self.conf.write_text(render.mosquitto_conf(
            self.mqtt, password_file=str(self.tmp / "passwd"), acl_file=str(self.tmp / "acl"),
            data_dir=str(self.tmp / "data"), bind=self.host, run_as=run_as))
        self.proc: subprocess.Popen | None = None
        if start:
            self.start()

    def password_path(self, role: str) -> Path:
        """A file holding ROLE's password (what the services read through *_FILE settings)."""
        return self.tmp / f"{role}.password"

    def credentials(self, role: str) -> tuple[str, str]:
        return self.users[role], self.passwords[role]

    def env(self, role: str) -> dict[str, str]:
        """The MQTT_* settings of a service that connects as ROLE."""
        return {"MQTT_HOST": self.host, "MQTT_PORT": str(self.port), "MQTT_USERNAME": self.users[role],
                "MQTT_PASSWORD_FILE": str(self.password_path(role))}

    # -- lifecycle -------------------------------------------------------------------------------
    def _accepts(self) -> bool:
        with socket.create_connection((self.host, self.port), timeout=1):
            return True

    def start(self, timeout: float = 20.0) -> None:
        log = open(self.tmp / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_until(lambda: self.proc.poll() is None and self._accepts(), timeout, f"mosquitto on {self.port}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Stop the broker with SIG (SIGKILL: no final save) and wait for it; its exit code."""
        if not self.proc or self.proc.poll() is not None:
            return None if not self.proc else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self.proc = None

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def log(self) -> str:
        try:
            return (self.tmp / "mosquitto.log").read_text(errors="replace")
        except OSError:
            return ""
