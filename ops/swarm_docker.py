"""The docker CLI as the swarm tasks run it, and the target it talks to.

`Docker` runs `docker …` with an optional extra environment (a Docker Machine's variables), echoing
every command that changes something; with `dry` it prints them instead (reads still run). Targets:
whatever the docker CLI talks to (the local engine, `DOCKER_CONTEXT`/`docker context use`,
`DOCKER_HOST=ssh://…`), or a Docker Machine node: `machine_env(NAME)` runs `docker-machine env NAME`
and returns its variables, which the task puts into its environment before any docker command.
Swarm mode itself: `swarm_state`, `require_manager`, `init_swarm`, `ready_nodes`.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ops import run as ops_run
from ops.errors import OpsError

Progress = Callable[[str], None]
STACK_LABEL = "com.docker.stack.namespace"  # what Swarm labels a stack's services, networks, volumes with


class SwarmError(OpsError):
    """A deploy (or another swarm task) that did not succeed; str() is the one line to show."""


class SwarmCommandError(ops_run.CommandError, SwarmError):
    """A docker command of a swarm task that failed (argv, status and its output's tail)."""


def say(message: str) -> None:
    print(f"swarm: {message}", file=sys.stderr, flush=True)


# -- running docker ---------------------------------------------------------------------------------
@dataclass
class Docker:
    """Runs `docker …` with an optional extra environment (a Docker Machine's variables). Echoes every
    command that changes something; `dry` prints them without running (reads then return empty)."""
    env: Mapping[str, str] = field(default_factory=dict)
    dry: bool = False
    progress: Progress = say
    binary: str = "docker"

    def _environ(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def run(self, *args: str, check: bool = True, echo: bool = True, timeout: float = 300,
            read: bool = False) -> subprocess.CompletedProcess:
        """ops.run.run with this module's defaults: the extra environment (not echoed), SwarmCommandError."""
        return ops_run.run([self.binary, *args], self.progress, dry=self.dry, read=read, echo=echo, timeout=timeout,
                           check=check, env=self.env or None, error=SwarmCommandError)

    def read(self, *args: str, check: bool = True) -> str:
        """A read-only command (inspect, ls): runs even in dry mode, never echoed."""
        return self.run(*args, check=check, echo=False, read=True).stdout

    def json(self, *args: str) -> list[dict]:
        out = self.read(*args).strip()
        return json.loads(out) if out else []


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


# -- targets ----------------------------------------------------------------------------------------
_EXPORT = re.compile(r'^\s*export\s+([A-Z_][A-Z0-9_]*)="?(.*?)"?\s*$')


def parse_machine_env(text: str) -> dict[str, str]:
    """`docker-machine env --shell bash NAME` output -> {DOCKER_HOST: …, DOCKER_TLS_VERIFY: …, …}."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _EXPORT.match(line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def machine_env(name: str, progress: Progress = say, binary: str = "docker-machine") -> dict[str, str]:
    """The docker variables of the Docker Machine node NAME (`docker-machine env --shell bash NAME`)."""
    argv = [binary, "env", "--shell", "bash", name]
    if shutil.which(binary) is None:
        raise SwarmError(f"--machine {name}: {binary} is not installed (Docker Machine is archived upstream; "
                         "prefer a docker context or DOCKER_HOST=ssh://user@host)")
    # a read (dry runs need it too), echoed like every command
    proc = ops_run.run(argv, progress, read=True, check=False, timeout=120, error=SwarmCommandError)
    if proc.returncode != 0:
        raise SwarmError(f"--machine {name}: {shlex.join(argv)} failed: {_last_line(proc.stderr)}")
    env = parse_machine_env(proc.stdout)
    if "DOCKER_HOST" not in env:
        raise SwarmError(f"--machine {name}: {shlex.join(argv)} printed no DOCKER_HOST")
    return env


def is_local_target(environ: Mapping[str, str]) -> bool:
    """No DOCKER_HOST / DOCKER_CONTEXT pointing elsewhere: the engine on this machine's default socket
    (which the tasks may install and start, and build the offline bases on)."""
    host = environ.get("DOCKER_HOST", "")
    return host in ("", "unix:///var/run/docker.sock") and environ.get("DOCKER_CONTEXT", "default") == "default"


def published_host(environ: Mapping[str, str]) -> str:
    """Where published ports answer: the host of DOCKER_HOST (tcp://H:2376, ssh://user@H), else localhost."""
    host = environ.get("DOCKER_HOST", "")
    if host.startswith(("tcp://", "ssh://", "http://", "https://")):
        return urllib.parse.urlsplit(host).hostname or "localhost"
    return "localhost"


def ready_nodes(docker: Docker) -> int:
    """Nodes of the swarm that can take tasks (ready and active); 0 when not a manager."""
    out = docker.read("node", "ls", "--format", "{{.Status}} {{.Availability}}", check=False)
    return sum(1 for line in out.splitlines() if line.split() == ["Ready", "Active"])


# -- swarm mode, nodes ------------------------------------------------------------------------------
def swarm_state(docker: Docker) -> tuple[str, bool]:
    """(LocalNodeState, ControlAvailable) of the engine: ('inactive', False) when not in swarm mode."""
    out = docker.read("info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}").split()
    return (out[0] if out else "inactive"), (len(out) > 1 and out[1] == "true")


def require_manager(docker: Docker) -> None:
    state, manager = swarm_state(docker)
    if state != "active":
        raise SwarmError(f"the engine is not in swarm mode (state {state}): `./iot swarm.init` makes a "
                         "one-node swarm here, or deploy to a manager of an existing cluster "
                         "(--machine NAME, DOCKER_CONTEXT, DOCKER_HOST=ssh://…)")
    if not manager:
        raise SwarmError("this engine is a swarm worker: deploy through a manager node")


def init_swarm(docker: Docker, advertise_addr: str = "127.0.0.1") -> bool:
    """`docker swarm init` when the engine is not in swarm mode; False when it already was."""
    state, _ = swarm_state(docker)
    if state == "active":
        docker.progress("the engine is already in swarm mode")
        return False
    docker.run("swarm", "init", "--advertise-addr", advertise_addr)
    return True

