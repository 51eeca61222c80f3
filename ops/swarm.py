"""Deploy a rendered stack to Docker Swarm and make sure it worked (`invoke deploy`, `rollback`, `undeploy`,
`scale`): the sequence, the wait for convergence, the smoke test, the rollback of what failed.

`docker stack deploy` returns 0 as soon as the service specs are accepted, even when the update then
fails and Swarm rolls it back. `deploy()` therefore checks the outcome itself:

    render -> validate (docker stack config) -> swarm mode? -> secrets/configs -> label the database node
    -> docker stack deploy --with-registry-auth --prune --resolve-image never -> wait for convergence
    -> smoke test through the published endpoint -> prune unused secrets/configs -> report

On failure the services whose update is stuck are rolled back (`docker service rollback`; one that
Swarm already rolled back is left alone), the last task errors are printed, and `SwarmError` ends the task.

The other jobs are their own modules, and their names are re-exported here (`swarm.Docker`,
`swarm.states`, …) so callers keep one import:

    ops/swarm_docker.py   the docker CLI runner (echo, --dry), the target (Docker Machine, DOCKER_HOST), swarm mode
    ops/swarm_status.py   service states, the convergence verdict, failure reasons, the status table
    ops/swarm_objects.py  secrets, configs and node labels of a stack
    ops/swarm_plan.py     the DeployPlan assembled from the env's render, the stack a task acts on
"""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from ops import http_client

# Re-exported: what the tasks and the tests use as ops.swarm.NAME.
from ops.swarm_docker import (  # noqa: F401
    STACK_LABEL,
    Docker,
    Progress,
    SwarmError,
    init_swarm,
    is_local_target,
    machine_env,
    parse_machine_env,
    published_host,
    ready_nodes,
    require_manager,
    say,
    swarm_state,
)
from ops.swarm_objects import (  # noqa: F401
    changed_secrets,
    ensure_node_labels,
    ensure_objects,
    label_constraints,
    prune_objects,
    referenced_objects,
    secret_change_notes,
)
from ops.swarm_plan import DeployPlan, StackRef, plan_from_render, prepare_deploy, stack_of, update_order_overrides  # noqa: F401
from ops.swarm_status import (  # noqa: F401
    DONE_STATES,
    ENDED,
    FAILED_UPDATE_STATES,
    STUCK_STATES,
    TELLING_LEVELS,
    ServiceState,
    failed_containers,
    failure_reason,
    health_hint,
    log_hint,
    runs_spec,
    service_state,
    service_tasks,
    stack_services,
    states,
    table,
    task_errors,
    task_log,
    verdict,
)


# -- convergence --------------------------------------------------------------------------------------
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
    resp = http_client.request(method, url, data=body, timeout=timeout,
                               headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    return resp.status_code, resp.content


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
        except (OSError, ValueError) as exc:  # no answer (requests' errors are OSErrors), or not JSON
            last = f"{api_url}: {http_client.reason(exc)}"
        time.sleep(1)
    raise SwarmError(f"smoke test failed through {', '.join(urls)}: {last}")



# -- deploy -----------------------------------------------------------------------------------------
def deploy(plan: DeployPlan, docker: Docker) -> list[ServiceState]:
    step = docker.progress
    step(f"validate: docker stack config -c {plan.stack_file}")
    docker.run("stack", "config", "-c", str(plan.stack_file), echo=False, read=True)
    if not docker.dry:
        require_manager(docker)
    if plan.external_secrets:
        ensure_objects(docker, "secret", plan.secrets, plan.stack)
        ensure_objects(docker, "config", plan.configs, plan.stack)
    if docker.dry and swarm_state(docker)[0] != "active":  # no nodes to ask: say what the run would do
        if plan.node_labels:
            step(f"would label the only node {', '.join(f'{k}={v}' for k, v in sorted(plan.node_labels.items()))} "
                 "unless a node has them (the engine is not in swarm mode now: ./iot swarm.init)")
    else:  # dry too: the nodes are read, the `docker node update` it would run is echoed
        for label in ensure_node_labels(docker, plan.node_labels):
            if not docker.dry:
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

