"""What a deploy needs, assembled in one place from the env's values and its render: which stack a task
acts on (`stack_of`), the overrides this swarm needs (`update_order_overrides`), and the DeployPlan
that ops/swarm.py's `deploy` carries out (`prepare_deploy` renders the env, `plan_from_render` reads
the result). The tasks only parse options and print: `./iot deploy` and `./iot --dry deploy` both come
through here, so the dry run shows the plan the real run follows.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ops import names, secrets, stack
from ops.render import RenderResult, load_values
from ops.swarm_docker import Docker, is_local_target, published_host, ready_nodes
from ops.swarm_objects import label_constraints

Progress = Callable[[str], None]


class StackRef(NamedTuple):
    name: str          # the Swarm stack: ops/names.py's stack_name, as render names it
    label_prefix: str  # the prefix of our service labels (<prefix>.version)


def stack_of(env: str, overrides: Mapping[str, Any] | None = None) -> StackRef:
    """The stack of ENV (with OVERRIDES, e.g. {"project": "acme"}) that rollback, status, scale and undeploy act on."""
    values = load_values(env, overrides)
    return StackRef(names.stack_name(values, env), values["label_prefix"])


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




def plan_from_render(result: RenderResult, *, environ: Mapping[str, str], machine: str | None = None,
                     url: str | None = None, timeout: float = 300, smoke: bool = True) -> DeployPlan:
    """The DeployPlan of a rendered env: its stack file, the Swarm names of its secrets and configs, the
    node labels its placements need, where the smoke test goes (URL, else the api's published port on
    the host of DOCKER_HOST in ENVIRON) and how this target starts over (MACHINE: the task's --machine)."""
    values = result.values
    placements = [p for name in ("influxdb", "api", "mqtt", "grafana") if name != "grafana" or result.grafana
                  for p in values[name]["deploy"]["placement"]]
    api_url = url or f"http://{published_host(environ)}:{values['api']['published_port']}"
    return DeployPlan(
        stack=result.stack_name, stack_file=result.files["stack.yaml"],
        secrets={name: result.secrets[key] for key, name in result.swarm_secret_names.items()},
        configs={name: result.config_files[key] for key, name in result.swarm_config_names.items()},
        node_labels=label_constraints(placements), api_url=api_url.rstrip("/"),
        write_token_file=result.secrets[secrets.SIMULATOR_TOKEN], read_token_file=result.secrets[secrets.API_READ_TOKEN],
        external_secrets=values["swarm"]["secrets"] == "external", label_prefix=values["label_prefix"],
        timeout=float(timeout), smoke=smoke,
        undeploy_command=f"./iot undeploy --env {result.env}" + (f" --machine {machine}" if machine else "") + " --volumes")


def prepare_deploy(env: str, overrides: Mapping[str, Any], docker: Docker, *, environ: Mapping[str, str],
                   machine: str | None = None, url: str | None = None, timeout: float = 300, smoke: bool = True,
                   progress: Progress = print) -> DeployPlan:
    """Render ENV for the swarm DOCKER talks to and return its plan. On a swarm (ready nodes to ask), the
    update order its host-mode ports need is added to OVERRIDES unless they set it; the engine, Compose
    and the offline bases are made ready only when the target is this machine's engine."""
    overrides = dict(overrides)
    nodes = ready_nodes(docker)
    if nodes:  # host-mode ports on too few nodes: start-first could never place the new task
        extra, notes = update_order_overrides(load_values(env, overrides), nodes)
        for note in notes:
            progress(f"note: {note}")
        overrides = {**extra, **overrides}
    prepared = stack.prepare(env, overrides, progress=progress, dry=docker.dry, need_engine=is_local_target(environ))
    return plan_from_render(prepared.result, environ=environ, machine=machine, url=url, timeout=timeout, smoke=smoke)
