"""Swarm clusters: a local multi-node one in containers, existing hosts over SSH, Docker Machine nodes.

Three ways to get nodes, one way to form the swarm (`form_swarm`): `swarm init` on the first manager
(advertising its address), `swarm join` of every other node with the manager or worker token,
the database node labelled `iot.influxdb=true` and `iot.mqtt=true` (the stack pins InfluxDB and the broker,
and their volumes, there), then a wait until every node is Ready. Each node is reached through a `docker` command prefix
(`Node.docker`), so the same sequence runs through `docker exec`, a docker context over SSH or one
made from Docker Machine's TLS files.

- `create_local(name, managers, workers)`: every node a Docker-in-Docker container of the image
  built from images/dind (Debian's docker.io on the offline Debian base: nothing is pulled). The
  flags are the ones that work where `--privileged` fails ("unable to apply caps"): all capabilities
  but SYS_RESOURCE, seccomp and systempaths unconfined, a device cgroup rule `a *:* rwm`; the
  entrypoint remounts /sys and the cgroup v1 hierarchies read-write, then execs dockerd. The nodes
  sit on a user network with a fixed subnet (10.213.X.0/24, X free) and fixed addresses, each with
  its /var/lib/docker on a volume of its own. Everything carries the label `iot.cluster=NAME` (and
  any extra labels given), which is what `ls_local` and `rm_local` go by.

  Images reach the nodes through a **registry on the cluster network** (distribution="registry",
  the default): a container of images/registry (Debian's docker-registry on the offline Debian
  base) at the fixed address .2 of the subnet, port 5000, plain HTTP; every node's dockerd gets
  `--insecure-registry IP:5000`. This host pushes our images to it through a port published on
  127.0.0.1 only (an ephemeral one: this engine trusts 127.0.0.0/8 as insecure by default, not the
  cluster's subnet, and its daemon configuration is not ours to change), then drops those temporary
  tags; the nodes pull `IP:5000/REPO:TAG` when a task needs it. Deploy with the registry prefix:
  `--set registry=IP:5000/` (and `--set bases.MODE.KEY=IP:5000/REF` for the base images the stack
  uses as they are, e.g. InfluxDB); `deploy_sets` gives them, `Cluster.lines` prints them.
  distribution="load" is the fallback: `docker save` once, `docker load` into every node in parallel.

  The manager's Docker API reaches the host as a **unix socket** (dockerd's second `-H`) in a
  host folder mounted into the manager (build/clusters/NAME/, mode 0700, socket root:root 0660):
  no TCP port at all, so neither other machines nor containers (the stack's own, on the nodes'
  bridges) can reach this unauthenticated, root-equivalent API; only root on this host can. A
  docker context `iot-NAME` points at it: `docker --context iot-NAME node ls`, or
  `DOCKER_HOST=unix://…/docker.sock`.

- `create_ssh(name, hosts)`: existing hosts with Docker (`user@host`, the first `managers` of
  them managers): one docker context per host (`host=ssh://user@host`), then `form_swarm` through
  those contexts. `rm_contexts` leaves the swarm on every node and removes the contexts.

- `create_machine(name, driver, managers, workers)`: `docker-machine create --driver D NODE` per
  node, its address (`docker-machine ip`) and TLS files (`docker-machine config`) become a docker
  context, then `form_swarm`. Docker Machine is archived upstream; without it installed this ends in
  one clear `ClusterError`. It cannot be exercised here (no VMs, no cloud account): the unit tests
  run it against a recording stand-in `docker-machine` and assert the exact command sequence.

The docker contexts of the SSH and Machine clusters carry the description `iot cluster NAME (…)`;
`ls_contexts` lists them.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ops.errors import OpsError

Progress = Callable[[str], None]

ROOT = Path(__file__).resolve().parent.parent
DIND_CONTEXT = ROOT / "images" / "dind"
DIND_IMAGE = "iot-base/dind:20.10-bookworm"
DEBIAN_IMAGE = "iot-base/debian:bookworm"
REGISTRY_CONTEXT = ROOT / "images" / "registry"
REGISTRY_IMAGE = "iot-base/registry:2.8-bookworm"
REGISTRY_HOST = 2                     # the registry's address: .2 of the cluster subnet
REGISTRY_PORT = 5000
DISTRIBUTIONS = ("registry", "load")  # how images reach the nodes: a registry on the network, or save/load
STATE_DIR = ROOT / "build" / "clusters"
LABEL = "iot.cluster"                 # value: the cluster name
ROLE_LABEL = "iot.cluster.role"       # manager | worker
DB_LABEL = "iot.influxdb=true"        # node label the stack's placement constraint asks for
MQTT_LABEL = "iot.mqtt=true"          # the broker's (its persistence volume): the same node as the database
NODE_SOCKET_DIR = "/run/iot-host"     # inside the manager: where its second API socket is
SUBNET_POOL = ipaddress.ip_network("10.213.0.0/16")  # node networks: one free /24 of it per cluster
FIRST_NODE_HOST = 11                  # node addresses: .11, .12, … (the gateway, .1, is this host)
SWARM_PORT = 2377
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
DESCRIPTION = "iot cluster"

# The flags that work on machines where --privileged fails (see DESIGN.md, "Recipes and traps").
DIND_FLAGS = ("--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
              "--security-opt", "seccomp=unconfined", "--security-opt", "systempaths=unconfined",
              "--device-cgroup-rule", "a *:* rwm")


class ClusterError(OpsError):
    """A cluster step failed; the message says which and shows the end of its output."""


def say(message: str) -> None:
    print(f"cluster: {message}", file=sys.stderr, flush=True)


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ClusterError(f"cluster name {name!r}: use lower-case letters, digits and '-', starting with a letter "
                           "(at most 31 characters)")
    return name


# -- running commands --------------------------------------------------------------------------------
def run(cmd: Sequence[str], progress: Progress = say, *, input_file: Path | None = None, check: bool = True,
        timeout: float | None = 300, echo: bool = True, env: dict[str, str] | None = None) -> str:
    """Print the command, run it, return its stdout (stripped); failures raise ClusterError."""
    full_env = {**os.environ, **env} if env else None
    if echo:
        progress(f"$ {shlex.join(cmd)}" + (f" < {input_file}" if input_file else ""))
    try:
        if input_file is not None:
            with open(input_file, "rb") as stdin:
                proc = subprocess.run(list(cmd), stdin=stdin, capture_output=True, timeout=timeout, check=False,
                                      env=full_env)
        else:
            proc = subprocess.run(list(cmd), stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                                  check=False, env=full_env)
    except FileNotFoundError:
        raise ClusterError(f"{cmd[0]}: command not found") from None
    except subprocess.TimeoutExpired:
        raise ClusterError(f"`{shlex.join(cmd)}` did not finish within {timeout:.0f} s") from None
    out = proc.stdout.decode(errors="replace").strip()
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip() or out
        tail = "\n".join(err.splitlines()[-10:])
        raise ClusterError(f"`{shlex.join(cmd)}` failed (exit {proc.returncode}): {tail}")
    return out


# -- forming a swarm (every driver) ------------------------------------------------------------------
@dataclass
class Node:
    name: str
    role: str                   # manager | worker
    address: str                # advertised to the swarm (an IP or a host name the others reach)
    docker: list[str]           # command prefix that runs `docker` against this node's engine


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


def swarm_commands(nodes: Sequence[Node], tokens: dict[str, str]) -> list[list[str]]:
    """The `swarm join` command of every node but the first manager. Pure (for the unit tests)."""
    first = nodes[0]
    return [[*n.docker, "swarm", "join", "--token", tokens[n.role], "--advertise-addr", n.address,
             f"{first.address}:{SWARM_PORT}"] for n in nodes[1:]]


def form_swarm(nodes: Sequence[Node], db_node: str, progress: Progress = say, timeout: float = 120) -> None:
    """init on nodes[0] (a manager), join the others, label the database node, wait for all Ready."""
    if not nodes or nodes[0].role != "manager":
        raise ClusterError("the first node must be a manager")
    first = nodes[0]
    run([*first.docker, "swarm", "init", "--advertise-addr", first.address], progress)
    tokens = {role: run([*first.docker, "swarm", "join-token", "-q", role], progress, echo=False)
              for role in ("manager", "worker")}
    progress("join tokens read from the first manager (not printed)")
    for node, cmd in zip(nodes[1:], swarm_commands(nodes, tokens), strict=True):
        progress(f"$ {shlex.join(cmd[:len(node.docker)])} swarm join --token *** --advertise-addr {node.address} "
                 f"{first.address}:{SWARM_PORT}")
        run(cmd, progress, echo=False)
    db = next((n for n in nodes if n.name == db_node), None)
    if db is None:
        raise ClusterError(f"database node {db_node!r} is not one of {', '.join(n.name for n in nodes)}")
    node_id = run([*db.docker, "info", "--format", "{{.Swarm.NodeID}}"], progress)
    run([*first.docker, "node", "update", "--label-add", DB_LABEL, "--label-add", MQTT_LABEL, node_id], progress)
    wait_ready(first, len(nodes), progress, timeout)


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


def node_names(name: str, managers: int, workers: int) -> list[tuple[str, str]]:
    """[(node name, role)]: NAME-m1…, NAME-w1… (host names and swarm node names alike)."""
    if managers < 1:
        raise ClusterError("a swarm needs at least one manager")
    if workers < 0:
        raise ClusterError("workers cannot be negative")
    return ([(f"{name}-m{i}", "manager") for i in range(1, managers + 1)]
            + [(f"{name}-w{i}", "worker") for i in range(1, workers + 1)])


# -- local: Docker-in-Docker nodes ---------------------------------------------------------------------
def container_name(name: str, node: str) -> str:
    return f"iotc-{node}" if node.startswith(f"{name}-") else f"iotc-{name}-{node}"


def network_name(name: str) -> str:
    return f"iotc-{name}"


def volume_name(container: str) -> str:
    return f"{container}-docker"


def socket_dir(name: str, state_dir: Path = STATE_DIR) -> Path:
    return state_dir / name


def context_name(name: str) -> str:
    return f"iot-{name}"


def used_subnets() -> set[ipaddress.IPv4Network]:
    out = run(["docker", "network", "ls", "-q"], echo=False)
    if not out:
        return set()
    info = run(["docker", "network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
                *out.split()], echo=False)
    nets = set()
    for word in info.split():
        try:
            net = ipaddress.ip_network(word, strict=False)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network):
            nets.add(net)
    return nets


def pick_subnet(used: set[ipaddress.IPv4Network], pool: ipaddress.IPv4Network = SUBNET_POOL) -> ipaddress.IPv4Network:
    for candidate in pool.subnets(new_prefix=24):
        if candidate.network_address.packed[2] == 0:
            continue  # skip X.Y.0.0/24: easy to mistake for the pool
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise ClusterError(f"no free /24 left in {pool} for a cluster network")


def node_ip(subnet: ipaddress.IPv4Network, index: int) -> str:
    return str(subnet.network_address + FIRST_NODE_HOST + index)


def labels_args(name: str, extra: Sequence[str] = ()) -> list[str]:
    args = ["--label", f"{LABEL}={name}"]
    for label in extra:
        args += ["--label", label]
    return args


def network_create_command(name: str, subnet: ipaddress.IPv4Network, extra_labels: Sequence[str] = ()) -> list[str]:
    return ["docker", "network", "create", "--driver", "bridge", "--subnet", str(subnet),
            "--gateway", str(subnet.network_address + 1), *labels_args(name, extra_labels), network_name(name)]


def node_run_command(name: str, node: str, role: str, ip: str, image: str = DIND_IMAGE,
                     host_socket_dir: Path | None = None, extra_labels: Sequence[str] = (),
                     insecure_registry: str | None = None) -> list[str]:
    """`docker run` of one node. host_socket_dir (managers that expose their API): mounted at
    NODE_SOCKET_DIR, where dockerd opens a second unix socket. insecure_registry (IP:PORT): the
    cluster's registry, which dockerd then talks plain HTTP to. Pure (for the unit tests)."""
    container = container_name(name, node)
    cmd = ["docker", "run", "-d", "--name", container, "--hostname", node, *DIND_FLAGS,
           *labels_args(name, extra_labels), "--label", f"{ROLE_LABEL}={role}",
           "--mount", f"type=volume,source={volume_name(container)},target=/var/lib/docker",
           "--network", network_name(name), "--ip", ip]
    if host_socket_dir is not None:
        cmd += ["--mount", f"type=bind,source={host_socket_dir},target={NODE_SOCKET_DIR}"]
    cmd.append(image)
    # dockerd arguments (after the entrypoint): sockets root:root 0660, not the node's `docker` group
    # (whose gid means some other group on the host).
    cmd += ["--group", "root", "-H", "unix:///var/run/docker.sock"]
    if host_socket_dir is not None:
        cmd += ["-H", f"unix://{NODE_SOCKET_DIR}/docker.sock"]
    if insecure_registry:
        cmd += ["--insecure-registry", insecure_registry]
    return cmd


# -- local: the cluster's registry ---------------------------------------------------------------------
def registry_container(name: str) -> str:
    return f"iotc-{name}-registry"


def registry_ip(subnet: ipaddress.IPv4Network) -> str:
    return str(subnet.network_address + REGISTRY_HOST)


def registry_run_command(name: str, ip: str, image: str = REGISTRY_IMAGE,
                         extra_labels: Sequence[str] = ()) -> list[str]:
    """`docker run` of the cluster's registry: on the cluster network at IP, port 5000 also published on
    127.0.0.1 (a port the engine picks) for the pushes from this host. Pure (for the unit tests)."""
    return ["docker", "run", "-d", "--name", registry_container(name), *labels_args(name, extra_labels),
            "--label", f"{ROLE_LABEL}=registry", "--network", network_name(name), "--ip", ip,
            "--publish", f"127.0.0.1::{REGISTRY_PORT}", image]


def registry_ref(prefix: str, ref: str) -> str:
    """iot/api:0.1.0 -> PREFIX + iot/api:0.1.0 (PREFIX ends in '/')."""
    return f"{prefix}{ref}"


def deploy_sets(registry: str, bases: dict[str, str] | None = None, mode: str = "offline",
                pushed: Sequence[str] = ()) -> list[str]:
    """The `--set` values of a deploy that pulls from the cluster's registry: our images through
    `registry`, and each base image that was pushed (bases: {key: ref}) through bases.MODE.KEY. Pure."""
    sets = [f"registry={registry}"]
    for key, ref in sorted((bases or {}).items()):
        if ref and ref in pushed:
            sets.append(f"bases.{mode}.{key}={registry_ref(registry, ref)}")
    return sets


def registry_host_port(name: str) -> str:
    """127.0.0.1:PORT where the cluster's registry is published on this host."""
    out = run(["docker", "port", registry_container(name), f"{REGISTRY_PORT}/tcp"], echo=False)
    for line in out.splitlines():
        if line.startswith("127.0.0.1:"):
            return line.strip()
    raise ClusterError(f"the registry of cluster {name} is not published on 127.0.0.1 ({out!r})")


def registry_address(name: str) -> str | None:
    """The prefix the nodes pull with (IP:5000/), None when the cluster has no registry."""
    ip = run(["docker", "inspect", "--format", f'{{{{(index .NetworkSettings.Networks "{network_name(name)}").IPAddress}}}}',
              registry_container(name)], echo=False, check=False)
    return f"{ip}:{REGISTRY_PORT}/" if re.fullmatch(r"[0-9.]+", ip or "") else None


def wait_registry(host_port: str, progress: Progress = say, timeout: float = 30) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{host_port}/v2/", timeout=2) as resp:  # noqa: S310 (ours, 127.0.0.1)
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise ClusterError(f"the cluster registry on {host_port} did not answer within {timeout:.0f} s")


def push_images(host_port: str, image_refs: Sequence[str], progress: Progress = say) -> float:
    """Tag each image 127.0.0.1:PORT/REF, push them (in parallel), drop those temporary tags. Seconds."""
    if not image_refs:
        return 0.0
    started = time.monotonic()
    lock = threading.Lock()

    def locked(message: str) -> None:
        with lock:
            progress(message)

    temporary = [registry_ref(f"{host_port}/", ref) for ref in image_refs]
    try:
        for ref, tmp_ref in zip(image_refs, temporary, strict=True):
            run(["docker", "tag", ref, tmp_ref], progress)
        with ThreadPoolExecutor(max_workers=min(4, len(temporary))) as pool:
            futures = [pool.submit(run, ["docker", "push", "--quiet", t], locked, timeout=900) for t in temporary]
            for future in futures:
                future.result()
    finally:  # only our temporary tags: the images themselves keep their own names
        run(["docker", "rmi", *temporary], progress, check=False, echo=False)
    return time.monotonic() - started


def volume_create_command(name: str, container: str, extra_labels: Sequence[str] = ()) -> list[str]:
    return ["docker", "volume", "create", *labels_args(name, extra_labels), volume_name(container)]


def ensure_dind_image(image: str = DIND_IMAGE, debian_image: str = DEBIAN_IMAGE, progress: Progress = say,
                      force: bool = False, context: Path = DIND_CONTEXT) -> float | None:
    """Build images/dind (or CONTEXT, e.g. images/registry) on the offline Debian base (bootstrapped
    first if missing). None: present."""
    from ops import images

    if not force and images.image_exists(image):
        progress(f"{image}: present")
        return None
    if not images.image_exists(debian_image):
        images.build_debian_base(debian_image, progress=progress)
    started = time.monotonic()
    run(["docker", "build", "--build-arg", f"DEBIAN_IMAGE={debian_image}", "--tag", image, str(context)],
        progress, timeout=1800, env={"DOCKER_BUILDKIT": "0"})  # no RUN --mount: the classic builder will do
    took = time.monotonic() - started
    progress(f"{image}: built in {took:.1f} s")
    return took


def wait_engine(container: str, progress: Progress = say, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = subprocess.run(["docker", "exec", container, "docker", "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=30, check=False)
        if proc.returncode == 0:
            return
        state = run(["docker", "inspect", "--format", "{{.State.Status}}", container], echo=False, check=False)
        if state and state != "running":
            logs = subprocess.run(["docker", "logs", "--tail", "15", container], capture_output=True, text=True,
                                  check=False)
            raise ClusterError(f"node {container} stopped ({state}) before its dockerd answered:\n"
                               f"{(logs.stdout + logs.stderr).strip()}")
        time.sleep(0.5)
    raise ClusterError(f"the dockerd of node {container} did not answer within {timeout:.0f} s")


def distribute_images(containers: Sequence[str], image_refs: Sequence[str], progress: Progress = say) -> float:
    """`docker save` the images once, `docker load` them into every node (in parallel). Returns seconds."""
    if not image_refs or not containers:
        return 0.0
    started = time.monotonic()
    lock = threading.Lock()

    def locked(message: str) -> None:  # one line at a time from the loader threads
        with lock:
            progress(message)

    with tempfile.TemporaryDirectory(prefix="iot-cluster-images-") as tmp:
        archive = Path(tmp) / "images.tar"
        run(["docker", "save", "--output", str(archive), *image_refs], progress, timeout=900)
        progress(f"loading {len(image_refs)} image(s) ({archive.stat().st_size / 1e6:.0f} MB) into "
                 f"{len(containers)} node(s)")
        with ThreadPoolExecutor(max_workers=min(4, len(containers))) as pool:
            futures = [pool.submit(run, ["docker", "exec", "-i", c, "docker", "load", "--quiet"], locked,
                                   input_file=archive, timeout=900) for c in containers]
            for future in futures:
                future.result()
    return time.monotonic() - started


def create_local(name: str, managers: int = 1, workers: int = 2, progress: Progress = say, *,
                 images: Sequence[str] = (), db_node: str | None = None, extra_labels: Sequence[str] = (),
                 state_dir: Path = STATE_DIR, context: bool = True, image: str = DIND_IMAGE,
                 distribution: str = "registry", registry_image: str = REGISTRY_IMAGE,
                 bases: dict[str, str] | None = None, bases_mode: str = "offline") -> Cluster:
    """A swarm of Docker-in-Docker containers on this engine. On any failure what was made is removed.

    distribution: "registry" (a registry container on the cluster network, images pushed to it) or
    "load" (docker save | docker load into every node). bases ({key: ref}, of bases_mode): which of
    `images` are base images, for the deploy's `--set bases.MODE.KEY=…` (Cluster.deploy_sets)."""
    check_name(name)
    if distribution not in DISTRIBUTIONS:
        raise ClusterError(f"image distribution {distribution!r}: one of {', '.join(DISTRIBUTIONS)}")
    nodes_wanted = node_names(name, managers, workers)
    if ls_local(name):
        raise ClusterError(f"a local cluster {name!r} exists already: ./iot cluster.rm --name {name}")
    started = time.monotonic()
    timings: dict[str, float] = {}
    use_registry = distribution == "registry"
    ensure_dind_image(image, progress=progress)
    if use_registry:
        ensure_dind_image(registry_image, progress=progress, context=REGISTRY_CONTEXT)
    timings["node image"] = time.monotonic() - started
    sock_dir = socket_dir(name, state_dir)
    pusher = ThreadPoolExecutor(max_workers=1)  # the pushes overlap the nodes' start and the swarm's forming
    pushed = None
    try:
        step = time.monotonic()
        subnet = pick_subnet(used_subnets())
        run(network_create_command(name, subnet, extra_labels), progress)
        sock_dir.mkdir(parents=True, exist_ok=True)
        sock_dir.chmod(0o700)
        registry = None
        if use_registry:
            run(registry_run_command(name, registry_ip(subnet), registry_image, extra_labels), progress)
            registry = f"{registry_ip(subnet)}:{REGISTRY_PORT}/"

            def push() -> float:
                host_port = registry_host_port(name)
                wait_registry(host_port, progress)
                return push_images(host_port, images, progress)

            pushed = pusher.submit(push)
        nodes: list[Node] = []
        for index, (node, role) in enumerate(nodes_wanted):
            container = container_name(name, node)
            ip = node_ip(subnet, index)
            run(volume_create_command(name, container, extra_labels), progress)
            run(node_run_command(name, node, role, ip, image, sock_dir if index == 0 else None, extra_labels,
                                 insecure_registry=registry.rstrip("/") if registry else None), progress)
            nodes.append(Node(node, role, ip, ["docker", "exec", container, "docker"]))
        for node in nodes:
            wait_engine(container_name(name, node.name), progress)
        timings["nodes up"] = time.monotonic() - step
        step = time.monotonic()
        form_swarm(nodes, db_node or nodes[0].name, progress)
        timings["swarm formed"] = time.monotonic() - step
        step = time.monotonic()
        if pushed is not None:
            took = pushed.result()
            timings["images pushed (overlapping the above)"] = took
            timings["waited for the pushes"] = time.monotonic() - step
        else:
            distribute_images([container_name(name, n.name) for n in nodes], images, progress)
            timings["images loaded"] = time.monotonic() - step
        docker_host = f"unix://{sock_dir}/docker.sock"
        ctx = None
        if context:
            ctx = context_name(name)
            run(["docker", "context", "rm", "--force", ctx], progress, check=False, echo=False)
            run(["docker", "context", "create", ctx, "--description", f"{DESCRIPTION} {name} (local)",
                 "--docker", f"host={docker_host}"], progress)
    except BaseException:
        progress(f"creating cluster {name} failed: removing what was made")
        pusher.shutdown(wait=True, cancel_futures=True)
        rm_local(name, progress, state_dir=state_dir)
        raise
    finally:
        pusher.shutdown(wait=True)
    cluster = Cluster(name, "local", nodes, db_node or nodes[0].name, ctx, docker_host,
                      time.monotonic() - started, timings, registry,
                      deploy_sets(registry, bases, bases_mode, images) if registry else [])
    progress("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    return cluster


def ls_local(name: str | None = None) -> list[dict]:
    """The local clusters' node containers: [{cluster, node, role, state, ip}] (by label)."""
    flt = f"label={LABEL}" + (f"={name}" if name else "")
    fmt = (f'{{{{.Label "{LABEL}"}}}}\t{{{{.Names}}}}\t{{{{.Label "{ROLE_LABEL}"}}}}\t{{{{.State}}}}\t'
           "{{.Status}}")
    out = run(["docker", "ps", "-a", "--filter", flt, "--format", fmt], echo=False)
    rows = []
    for line in sorted(out.splitlines()):
        cluster, container, role, state, status = (line.split("\t") + [""] * 5)[:5]
        rows.append({"cluster": cluster, "container": container, "role": role, "state": state, "status": status})
    return rows


def rm_local(name: str, progress: Progress = say, state_dir: Path = STATE_DIR) -> list[str]:
    """Remove a local cluster: its containers (nodes and registry), their volumes, its network, its context
    and socket folder. Only what carries `iot.cluster=NAME` is touched. Returns what was removed."""
    check_name(name)
    flt = f"label={LABEL}={name}"
    removed = []
    containers = run(["docker", "ps", "-aq", "--filter", flt], echo=False).split()
    if containers:
        run(["docker", "rm", "--force", "--volumes", *containers], progress, timeout=120)
        removed += [f"container {c}" for c in containers]
    volumes = run(["docker", "volume", "ls", "-q", "--filter", flt], echo=False).split()
    if volumes:
        run(["docker", "volume", "rm", "--force", *volumes], progress)
        removed += [f"volume {v}" for v in volumes]
    networks = run(["docker", "network", "ls", "-q", "--filter", flt], echo=False).split()
    if networks:
        run(["docker", "network", "rm", *networks], progress)
        removed += [f"network {network_name(name)}"]
    ctx = context_name(name)
    if ctx in run(["docker", "context", "ls", "--format", "{{.Name}}"], echo=False, check=False).split():
        run(["docker", "context", "rm", "--force", ctx], progress, check=False)
        removed.append(f"context {ctx}")
    sock_dir = socket_dir(name, state_dir)
    if sock_dir.exists():
        shutil.rmtree(sock_dir, ignore_errors=True)
        removed.append(f"folder {sock_dir}")
    return removed


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


def create_ssh(name: str, hosts: Sequence[str], managers: int = 1, progress: Progress = say,
               db_node: int = 1) -> Cluster:
    """Form a swarm of existing Docker hosts reached over SSH. db_node: 1-based index of the database host."""
    started = time.monotonic()
    planned = ssh_nodes(name, hosts, managers)
    for _, create in planned:
        run(create, progress)
    nodes = [node for node, _ in planned]
    for node in nodes:  # fail early, naming the host, when one is unreachable
        run([*node.docker, "info", "--format", "{{.ServerVersion}}"], progress)
    db = nodes[db_node - 1].name
    form_swarm(nodes, db, progress)
    return Cluster(name, "ssh", nodes, db, nodes[0].name, f"ssh://{hosts[0]}", time.monotonic() - started)


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


def rm_contexts(name: str, progress: Progress = say, leave: bool = True) -> list[str]:
    """An SSH (or Machine) cluster: `swarm leave --force` on every node (workers first), remove its contexts."""
    contexts = sorted(cluster_contexts(name), key=lambda c: "manager" in c["description"])
    for ctx in contexts if leave else []:
        run(["docker", "--context", ctx["name"], "swarm", "leave", "--force"], progress, check=False)
    for ctx in contexts:
        run(["docker", "context", "rm", "--force", ctx["name"]], progress, check=False)
    return [c["name"] for c in contexts]


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


def create_machine(name: str, driver: str, managers: int = 1, workers: int = 2, progress: Progress = say,
                   options: Sequence[str] = (), machine: str = "docker-machine") -> Cluster:
    """Docker Machine nodes (one `docker-machine create` each), one context per node, then form_swarm.

    options: driver flags passed to every create (e.g. --digitalocean-access-token=…,
    --generic-ip-address=…). Cannot run here: no hypervisor, no cloud account (unit-tested against a
    recording stand-in)."""
    check_name(name)
    if shutil.which(machine) is None:
        raise ClusterError(MACHINE_INSTALL_HINT)
    started = time.monotonic()
    nodes = []
    for node, role in node_names(name, managers, workers):
        run([machine, *machine_create_command(driver, node, options)[1:]], progress, timeout=1800)
        address = run([machine, "ip", node], progress)
        tls = parse_machine_config(run([machine, "config", node], progress))
        ctx = f"{context_name(name)}-{node.removeprefix(name + '-')}"
        run(["docker", "context", "create", ctx, "--description", f"{DESCRIPTION} {name} (machine {driver}, {role})",
             "--docker", f"host={tls['host']},ca={tls['ca']},cert={tls['cert']},key={tls['key']}"], progress)
        nodes.append(Node(node, role, address, ["docker", "--context", ctx]))
    form_swarm(nodes, nodes[0].name, progress)
    first_ctx = nodes[0].docker[-1]
    return Cluster(name, f"machine {driver}", nodes, nodes[0].name, first_ctx, None, time.monotonic() - started)


def rm_machine(name: str, progress: Progress = say, machine: str = "docker-machine") -> list[str]:
    """`docker-machine rm -y` of the cluster's nodes (named NAME-m…/NAME-w…), then its contexts."""
    if shutil.which(machine) is None:
        raise ClusterError(MACHINE_INSTALL_HINT)
    names = [n for n in run([machine, "ls", "-q"], progress).split() if re.fullmatch(rf"{re.escape(name)}-[mw]\d+", n)]
    if names:
        run([machine, "rm", "-y", *names], progress, timeout=1800)
    return names + rm_contexts(name, progress, leave=False)

