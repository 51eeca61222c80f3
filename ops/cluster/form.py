"""Forming a swarm of nodes, whatever made them: init, join, the database node's labels, a wait until all are Ready.

Each node is reached through a `docker` command prefix (`Node.docker`), so the same sequence runs through
`docker exec` into a local node, a docker context over SSH or one made from Docker Machine's TLS files.
The database node gets `iot.influxdb=true` and `iot.mqtt=true`: the stack pins InfluxDB and the broker,
and their volumes, there.
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence

from .common import ClusterError, Node, Progress, Step, later, run, run_steps, say

SWARM_PORT = 2377
DB_LABEL = "iot.influxdb=true"        # node label the stack's placement constraint asks for
MQTT_LABEL = "iot.mqtt=true"          # the broker's (its persistence volume): the same node as the database


def swarm_commands(nodes: Sequence[Node], tokens: dict[str, str]) -> list[list[str]]:
    """The `swarm join` command of every node but the first manager. Pure (for the unit tests)."""
    first = nodes[0]
    return [[*n.docker, "swarm", "join", "--token", tokens[n.role], "--advertise-addr", n.address,
             f"{first.address}:{SWARM_PORT}"] for n in nodes[1:]]


def token_name(role: str) -> str:
    return f"{role} join token"


def swarm_steps(nodes: Sequence[Node], db_node: str) -> list[Step]:
    """init on nodes[0] (a manager), the join tokens read (silently), the others' joins (the token shown and
    recorded as ***), the database node's id read and its labels added. The tokens and the node id are only
    known at run time: `<manager join token>`, `<worker join token>`, `<NODE node id>` until then."""
    if not nodes or nodes[0].role != "manager":
        raise ClusterError("the first node must be a manager")
    db = next((n for n in nodes if n.name == db_node), None)
    if db is None:
        raise ClusterError(f"database node {db_node!r} is not one of {', '.join(n.name for n in nodes)}")
    first = nodes[0]
    roles = ("manager", "worker")
    steps = [Step([*first.docker, "swarm", "init", "--advertise-addr", first.address])]
    steps += [Step([*first.docker, "swarm", "join-token", "-q", role], echo=False, gives=[token_name(role)])
              for role in roles]
    tokens = {role: later(token_name(role)) for role in roles}
    steps += [Step(cmd, mask=[token_name(node.role)]) for node, cmd in zip(nodes[1:], swarm_commands(nodes, tokens),
                                                                           strict=True)]
    node_id = f"{db.name} node id"
    steps.append(Step([*db.docker, "info", "--format", "{{.Swarm.NodeID}}"], gives=[node_id]))
    steps.append(Step([*first.docker, "node", "update", "--label-add", DB_LABEL, "--label-add", MQTT_LABEL,
                       later(node_id)]))
    return steps


def wait_note(count: int, timeout: float = 120) -> str:
    return f"then: wait up to {timeout:.0f} s for {count} Ready node(s) (docker node ls on the first manager, polled)"


def form_swarm(nodes: Sequence[Node], db_node: str, progress: Progress = say, timeout: float = 120) -> None:
    """init on nodes[0] (a manager), join the others, label the database node, wait for all Ready (swarm_steps)."""
    run_steps(swarm_steps(nodes, db_node), progress)
    wait_ready(nodes[0], len(nodes), progress, timeout)


def node_states(manager: Node) -> list[dict]:
    out = run([*manager.docker, "node", "ls", "--format", "{{json .}}"], echo=False)
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def wait_ready(manager: Node, count: int, progress: Progress = say, timeout: float = 120) -> None:
    progress(f"waiting up to {timeout:.0f} s for {count} Ready node(s)")
    deadline = time.monotonic() + timeout
    states: list[dict] = []
    while time.monotonic() < deadline:
        states = node_states(manager)
        if sum(1 for s in states if s.get("Status") == "Ready") >= count:
            return
        time.sleep(1)
    raise ClusterError(f"only {sum(1 for s in states if s.get('Status') == 'Ready')} of {count} nodes Ready "
                       f"after {timeout:.0f} s: {states}")
