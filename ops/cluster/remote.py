"""Remote nodes: existing Docker hosts over SSH, or Docker Machine nodes, each reached through a docker context.

- `create_ssh(name, hosts)`: existing hosts with Docker (`user@host`, the first `managers` of them
  managers): one docker context per host (`host=ssh://user@host`), then the swarm formed through those
  contexts. `rm_contexts` leaves the swarm on every node and removes the contexts.
- `create_machine(name, driver, managers, workers)`: `docker-machine create --driver D NODE` per node,
  its address (`docker-machine ip`) and TLS files (`docker-machine config`) become a docker context,
  then the swarm formed. Docker Machine is archived upstream; without it installed this ends in one clear
  `ClusterError`. It cannot be exercised here (no VMs, no cloud account): the unit tests run it against
  a recording stand-in `docker-machine` and assert the exact command sequence.

`plan_ssh` and `plan_machine` are the one source of those commands: `./iot --dry cluster.create` shows
them (`Plan.show`), `create_ssh` and `create_machine` run them (`Plan.run`); what is only known at run
time (a machine's address, a join token, a node id) is written `<…>` in the dry run.

The contexts carry the description `iot cluster NAME (…)`; `ls_contexts` lists them.
"""
from __future__ import annotations

import json
import re
import shlex
import shutil
import time
from collections.abc import Sequence

from .common import (
    DESCRIPTION,
    Cluster,
    ClusterError,
    Node,
    Plan,
    Progress,
    Step,
    check_name,
    context_name,
    later,
    node_names,
    run,
    run_steps,
    say,
)
from .form import swarm_steps, wait_note, wait_ready


# -- existing hosts over SSH (docker contexts) -----------------------------------------------------------
def host_address(user_at_host: str) -> str:
    """user@host[:port] -> host (what the swarm advertises)."""
    host = user_at_host.rsplit("@", 1)[-1]
    if host.startswith("["):  # [v6]:port
        return host[1:].split("]", 1)[0]
    return host.split(":", 1)[0] if host.count(":") == 1 else host


def ssh_nodes(name: str, hosts: Sequence[str], managers: int = 1) -> list[tuple[Node, list[str]]]:
    """[(node, its `docker context create` command)] for user@host entries; the first MANAGERS are managers."""
    check_name(name)
    if not hosts:
        raise ClusterError("--ssh needs at least one user@host")
    if not 1 <= managers <= len(hosts):
        raise ClusterError(f"--managers {managers}: between 1 and the number of hosts ({len(hosts)})")
    out = []
    for index, target in enumerate(hosts):
        if "@" not in target:
            raise ClusterError(f"{target!r}: give hosts as user@host (the user must be able to run docker)")
        role = "manager" if index < managers else "worker"
        ctx = f"{context_name(name)}-{index + 1}"
        create = ["docker", "context", "create", ctx, "--description", f"{DESCRIPTION} {name} (ssh, {role})",
                  "--docker", f"host=ssh://{target}"]
        out.append((Node(ctx, role, host_address(target), ["docker", "--context", ctx]), create))
    return out


def plan_ssh(name: str, hosts: Sequence[str], managers: int = 1, db_node: int = 1) -> Plan:
    """What create_ssh runs: a context per host, a `docker info` through each (fails early, naming an unreachable
    host), then the swarm's forming (swarm_steps). db_node: 1-based index of the database host."""
    planned = ssh_nodes(name, hosts, managers)
    if not 1 <= db_node <= len(planned):
        raise ClusterError(f"--db-node {db_node}: between 1 and the number of hosts ({len(planned)})")
    nodes = [node for node, _ in planned]
    steps = [Step(create) for _, create in planned]
    steps += [Step([*node.docker, "info", "--format", "{{.ServerVersion}}"]) for node in nodes]
    db = nodes[db_node - 1].name
    return Plan(steps + swarm_steps(nodes, db), nodes, db, [wait_note(len(nodes))])


def create_ssh(name: str, hosts: Sequence[str], managers: int = 1, progress: Progress = say,
               db_node: int = 1) -> Cluster:
    """Form a swarm of existing Docker hosts reached over SSH (plan_ssh, then a wait until all are Ready)."""
    started = time.monotonic()
    plan = plan_ssh(name, hosts, managers, db_node)
    nodes = plan.run(progress)
    wait_ready(nodes[0], len(nodes), progress)
    return Cluster(name, "ssh", nodes, plan.db_node, nodes[0].name, f"ssh://{hosts[0]}", time.monotonic() - started)


def ls_contexts() -> list[dict]:
    """Docker contexts made by create_ssh / create_machine / create_local: [{name, description, endpoint}]."""
    out = run(["docker", "context", "ls", "--format", "{{json .}}"], echo=False, check=False)
    rows = []
    for line in out.splitlines():
        try:
            ctx = json.loads(line)
        except ValueError:
            continue
        if str(ctx.get("Description", "")).startswith(DESCRIPTION + " "):
            rows.append({"name": ctx.get("Name"), "description": ctx.get("Description"),
                         "endpoint": ctx.get("DockerEndpoint")})
    return rows


def cluster_contexts(name: str) -> list[dict]:
    return [c for c in ls_contexts() if c["description"].split(" (")[0] == f"{DESCRIPTION} {name}"]


def rm_contexts_steps(name: str, leave: bool = True) -> list[Step]:
    """An SSH (or Machine) cluster: `swarm leave --force` on every node (workers first), then its contexts go."""
    contexts = sorted(cluster_contexts(name), key=lambda c: "manager" in c["description"])
    steps = [Step(["docker", "--context", ctx["name"], "swarm", "leave", "--force"], check=False)
             for ctx in (contexts if leave else [])]
    return steps + [Step(["docker", "context", "rm", "--force", ctx["name"]], [ctx["name"]], check=False)
                    for ctx in contexts]


def rm_contexts(name: str, progress: Progress = say, leave: bool = True) -> list[str]:
    """Run rm_contexts_steps; the contexts removed."""
    return run_steps(rm_contexts_steps(name, leave), progress)


# -- Docker Machine --------------------------------------------------------------------------------------
MACHINE_INSTALL_HINT = ("docker-machine is not installed (it is archived upstream: "
                        "https://github.com/docker/machine). Install a release binary on PATH, or use "
                        "--ssh user@host … for hosts that already run Docker, or --driver local")


def parse_machine_config(text: str) -> dict[str, str]:
    """`docker-machine config NODE` (`--tlsverify --tlscacert="…" --tlscert="…" --tlskey="…" -H=tcp://…`)
    -> {host, ca, cert, key}."""
    out: dict[str, str] = {}
    names = {"--tlscacert": "ca", "--tlscert": "cert", "--tlskey": "key", "-H": "host"}
    for word in shlex.split(text):
        key, sep, value = word.partition("=")
        if sep and key in names:
            out[names[key]] = value
    missing = {"host", "ca", "cert", "key"} - set(out)
    if missing:
        raise ClusterError(f"docker-machine config: missing {', '.join(sorted(missing))} in {text!r}")
    return out


def machine_create_command(driver: str, node: str, options: Sequence[str] = ()) -> list[str]:
    return ["docker-machine", "create", "--driver", driver, *options, node]


TLS_KEYS = ("host", "ca", "cert", "key")
# A driver flag whose name says it holds a secret (--digitalocean-access-token=…, --amazonec2-secret-key=…).
SECRET_FLAG = re.compile(r"--[\w-]*(token|secret|password|key)[\w-]*=", re.IGNORECASE)


def secret_values(options: Sequence[str]) -> list[str]:
    """The values of the secret-looking `--flag=value` options, to show and record as ***. Pure."""
    return [opt.split("=", 1)[1] for opt in options if SECRET_FLAG.match(opt) and opt.split("=", 1)[1]]


def plan_machine(name: str, driver: str, managers: int = 1, workers: int = 2, options: Sequence[str] = (),
                 machine: str = "docker-machine") -> Plan:
    """What create_machine runs: per node `docker-machine create`, its address (`ip`) and TLS files (`config`),
    a docker context from them; then the swarm's forming (swarm_steps). The addresses and TLS files are
    only known at run time (`<NODE ip>`, `<NODE tls host>`, …)."""
    check_name(name)
    steps, nodes = [], []
    for node, role in node_names(name, managers, workers):
        tls = [f"{node} tls {key}" for key in TLS_KEYS]
        ctx = f"{context_name(name)}-{node.removeprefix(name + '-')}"
        steps += [Step([machine, *machine_create_command(driver, node, options)[1:]], timeout=1800,
                       hide=secret_values(options)),
                  Step([machine, "ip", node], gives=[f"{node} ip"]),
                  Step([machine, "config", node], gives=tls, parse=_tls_values),
                  Step(["docker", "context", "create", ctx, "--description",
                        f"{DESCRIPTION} {name} (machine {driver}, {role})", "--docker",
                        ",".join(f"{key}={later(value)}" for key, value in zip(TLS_KEYS, tls, strict=True))])]
        nodes.append(Node(node, role, later(f"{node} ip"), ["docker", "--context", ctx]))
    return Plan(steps + swarm_steps(nodes, nodes[0].name), nodes, nodes[0].name, [wait_note(len(nodes))])


def _tls_values(config: str) -> list[str]:
    tls = parse_machine_config(config)
    return [tls[key] for key in TLS_KEYS]


def create_machine(name: str, driver: str, managers: int = 1, workers: int = 2, progress: Progress = say,
                   options: Sequence[str] = (), machine: str = "docker-machine") -> Cluster:
    """Docker Machine nodes (plan_machine: one `docker-machine create` each, one context per node, the swarm
    formed), then a wait until all are Ready.

    options: driver flags passed to every create (e.g. --digitalocean-access-token=…,
    --generic-ip-address=…). Cannot run here: no hypervisor, no cloud account (unit-tested against a
    recording stand-in)."""
    plan = plan_machine(name, driver, managers, workers, options, machine)
    if shutil.which(machine) is None:
        raise ClusterError(MACHINE_INSTALL_HINT)
    started = time.monotonic()
    nodes = plan.run(progress)
    wait_ready(nodes[0], len(nodes), progress)
    first_ctx = nodes[0].docker[-1]
    return Cluster(name, f"machine {driver}", nodes, plan.db_node, first_ctx, None, time.monotonic() - started)


def rm_machine_steps(name: str, progress: Progress = say, machine: str = "docker-machine") -> list[Step]:
    """`docker-machine rm -y` of the cluster's nodes (named NAME-m…/NAME-w…), then its contexts."""
    if shutil.which(machine) is None:
        raise ClusterError(MACHINE_INSTALL_HINT)
    names = [n for n in run([machine, "ls", "-q"], progress).split() if re.fullmatch(rf"{re.escape(name)}-[mw]\d+", n)]
    steps = [Step([machine, "rm", "-y", *names], names, timeout=1800)] if names else []
    return steps + rm_contexts_steps(name, leave=False)


def rm_machine(name: str, progress: Progress = say, machine: str = "docker-machine") -> list[str]:
    """Run rm_machine_steps; what was removed (machines, then contexts)."""
    return run_steps(rm_machine_steps(name, progress, machine), progress)
