"""A real mosquitto broker for the tests, on free loopback ports, with the stacks' own configuration.

`MosquittoServer` renders stacks/templates/mosquitto.conf.j2 with the values of an environment (so
the tests run the broker exactly as configured, limits and persistence included), a password file and
an ACL made by ops/mqtt_auth.py for the four roles, and its persistence in a temporary folder. It can
be stopped with any signal and started again on the same folder and ports (the fault tests do).
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from harness import free_port, wait_until

from ops import mqtt_auth, render


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
