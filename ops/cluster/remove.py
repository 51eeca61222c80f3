"""Removing a cluster, whichever way it was made: one plan that `./iot --dry cluster.rm` prints and `cluster.rm` runs."""
from __future__ import annotations

from pathlib import Path

from .common import STATE_DIR, Progress, Step, check_name, run_steps, say
from .local import ls_local, rm_local_steps
from .names import socket_dir
from .remote import cluster_contexts, rm_contexts_steps, rm_machine_steps


def rm_plan(name: str, progress: Progress = say, state_dir: Path = STATE_DIR,
            machine: str = "docker-machine") -> list[Step]:
    """Local nodes go with their volumes, network and context; SSH hosts leave the swarm; Docker Machine nodes
    are deleted. Only what carries the cluster's name is touched; the queries made here change nothing."""
    check_name(name)
    steps = []
    if ls_local(name) or socket_dir(name, state_dir).exists():
        steps += rm_local_steps(name, state_dir)
    contexts = cluster_contexts(name)
    if any("(machine " in ctx["description"] for ctx in contexts):
        steps += rm_machine_steps(name, progress, machine)
    elif contexts:
        steps += rm_contexts_steps(name)
    return steps


def remove(name: str, progress: Progress = say, state_dir: Path = STATE_DIR, machine: str = "docker-machine") -> list[str]:
    """Run rm_plan; what was removed."""
    return run_steps(rm_plan(name, progress, state_dir, machine), progress)
