"""Where a stack stands: each service's state from `docker service inspect` and its tasks, the verdict
of a deploy (ok, pending, failed), why a service failed (task errors, health probe, log line), and the
status table.

Convergence, per service of the stack: its UpdateStatus is absent or `completed` (or unchanged by this
deploy), and as many tasks as desired run the current spec's image. A task with a healthcheck is
`running` only once healthy (Swarm keeps it `starting` until then), so running means healthy.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ops.swarm_docker import STACK_LABEL, Docker, SwarmError

DONE_STATES = {None, "completed"}
FAILED_UPDATE_STATES = {"paused", "rollback_paused", "rollback_completed"}  # rollback_started: still moving
STUCK_STATES = {"paused", "updating"}  # `docker service rollback` helps; Swarm's own rollback is left alone


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



def table(service_states: Sequence[ServiceState]) -> str:
    rows = [("SERVICE", "REPLICAS", "VERSION", "UPDATE", "IMAGE")]
    rows += [(s.name, s.replicas_text, s.version or "-", s.update_state or "-", s.image.split("@", 1)[0])
             for s in service_states]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


