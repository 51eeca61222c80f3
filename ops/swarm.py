"""Deploy a rendered stack to Docker Swarm and make sure it worked (`invoke deploy`, `rollback`, `status`,
`scale`, `swarm.init`).

`docker stack deploy` returns 0 as soon as the service specs are accepted, even when the update then
fails and Swarm rolls it back. `deploy()` therefore checks the outcome itself:

    render -> validate (docker stack config) -> swarm mode? -> secrets/configs -> label the database node
    -> docker stack deploy --with-registry-auth --prune --resolve-image never -> wait for convergence
    -> smoke test through the published endpoint -> prune unused secrets/configs -> report

Convergence, per service of the stack: its UpdateStatus is absent or `completed` (or unchanged by this
deploy), and as many tasks as desired run the current spec's image. A task with a healthcheck is
`running` only once healthy (Swarm keeps it `starting` until then), so running means healthy. On
failure the services whose update is stuck are rolled back (`docker service rollback`; one that Swarm
already rolled back is left alone), the last task errors are printed, and `SwarmError` ends the task.

Targets: whatever the docker CLI talks to (the local engine, `DOCKER_CONTEXT`/`docker context use`,
`DOCKER_HOST=ssh://…`), or a Docker Machine node: `machine_env(NAME)` runs `docker-machine env NAME`
and returns its variables, which the task puts into its environment before any docker command.

Secrets and configs carry a hash of their content in their name (ops/render.py): a changed one is a new
object, so a redeploy never tries to update an immutable one ("only updates to Labels are allowed").
The previous generation stays as long as a service's PreviousSpec uses it (rollback needs it).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ops.errors import OpsError
from ops.secrets import INFLUXDB_ADMIN_PASSWORD

Progress = Callable[[str], None]
STACK_LABEL = "com.docker.stack.namespace"
DONE_STATES = {None, "completed"}
FAILED_UPDATE_STATES = {"paused", "rollback_paused", "rollback_completed"}  # rollback_started: still moving
STUCK_STATES = {"paused", "updating"}  # `docker service rollback` helps; Swarm's own rollback is left alone


class SwarmError(OpsError):
    """A deploy (or another swarm task) that did not succeed; str() is the one line to show."""


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
        argv = [self.binary, *args]
        if echo:
            self.progress(("would run: " if self.dry and not read else "") + shlex.join(argv))
        if self.dry and not read:
            return subprocess.CompletedProcess(argv, 0, "", "")
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self._environ(),
                                  check=False)
        except FileNotFoundError:
            raise SwarmError(f"{self.binary} not found on PATH") from None
        except subprocess.TimeoutExpired:
            raise SwarmError(f"{shlex.join(argv)} did not finish within {timeout:.0f} s") from None
        if check and proc.returncode != 0:
            raise SwarmError(f"{shlex.join(argv[:4])}… failed: {_last_line(proc.stderr or proc.stdout)}")
        return proc

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
    progress(shlex.join(argv))
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except FileNotFoundError:
        raise SwarmError(f"--machine {name}: {binary} is not installed (Docker Machine is archived upstream; "
                         "prefer a docker context or DOCKER_HOST=ssh://user@host)") from None
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


def update_order_overrides(values: Mapping, ready_nodes: int) -> tuple[dict[str, str], list[str]]:
    """Host-mode published ports allow one task per node, so a start-first update needs a spare node
    (replicas < ready nodes): without one the new task stays pending ("host-mode port already in use")
    and the update hangs. Returns the overrides that make those services stop-first on this swarm, and
    a note for each. (vip/ingress, or enough nodes: nothing.)"""
    if values["swarm"]["publish_mode"] != "host":
        return {}, []
    overrides, notes = {}, []
    for name in ("api", "grafana"):
        d = values[name]["deploy"]
        if d["update_order"] == "start-first" and d["replicas"] >= ready_nodes:
            overrides[f"{name}.deploy.update_order"] = "stop-first"
            notes.append(f"{name}: {d['replicas']} replica(s) with a host-mode port on {ready_nodes} node(s): no spare "
                         "node for a start-first update, updating stop-first (clients retry the switch)")
    return overrides, notes


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


_LABEL_CONSTRAINT = re.compile(r"^\s*node\.labels\.([A-Za-z0-9_.-]+)\s*==\s*(\S+)\s*$")


def label_constraints(placements: Sequence[str]) -> dict[str, str]:
    """`["node.labels.iot.influxdb == true", "node.role == manager"]` -> {"iot.influxdb": "true"}."""
    out = {}
    for constraint in placements:
        m = _LABEL_CONSTRAINT.match(constraint)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def ensure_node_labels(docker: Docker, labels: Mapping[str, str]) -> list[str]:
    """Each node label a placement needs: present on some node, else put on the only node of a one-node
    swarm. Several nodes and none labelled: an error saying which node to label (its volume is there)."""
    if not labels:
        return []
    nodes = docker.json("node", "inspect", *docker.read("node", "ls", "-q").split())
    done = []
    for key, value in sorted(labels.items()):
        if any(n.get("Spec", {}).get("Labels", {}).get(key) == value for n in nodes):
            continue
        if len(nodes) != 1:
            raise SwarmError(f"no node has the label {key}={value} and the swarm has {len(nodes)} nodes: "
                             f"label the node that holds the data: docker node update --label-add {key}={value} NODE")
        docker.run("node", "update", "--label-add", f"{key}={value}", nodes[0]["ID"])
        done.append(f"{key}={value}")
    return done


# -- secrets and configs ----------------------------------------------------------------------------
def ensure_objects(docker: Docker, kind: str, wanted: Mapping[str, Path], stack: str) -> list[str]:
    """Create the KIND ('secret'/'config') objects of WANTED {swarm name: file} that do not exist yet
    (labelled with the stack, so `docker stack rm` removes them). Returns the names created."""
    existing = set(docker.read(kind, "ls", "--format", "{{.Name}}").split())
    created = []
    for name, path in sorted(wanted.items()):
        if name in existing:
            continue
        docker.run(kind, "create", "--label", f"{STACK_LABEL}={stack}", name, str(path))
        created.append(name)
    return created


def referenced_objects(services: Sequence[dict], kind: str) -> set[str]:
    """Names of the secrets/configs ('Secrets'/'Configs') used by the Spec or PreviousSpec of SERVICES."""
    key = "Secrets" if kind == "secret" else "Configs"
    names = set()
    for svc in services:
        for spec_key in ("Spec", "PreviousSpec"):
            container = ((svc.get(spec_key) or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}
            names.update(ref.get(f"{key[:-1]}Name", "") for ref in container.get(key) or [])
    names.discard("")
    return names


def _base_name(stack: str, swarm_name: str) -> str:
    """'iot-test_api_tokens_16b184561253' -> 'api_tokens' (the file's name in secrets/ENV)."""
    return swarm_name[len(stack) + 1:].rsplit("_", 1)[0]


def changed_secrets(services: Sequence[dict], stack: str, new_names: Iterable[str]) -> list[str]:
    """The secrets (their files' names) whose generation the running services use and this deploy
    replaces: a changed file, or a secrets/ENV folder made anew (a fresh clone) beside a kept volume."""
    running = {}
    for svc in services:
        container = ((svc.get("Spec") or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}
        for ref in container.get("Secrets") or []:
            name = ref.get("SecretName", "")
            if name.startswith(f"{stack}_"):
                running[_base_name(stack, name)] = name
    return sorted(_base_name(stack, n) for n in new_names
                  if n.startswith(f"{stack}_") and running.get(_base_name(stack, n), n) != n)


def secret_change_notes(changed: Sequence[str], undeploy_command: str) -> list[str]:
    if not changed:
        return []
    notes = [f"secrets changed since the running deploy: {', '.join(changed)} (new secrets; the services "
             "that use them are updated)"]
    if INFLUXDB_ADMIN_PASSWORD in changed:
        notes.append(f"note: {INFLUXDB_ADMIN_PASSWORD} changed, but InfluxDB keeps the admin password its data "
                     "volume was set up with: unless it was changed there first (SET PASSWORD, SECURITY.md), "
                     "the new api is refused and rolled back. Put the previous file back, or start over "
                     f"without the data: {undeploy_command}, then deploy again")
    return notes


def prune_objects(docker: Docker, kind: str, stack: str, keep: set[str]) -> list[str]:
    """Remove the stack's KIND objects that nothing uses any more (not in KEEP); in-use ones are skipped."""
    names = docker.read(kind, "ls", "--filter", f"label={STACK_LABEL}={stack}", "--format", "{{.Name}}").split()
    removed = []
    for name in sorted(set(names) - keep):
        if docker.run(kind, "rm", name, check=False).returncode == 0:
            removed.append(name)
    return removed


# -- convergence --------------------------------------------------------------------------------------
@dataclass
class ServiceState:
    name: str
    image: str
    mode: str                      # replicated | global
    desired: int | None            # None for global services
    running: int                   # tasks running (healthy, when there is a healthcheck) the current image
    update_state: str | None       # UpdateStatus.State, None when absent
    update_message: str
    update_started: str            # UpdateStatus.StartedAt ("" when absent)
    version: str                   # iot.version label of the service
    errors: list[str]              # recent task errors, newest first
    has_previous: bool             # PreviousSpec present: `docker service rollback` possible
    containers: list[str] = field(default_factory=list)  # containers of the newest ended tasks
    ended_tasks: list[str] = field(default_factory=list)  # id of the newest ended task (its log says why)

    @property
    def replicas_text(self) -> str:
        return f"{self.running}/{self.desired if self.desired is not None else '?'}"


def service_state(service: dict, tasks: Sequence[dict], label_prefix: str = "iot") -> ServiceState:
    """The state of one service from `docker service inspect` JSON and its tasks' `docker inspect` JSON."""
    spec = service.get("Spec", {})
    mode_spec = spec.get("Mode", {})
    mode = "global" if "Global" in mode_spec else "replicated"
    desired = (mode_spec.get("Replicated") or {}).get("Replicas") if mode == "replicated" else None
    image = ((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image", "")
    update = service.get("UpdateStatus") or {}
    current = [t for t in tasks if t.get("DesiredState") == "running"]
    container = (spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
    running = sum(1 for t in current if (t.get("Status") or {}).get("State") == "running"
                  and runs_spec(((t.get("Spec") or {}).get("ContainerSpec") or {}), container))
    if mode == "global":
        desired = len(current) or None
    return ServiceState(
        name=spec.get("Name", service.get("ID", "?")), image=image, mode=mode, desired=desired, running=running,
        update_state=update.get("State") or None, update_message=update.get("Message", ""),
        update_started=update.get("StartedAt", ""), version=(spec.get("Labels") or {}).get(f"{label_prefix}.version", ""),
        errors=task_errors(tasks), has_previous=bool(service.get("PreviousSpec")),
        containers=failed_containers(tasks), ended_tasks=[t["ID"] for t in _ended(tasks)[:1] if t.get("ID")])


def runs_spec(task: Mapping, service: Mapping) -> bool:
    """Does a task's ContainerSpec match the service's current one (image without digest, env, labels,
    secret and config names)? A task of the previous spec still running is not converged."""
    def key(c: Mapping) -> tuple:
        return (str(c.get("Image", "")).split("@", 1)[0], sorted(c.get("Env") or []),
                sorted((c.get("Labels") or {}).items()),
                sorted(s.get("SecretName", "") for s in c.get("Secrets") or []),
                sorted(s.get("ConfigName", "") for s in c.get("Configs") or []))
    return key(task) == key(service)


ENDED = ("failed", "rejected", "complete")  # a long-running task that completed has exited: also a failure


def _ended(tasks: Sequence[dict]) -> list[dict]:
    """Tasks that ended badly (or carry an error), newest first."""
    out = [t for t in tasks if (t.get("Status") or {}).get("Err") or (t.get("Status") or {}).get("State") in ENDED]
    return sorted(out, key=lambda t: (t.get("Status") or {}).get("Timestamp", ""), reverse=True)


def task_errors(tasks: Sequence[dict], limit: int = 3) -> list[str]:
    """The last task errors, newest first: 'task <id12> (<image>) <state>: <err or message>'."""
    out = []
    for t in _ended(tasks)[:limit]:
        status = t.get("Status") or {}
        image = (((t.get("Spec") or {}).get("ContainerSpec") or {}).get("Image", "")).split("@", 1)[0]
        out.append(f"task {t.get('ID', '?')[:12]} ({image}) {status.get('State', '')}: "
                   f"{status.get('Err') or status.get('Message', '')}".rstrip(": "))
    return out


def failed_containers(tasks: Sequence[dict], limit: int = 2) -> list[str]:
    """Container ids of the newest ended tasks (their health log tells why, where they still exist)."""
    ids = [((t.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID", "") for t in _ended(tasks)]
    return [i for i in ids if i][:limit]


def health_hint(health_json: str) -> str:
    """`docker inspect --format '{{json .State.Health}}'` -> 'unhealthy: last probe exit 1: <output>'."""
    try:
        health = json.loads(health_json or "null")
    except ValueError:
        return ""
    if not health:
        return ""
    log = health.get("Log") or []
    # A probe killed because the container was being stopped (exit 137) says nothing: the one before does.
    telling = [entry for entry in log if entry.get("ExitCode") != 137] or log
    last = telling[-1] if telling else {}
    lines = [line.strip() for line in (last.get("Output") or "").splitlines() if line.strip()]
    output = lines[-1][-200:] if lines else ""
    return f"health {health.get('Status', '?')}" + (f": last probe exit {last.get('ExitCode')}" if last else "") \
        + (f": {output}" if output else "")


TELLING_LEVELS = {"warning", "warn", "error", "critical", "fatal", "panic"}


def log_hint(log_text: str) -> str:
    """The telling line of a failed task's log (`docker service logs --raw TASK`): its last warning or
    error, from our JSON lines (msg: error) or logfmt ones (influxd's `lvl=error`); else its last line
    that is not a structured info line (a traceback's exception, a plain message). '' when none: a
    process that only logged info lines stopped because it was stopped (a failing healthcheck)."""
    plain = ""
    for line in reversed([line.strip() for line in log_text.splitlines() if line.strip()]):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            if str(record.get("level", "")).lower() in TELLING_LEVELS:
                return "log: " + ": ".join(str(record[k]) for k in ("msg", "error") if record.get(k))[:400]
        elif re.search(r"\b(lvl|level)=(warn|warning|error|crit|fatal|panic)\b", line):
            return "log: " + line[:400]
        elif not plain and not re.search(r"\b(lvl|level)=", line):
            plain = line
    return f"log: {plain[:400]}" if plain else ""


def task_log(docker: Docker, task_id: str, lines: int = 50) -> str:
    """The end of a task's log, its stdout and stderr (`docker service logs` reaches any node); '' when
    the swarm no longer has it."""
    proc = docker.run("service", "logs", "--raw", "--no-task-ids", "--tail", str(lines), task_id,
                      check=False, echo=False, read=True, timeout=30)
    return proc.stdout + proc.stderr if proc.returncode == 0 else ""


def verdict(state: ServiceState, before: tuple[str | None, str] | None) -> str:
    """'ok', 'pending' or 'failed' for one service. BEFORE is (update state, started) before this deploy:
    an update status that this deploy did not change (e.g. an old rollback) says nothing about it."""
    update_state = state.update_state
    if before is not None and (update_state, state.update_started) == before:
        update_state = "completed" if update_state in FAILED_UPDATE_STATES | {"completed"} else update_state
    if update_state in FAILED_UPDATE_STATES:
        return "failed"
    if update_state not in DONE_STATES:
        return "pending"
    if state.desired is not None and state.running < state.desired:
        return "pending"
    return "ok"


def failure_reason(state: ServiceState) -> str:
    parts = []
    if state.update_state in FAILED_UPDATE_STATES | STUCK_STATES:
        parts.append(f"update {state.update_state}"
                     + (f" ({state.update_message})" if state.update_message else ""))
    parts.append(f"{state.replicas_text} tasks running {state.image}")
    if state.errors:
        parts.append("last task errors: " + "; ".join(state.errors))
    return ", ".join(parts)


def stack_services(docker: Docker, stack: str) -> list[dict]:
    ids = docker.read("service", "ls", "-q", "--filter", f"label={STACK_LABEL}={stack}").split()
    return sorted(docker.json("service", "inspect", *ids), key=lambda s: s["Spec"]["Name"]) if ids else []


def service_tasks(docker: Docker, service: str) -> list[dict]:
    ids = docker.read("service", "ps", "-q", "--no-trunc", service, check=False).split()
    if not ids:
        return []
    # Swarm prunes old tasks (its task history limit) at any time, so one listed a moment ago may be gone:
    # `docker inspect` then prints the others and exits 1 ("task … not found"). Gone is skipped; any other
    # error is one.
    proc = docker.run("inspect", "--type", "task", *ids, check=False, echo=False, read=True)
    problems = [line for line in proc.stderr.splitlines() if line.strip() and "not found" not in line]
    if proc.returncode != 0 and problems:
        raise SwarmError(f"docker inspect --type task… failed: {problems[-1].strip()}")
    out = proc.stdout.strip()
    return json.loads(out) if out else []


def states(docker: Docker, stack: str, label_prefix: str = "iot",
           services: Sequence[dict] | None = None) -> list[ServiceState]:
    """The stack's services' states; SERVICES when the caller already has `stack_services()`."""
    return [service_state(s, service_tasks(docker, s["Spec"]["Name"]), label_prefix)
            for s in (stack_services(docker, stack) if services is None else services)]


def wait_converged(docker: Docker, stack: str, before: Mapping[str, tuple[str | None, str]], timeout: float,
                   label_prefix: str = "iot", poll: float = 2.0) -> tuple[list[ServiceState], list[ServiceState]]:
    """Poll until every service is ok, one failed (and the rest are not pending), or TIMEOUT. Returns
    (all states, failed ones); on timeout the pending ones count as failed."""
    deadline = time.monotonic() + timeout
    last_line = ""
    while True:
        current = states(docker, stack, label_prefix)
        verdicts = {s.name: verdict(s, before.get(s.name)) for s in current}
        line = ", ".join(f"{s.name} {s.replicas_text} {s.update_state or '-'}" for s in current)
        if line != last_line:
            docker.progress(f"waiting: {line}")
            last_line = line
        failed = [s for s in current if verdicts[s.name] == "failed"]
        pending = [s for s in current if verdicts[s.name] == "pending"]
        if current and not pending:
            return current, failed
        if time.monotonic() >= deadline:
            return current, failed + pending
        time.sleep(poll)


def rollback_services(docker: Docker, failed: Sequence[ServiceState]) -> list[str]:
    """`docker service rollback` for the services whose update is stuck (paused, or still updating at the
    timeout). Those Swarm already rolled back are not rolled again (that would re-apply the bad spec)."""
    done = []
    for s in failed:
        if s.has_previous and (s.update_state in STUCK_STATES or s.update_state is None
                               or s.update_state == "completed"):
            if docker.run("service", "rollback", "--detach", s.name, check=False).returncode == 0:
                done.append(s.name)
    return done


# -- smoke test -------------------------------------------------------------------------------------
def _http(method: str, url: str, token: str, body: bytes | None = None, timeout: float = 5) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method,  # noqa: S310 (our http:// endpoint)
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def smoke_test(api_url: str, write_token: str, read_token: str, timeout: float = 60,
               progress: Progress = say) -> str:
    """POST one reading with the write token, read it back with the read token, through API_URL.
    API_URL may list several URLs separated by commas (e.g. every node of a cluster whose api publishes
    host-mode ports on some nodes only): each attempt goes to the next one in turn.
    Returns its sensor_id; SwarmError when either step does not succeed within TIMEOUT."""
    urls = [u.strip().rstrip("/") for u in api_url.split(",") if u.strip()] or [api_url]
    attempt = 0
    sensor = f"smoke-{uuid.uuid4().hex[:10]}"
    ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = json.dumps({"ts": ts, "type": "temp", "value": 21.5, "sensor_id": sensor}).encode()
    deadline = time.monotonic() + timeout
    last = "no answer"
    stored = False
    while time.monotonic() < deadline:
        api_url, attempt = urls[attempt % len(urls)], attempt + 1
        try:
            if not stored:
                code, answer = _http("POST", f"{api_url}/data", write_token, body)
                stored = code == 201
                last = f"POST /data answered {code} {answer[:200]!r}"
            if stored:
                code, answer = _http("GET", f"{api_url}/data?sensor_id={sensor}", read_token)
                if code == 200 and json.loads(answer).get("count") == 1:
                    progress(f"smoke test passed: reading of {sensor} stored and read back through {api_url}")
                    return sensor
                last = f"GET /data?sensor_id={sensor} answered {code} {answer[:200]!r}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = f"{api_url}: {getattr(exc, 'reason', exc)}"
        time.sleep(1)
    raise SwarmError(f"smoke test failed through {', '.join(urls)}: {last}")


# -- status -----------------------------------------------------------------------------------------
def table(service_states: Sequence[ServiceState]) -> str:
    rows = [("SERVICE", "REPLICAS", "VERSION", "UPDATE", "IMAGE")]
    rows += [(s.name, s.replicas_text, s.version or "-", s.update_state or "-", s.image.split("@", 1)[0])
             for s in service_states]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


# -- deploy -----------------------------------------------------------------------------------------
@dataclass
class DeployPlan:
    stack: str
    stack_file: Path
    secrets: dict[str, Path]        # swarm name -> file
    configs: dict[str, Path]        # swarm name -> file
    node_labels: dict[str, str]     # labels the placements need
    api_url: str
    write_token_file: Path
    read_token_file: Path
    external_secrets: bool = False  # values swarm.secrets=external: created here, not by stack deploy
    label_prefix: str = "iot"
    timeout: float = 300
    smoke: bool = True
    undeploy_command: str = "./iot undeploy --volumes"  # how this target starts over without its data


def deploy(plan: DeployPlan, docker: Docker) -> list[ServiceState]:
    step = docker.progress
    step(f"validate: docker stack config -c {plan.stack_file}")
    docker.run("stack", "config", "-c", str(plan.stack_file), echo=False, read=True)
    if not docker.dry:
        require_manager(docker)
    if plan.external_secrets:
        ensure_objects(docker, "secret", plan.secrets, plan.stack)
        ensure_objects(docker, "config", plan.configs, plan.stack)
    if not docker.dry:
        for label in ensure_node_labels(docker, plan.node_labels):
            step(f"labelled the only node {label} (placement of the stateful services)")
    running = [] if docker.dry else stack_services(docker, plan.stack)
    before = {s.name: (s.update_state, s.update_started)
              for s in states(docker, plan.stack, plan.label_prefix, running)}
    for line in secret_change_notes(changed_secrets(running, plan.stack, plan.secrets), plan.undeploy_command):
        step(line)
    docker.run("stack", "deploy", "--with-registry-auth", "--prune", "--resolve-image", "never",
               "-c", str(plan.stack_file), plan.stack, timeout=600)
    if docker.dry:
        step(f"would wait for convergence (timeout {plan.timeout:.0f} s), smoke test {plan.api_url}, "
             "prune unused secrets and configs")
        return []
    step(f"waiting for every service of {plan.stack} to converge (timeout {plan.timeout:.0f} s)")
    time.sleep(2)  # let the orchestrator start the updates it was just given
    current, failed = wait_converged(docker, plan.stack, before, plan.timeout, plan.label_prefix)
    if failed:
        _fail(docker, plan, failed, "did not converge")
    if plan.smoke:
        try:
            smoke_test(plan.api_url, plan.write_token_file.read_text().strip(),
                       plan.read_token_file.read_text().strip(), progress=step)
        except SwarmError as exc:
            updated = [s for s in current if (s.update_state, s.update_started) != before.get(s.name)]
            _fail(docker, plan, updated, str(exc), reason_given=True)
    services = stack_services(docker, plan.stack)
    for kind, wanted in (("secret", plan.secrets), ("config", plan.configs)):
        removed = prune_objects(docker, kind, plan.stack, referenced_objects(services, kind) | set(wanted))
        if removed:
            step(f"removed unused {kind}s: {', '.join(removed)}")
    return current


def _fail(docker: Docker, plan: DeployPlan, failed: Sequence[ServiceState], what: str,
          reason_given: bool = False) -> None:
    names = ", ".join(s.name for s in failed) or plan.stack
    for s in failed:
        hints = [health_hint(docker.read("inspect", "--type", "container", "--format", "{{json .State.Health}}", c,
                                         check=False)) for c in s.containers]
        # The newest failed task's own words (any node: `docker service logs` asks the swarm).
        logs = [log_hint(task_log(docker, t)) for t in s.ended_tasks]
        s.errors = list(dict.fromkeys(s.errors + [h for h in hints + logs if h]))  # two tasks, one probe line
        docker.progress(f"FAILED {s.name}: {failure_reason(s)}")
    rolled = rollback_services(docker, failed)
    if rolled:
        docker.progress(f"rolled back: {', '.join(rolled)}; waiting for them")
    if not docker.dry:  # the previous version running again (Swarm's own rollback, or ours)
        after = {s.name: (s.update_state, s.update_started) for s in states(docker, plan.stack, plan.label_prefix)
                 if s.update_state != "rollback_started"}
        wait_converged(docker, plan.stack, after, min(plan.timeout, 120), plan.label_prefix)
    detail = what if reason_given else f"{what}: " + "; ".join(f"{s.name}: {failure_reason(s)}" for s in failed)
    raise SwarmError(f"deploy of {plan.stack} failed ({names}): {detail}")


def rollback(docker: Docker, stack: str, services: Sequence[str] = ()) -> list[str]:
    """`docker service rollback` of SERVICES (names without the stack prefix), default every service
    of the stack that has a previous spec."""
    known = {s["Spec"]["Name"]: s for s in stack_services(docker, stack)}
    if not known and not docker.dry:
        raise SwarmError(f"no stack {stack} on this swarm")
    names = [f"{stack}_{n}" if not n.startswith(f"{stack}_") else n for n in services] or sorted(
        n for n, s in known.items() if s.get("PreviousSpec"))
    for name in names:
        if name not in known and not docker.dry:
            raise SwarmError(f"no service {name} in stack {stack} (known: {', '.join(sorted(known))})")
        docker.run("service", "rollback", name)
    return names


def scale(docker: Docker, stack: str, counts: Mapping[str, int]) -> None:
    args = [f"{name if name.startswith(stack + '_') else f'{stack}_{name}'}={n}" for name, n in sorted(counts.items())]
    docker.run("service", "scale", *args, timeout=600)


def remove_stack(docker: Docker, stack: str, timeout: float = 60) -> None:
    """`docker stack rm`, then wait until its tasks and networks are gone (the command returns early)."""
    docker.run("stack", "rm", stack, check=False)
    deadline = time.monotonic() + timeout
    while not docker.dry and time.monotonic() < deadline:
        left = docker.read("ps", "-aq", "--filter", f"label={STACK_LABEL}={stack}", check=False).split()
        nets = docker.read("network", "ls", "-q", "--filter", f"label={STACK_LABEL}={stack}", check=False).split()
        if not left and not nets:
            return
        time.sleep(1)


def undeploy(docker: Docker, stack: str, volumes: bool = False, timeout: float = 90) -> list[str]:
    """Remove a stack and wait until its containers and networks are gone; with `volumes`, then delete
    its volumes on this node (Swarm leaves them, and a volume stays "in use" until its container is
    removed, which `docker stack rm` does not wait for). Returns the volumes deleted."""
    if not docker.dry and stack not in docker.read("stack", "ls", "--format", "{{.Name}}", check=False).split():
        say(f"no stack {stack} on this swarm")
    remove_stack(docker, stack, timeout)
    flt = f"label={STACK_LABEL}={stack}"
    if docker.dry:  # every command it would run, the volumes' too (named from what this node holds now)
        docker.progress(f"would wait until the containers and networks of {stack} are gone (timeout {timeout:.0f} s)")
        if volumes:
            try:
                found, why = docker.read("volume", "ls", "-q", "--filter", flt).split(), "none on this node now"
            except SwarmError as exc:  # no engine to ask: the plan can still be printed
                found, why = [], f"not listed: {exc}"
            for volume in found:
                docker.run("volume", "rm", volume, check=False)
            if not found:
                docker.progress(f"would run: docker volume rm on each volume with {flt} ({why})")
        return []
    left = docker.read("ps", "-aq", "--filter", flt, check=False).split()
    if left:
        raise SwarmError(f"{len(left)} container(s) of {stack} still there after {timeout:.0f} s; "
                         f"see `docker ps -a --filter {flt}`")
    if not volumes:
        return []
    deleted = []
    for volume in docker.read("volume", "ls", "-q", "--filter", flt, check=False).split():
        for _ in range(10):  # a removed container can hold its volume a moment longer
            if docker.run("volume", "rm", volume, check=False).returncode == 0:
                deleted.append(volume)
                break
            time.sleep(1)
        else:
            raise SwarmError(f"volume {volume} of {stack} could not be deleted (still in use?)")
    return deleted

