"""What every cluster driver shares: the error, the command runner, the names, the Node and Cluster records."""
from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ops import run as runner
from ops.errors import OpsError

Progress = Callable[[str], None]

ROOT = Path(__file__).resolve().parents[2]
STATE_DIR = ROOT / "build" / "clusters"
LABEL = "iot.cluster"                 # value: the cluster name
ROLE_LABEL = "iot.cluster.role"       # manager | worker | registry
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
DESCRIPTION = "iot cluster"           # the start of the description of every docker context made for a cluster


class ClusterError(OpsError):
    """A cluster step failed; the message says which and shows the end of its output."""


def say(message: str) -> None:
    print(f"cluster: {message}", file=sys.stderr, flush=True)


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ClusterError(f"cluster name {name!r}: use lower-case letters, digits and '-', starting with a letter "
                           "(at most 31 characters)")
    return name


def context_name(name: str) -> str:
    return f"iot-{name}"


def node_names(name: str, managers: int, workers: int) -> list[tuple[str, str]]:
    """[(node name, role)]: NAME-m1…, NAME-w1… (host names and swarm node names alike)."""
    if managers < 1:
        raise ClusterError("a swarm needs at least one manager")
    if workers < 0:
        raise ClusterError("workers cannot be negative")
    return ([(f"{name}-m{i}", "manager") for i in range(1, managers + 1)]
            + [(f"{name}-w{i}", "worker") for i in range(1, workers + 1)])


@dataclass
class Node:
    name: str
    role: str                   # manager | worker
    address: str                # advertised to the swarm (an IP or a host name the others reach)
    docker: list[str]           # command prefix that runs `docker` against this node's engine


class ClusterCommandError(runner.CommandError, ClusterError):
    """A cluster command that failed (argv, status and its output's tail)."""


def run(cmd: Sequence[str], progress: Progress = say, *, input_file: Path | None = None, check: bool = True,
        timeout: float | None = 300, echo: bool = True, env: dict[str, str] | None = None, dry: bool = False,
        mask: Sequence[str] = ()) -> str:
    """ops.run.run with this module's defaults: stdout returned stripped, ClusterCommandError on failure.
    dry: echo `would run: CMD` (recorded) and run nothing; mask: secrets (a join token) shown as ***."""
    return runner.run(cmd, progress, stdin_file=input_file, check=check, timeout=timeout, echo=echo, env=env,
                      dry=dry, mask=mask, error=ClusterCommandError).stdout.strip()


class Step(NamedTuple):
    """One command of a plan that `--dry` prints and the run runs, and what it removes (as rm prints it).

    A plan may hold values only known at run time, written `<NAME>` in its arguments: a step that gives them
    (gives: their names; parse: its output -> their values, default the whole output) fills every later
    `<NAME>`. mask: names of such values that are secrets (a join token), shown and recorded as ***;
    hide: secrets given up front (a driver's access token), shown and recorded as *** too."""
    cmd: list[str]
    removes: Sequence[str] = ()
    check: bool = True
    timeout: float = 300
    echo: bool = True
    gives: Sequence[str] = ()
    parse: Callable[[str], Sequence[str]] | None = None
    mask: Sequence[str] = ()
    hide: Sequence[str] = ()


def later(name: str) -> str:
    """How a value only known at run time is written in a plan's arguments (and shown by --dry)."""
    return f"<{name}>"


def fill(arg: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        arg = arg.replace(later(name), value)
    return arg


def run_steps(steps: Sequence[Step], progress: Progress = say, *, dry: bool = False,
              values: dict[str, str] | None = None) -> list[str]:
    """Run the steps in order (dry: echo each as `would run:`, run nothing); what they removed.
    values: the run-time values the steps give, filled into the later steps (updated in place)."""
    values = {} if values is None else values
    removed: list[str] = []
    for step in steps:
        cmd = [fill(a, values) for a in step.cmd]
        secrets = [values.get(name, later(name)) for name in step.mask] + list(step.hide)  # dry: <NAME> masked
        out = run(cmd, progress, check=step.check, timeout=step.timeout, echo=step.echo, dry=dry, mask=secrets)
        if step.gives and not dry:
            given = step.parse(out) if step.parse else [out]
            values.update(zip(step.gives, given, strict=True))
        removed += step.removes
    return removed


@dataclass
class Plan:
    """The commands a cluster task runs, in order: `--dry` echoes them (`would run:`, recorded like the real
    run's `$` lines), the run runs them; values known only at run time appear as `<NAME>`, the notes say
    where each comes from and what follows the commands."""
    steps: list[Step]
    nodes: list[Node] = field(default_factory=list)   # their addresses may be <NAME>s until run() fills them
    db_node: str = ""
    notes: list[str] = field(default_factory=list)

    def sources(self) -> list[str]:
        """Where the run-time values come from, one line per step that gives some."""
        out = []
        for step in self.steps:
            if step.gives:
                secret = "; read silently, a secret: shown as ***" if not step.echo else ""
                out.append(f"  {', '.join(map(later, step.gives))}: from `{shlex.join(step.cmd)}`{secret}")
        return out

    def show(self, progress: Progress = print) -> None:
        """What `./iot --dry cluster.create` prints: every command (through ops.run: recorded), then the notes."""
        run_steps(self.steps, progress, dry=True)
        for line in self.notes + (["known only at run time:", *self.sources()] if self.sources() else []):
            progress(line)

    def run(self, progress: Progress = say) -> list[Node]:
        """Run the steps; the nodes with their run-time values filled in."""
        values: dict[str, str] = {}
        run_steps(self.steps, progress, values=values)
        return [Node(n.name, n.role, fill(n.address, values), [fill(a, values) for a in n.docker]) for n in self.nodes]


@dataclass
class Cluster:
    name: str
    driver: str
    nodes: list[Node]
    db_node: str
    context: str | None = None          # docker context to use (None: none created)
    docker_host: str | None = None      # same target as a DOCKER_HOST value, when there is one
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    registry: str | None = None         # image prefix the nodes pull from ("10.213.X.2:5000/"), if any
    deploy_sets: list[str] = field(default_factory=list)  # --set KEY=VALUE a deploy to this cluster needs

    @property
    def managers(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "manager"]

    @property
    def workers(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "worker"]

    def lines(self) -> list[str]:
        out = [f"cluster {self.name} ({self.driver}): {len(self.managers)} manager(s), {len(self.workers)} "
               f"worker(s), database node {self.db_node}, formed in {self.seconds:.1f} s"]
        out += [f"  {n.role:8} {n.name:24} {n.address}" for n in self.nodes]
        if self.context:
            out.append(f"use it: docker --context {self.context} node ls   (or: docker context use {self.context})")
        if self.docker_host:
            out.append(f"   or: export DOCKER_HOST={self.docker_host}")
        if self.registry:
            out.append(f"images: in the cluster's registry {self.registry} (the nodes pull from it)")
        sets = "".join(f" --set {s}" for s in self.deploy_sets)
        out.append(f"deploy: DOCKER_CONTEXT={self.context or 'CONTEXT'} ./iot deploy --env ENV{sets} "
                   "--url http://NODE-ADDRESS:PORT")
        return out
