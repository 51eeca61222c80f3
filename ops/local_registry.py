"""A local registry to push to (`./iot registry.start`, `registry.stop`): Debian's `docker-registry`
(distribution 2.8), installed with apt when missing and run as a background process of our own (no
systemd needed): config, pid file, log and data under one folder (default build/registry/), listening on
127.0.0.1 only, plain http. Docker allows plain http to registries on 127.0.0.0/8 and localhost without
`insecure-registries`. Publishing to it (tags, push) is ops/registry.py.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from ops.registry import API_HEADER, ROOT, Progress, RegistryError, is_loopback, say

STATE_DIR = ROOT / "build" / "registry"
BINARY = "/usr/bin/docker-registry"
DEFAULT_PORT = 5000


# -- the local registry ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LocalRegistry:
    host: str
    port: int
    pid: int | None
    state_dir: Path
    data_dir: Path
    reused: bool = False

    @property
    def prefix(self) -> str:
        """What --registry / the `registry` value takes: `127.0.0.1:PORT/`."""
        return f"{self.host}:{self.port}/"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _paths(state_dir: Path) -> dict[str, Path]:
    return {"config": state_dir / "config.yml", "pid": state_dir / "registry.pid", "log": state_dir / "registry.log"}


def registry_config(port: int, data_dir: Path, host: str = "127.0.0.1") -> str:
    """The registry's YAML config: HOST:PORT only, filesystem storage in DATA_DIR, no auth, deletes on."""
    config = {
        "version": 0.1,
        "log": {"level": "info", "fields": {"service": "registry"}},
        "storage": {"filesystem": {"rootdirectory": str(data_dir)}, "delete": {"enabled": True},
                    "cache": {"blobdescriptor": "inmemory"}},
        "http": {"addr": f"{host}:{port}", "headers": {"X-Content-Type-Options": ["nosniff"]}},
        "health": {"storagedriver": {"enabled": True, "interval": "10s", "threshold": 3}},
    }
    return "# written by ops/local_registry.py (./iot registry.start)\n" + yaml.safe_dump(config, sort_keys=False)


def _read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """Running (a zombie is not); reaps it when it is our child."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _cmdline(pid: int) -> list[str]:
    try:
        return [a for a in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0") if a]
    except OSError:
        return []


def _is_registry(pid: int) -> bool:
    cmd = _cmdline(pid)
    return bool(cmd) and Path(cmd[0]).name == Path(BINARY).name


def _configured_addr(config: Path) -> tuple[str, int] | None:
    try:
        addr = yaml.safe_load(config.read_text())["http"]["addr"]
        host, _, port = addr.rpartition(":")
        return host, int(port)
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
        return None


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _answers(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url + "/v2/", timeout=timeout) as resp:  # noqa: S310 (our loopback registry)
            return bool(resp.headers.get(API_HEADER))
    except urllib.error.HTTPError as exc:
        return bool(exc.headers and exc.headers.get(API_HEADER))
    except (OSError, ValueError):
        return False


def _log_tail(log: Path, lines: int = 5) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


_children: dict[int, subprocess.Popen] = {}  # registries started by this process (reaped on stop)


def ensure_binary(progress: Progress = say, dry: bool = False) -> None:
    from . import engine

    if Path(BINARY).exists():
        return
    if dry:
        progress("would run: apt-get update && apt-get install -y --no-install-recommends docker-registry")
        return
    try:
        engine.ensure_debian_packages(["docker-registry"], progress, what="Debian's docker-registry",
                                      check=lambda: Path(BINARY).exists())
    except engine.EngineError as exc:
        raise RegistryError(str(exc).splitlines()[0]) from None
    if not Path(BINARY).exists():
        raise RegistryError(f"the docker-registry package is installed but {BINARY} is missing")


def start_local_registry(port: int = DEFAULT_PORT, data_dir: Path | None = None, *, state_dir: Path = STATE_DIR,
                         host: str = "127.0.0.1", progress: Progress = say, dry: bool = False,
                         timeout: float = 20.0) -> LocalRegistry:
    """Run Debian's docker-registry on HOST:PORT in the background (config, pid file, log in STATE_DIR,
    blobs in DATA_DIR, default STATE_DIR/data). Reuses the one already running from STATE_DIR on the
    same port; refuses when another runs there on another port, or when the port is taken."""
    state_dir = Path(state_dir).resolve()
    data_dir = Path(data_dir).resolve() if data_dir else state_dir / "data"
    paths = _paths(state_dir)
    port = int(port)
    if not 0 < port < 65536:
        raise RegistryError(f"port {port}: must be 1-65535")
    if not is_loopback(host):
        raise RegistryError(f"host {host}: the local registry listens on loopback only (plain http, no auth)")
    pid = _read_pid(paths["pid"])
    if pid and _alive(pid) and _is_registry(pid):
        addr = _configured_addr(paths["config"])
        if addr == (host, port):
            progress(f"a local registry already runs: {host}:{port} (pid {pid}, data in {data_dir})")
            return LocalRegistry(host, port, pid, state_dir, data_dir, reused=True)
        where = f"{addr[0]}:{addr[1]}" if addr else "another address"
        raise RegistryError(f"a local registry from {state_dir} already runs on {where} (pid {pid}): "
                            "stop it first (./iot registry.stop) or use another --dir")
    ensure_binary(progress, dry)
    if not dry and not _port_free(host, port):
        raise RegistryError(f"port {port} on {host} is already in use by another program: choose another with --port")
    cmd = [BINARY, "serve", str(paths["config"])]
    progress(f"$ {shlex.join(cmd)} >>{paths['log']} 2>&1 &  (pid in {paths['pid']})")
    if dry:
        return LocalRegistry(host, port, None, state_dir, data_dir)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        data_dir.mkdir(parents=True, exist_ok=True)
        paths["config"].write_text(registry_config(port, data_dir, host))
    except OSError as exc:
        raise RegistryError(f"cannot write the registry's files in {state_dir}: {exc.strerror}") from None
    # REGISTRY_* variables would override the config file (distribution's env convention): drop them.
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    started = time.monotonic()
    with open(paths["log"], "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=str(state_dir), start_new_session=True, close_fds=True)
    _children[proc.pid] = proc
    paths["pid"].write_text(f"{proc.pid}\n")
    reg = LocalRegistry(host, port, proc.pid, state_dir, data_dir)
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            paths["pid"].unlink(missing_ok=True)
            _children.pop(proc.pid, None)
            raise RegistryError(f"docker-registry exited at once (exit {proc.returncode}); {paths['log']}: "
                                f"{_log_tail(paths['log'])}")
        if _answers(reg.url):
            progress(f"local registry ready in {time.monotonic() - started:.1f} s: {reg.url} (pid {proc.pid}); "
                     f"push with --registry {reg.prefix}; log {paths['log']}")
            return reg
        time.sleep(0.1)
    stop_local_registry(state_dir, progress=progress)
    raise RegistryError(f"docker-registry did not answer on {reg.url}/v2/ within {timeout:.0f} s; see {paths['log']}")


def stop_local_registry(state_dir: Path = STATE_DIR, *, progress: Progress = say, dry: bool = False,
                        timeout: float = 10.0) -> bool:
    """Stop the registry started from STATE_DIR (by the pid in its pid file). Data is kept.
    Returns False when none was running. Never signals a pid that is not a docker-registry."""
    state_dir = Path(state_dir).resolve()
    paths = _paths(state_dir)
    pid = _read_pid(paths["pid"])
    if pid is None:
        progress(f"no local registry to stop (no pid file {paths['pid']})")
        return False
    if not _alive(pid):
        progress(f"the local registry (pid {pid}) is not running any more: removing its stale pid file")
        if not dry:
            paths["pid"].unlink(missing_ok=True)
        return False
    if not _is_registry(pid):
        raise RegistryError(f"{paths['pid']} names pid {pid}, which is not docker-registry "
                            f"({' '.join(_cmdline(pid))[:60] or 'unknown'}): not stopping it; remove the stale pid file")
    progress(f"$ kill -TERM {pid}  (docker-registry, {state_dir})")
    if dry:
        return True
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        progress(f"pid {pid} did not stop within {timeout:.0f} s: kill -KILL {pid}")
        os.kill(pid, signal.SIGKILL)
        while _alive(pid) and time.monotonic() < deadline + 5:
            time.sleep(0.05)
    proc = _children.pop(pid, None)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)
    paths["pid"].unlink(missing_ok=True)
    data = yaml.safe_load(paths["config"].read_text()) if paths["config"].exists() else None
    kept = (data or {}).get("storage", {}).get("filesystem", {}).get("rootdirectory", "")
    progress(f"local registry stopped (pid {pid})" + (f"; its data is kept in {kept}" if kept else ""))
    return True
