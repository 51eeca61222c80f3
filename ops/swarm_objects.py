"""What a stack needs on the swarm besides its services: its secrets and configs (created, pruned, and
which of them a redeploy changes) and the node labels its placements ask for.

Secrets and configs carry a hash of their content in their name (ops/names.py): a changed one is a new
object, so a redeploy never tries to update an immutable one ("only updates to Labels are allowed").
The previous generation stays as long as a service's PreviousSpec uses it (rollback needs it).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ops.names import key_of
from ops.secrets import INFLUXDB_ADMIN_PASSWORD
from ops.swarm_docker import STACK_LABEL, Docker, SwarmError

# -- node labels --------------------------------------------------------------------------------------
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


def changed_secrets(services: Sequence[dict], stack: str, new_names: Iterable[str]) -> list[str]:
    """The secrets (their files' names) whose generation the running services use and this deploy
    replaces: a changed file, or a secrets/ENV folder made anew (a fresh clone) beside a kept volume."""
    running = {}
    for svc in services:
        container = ((svc.get("Spec") or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}
        for ref in container.get("Secrets") or []:
            name = ref.get("SecretName", "")
            if name.startswith(f"{stack}_"):
                running[key_of(stack, name)] = name
    return sorted(key_of(stack, n) for n in new_names
                  if n.startswith(f"{stack}_") and running.get(key_of(stack, n), n) != n)


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


