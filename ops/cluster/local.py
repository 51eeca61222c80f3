"""Local nodes: a swarm of Docker-in-Docker containers on this engine, planned once for `--dry` and for the run.

Every node is a container of the image built from images/dind (Debian's docker.io on the offline Debian
base: nothing is pulled). The flags are the ones that work where `--privileged` fails ("unable to apply
caps"): all capabilities but SYS_RESOURCE, seccomp and systempaths unconfined, a device cgroup rule
`a *:* rwm`; the entrypoint remounts /sys and the cgroup v1 hierarchies read-write, then execs dockerd.
The nodes sit on a user network with a fixed subnet (10.213.X.0/24, X free) and fixed addresses, each
with its /var/lib/docker on a volume of its own. Everything carries the label `iot.cluster=NAME` (and any
extra labels given), which is what `ls_local` and `rm_local` go by.

Images reach the nodes through the cluster's registry (distribution="registry", the default; see
registry.py), or, as the fallback, distribution="load": `docker save` once, `docker load` into every
node in parallel.

The manager's Docker API reaches the host as a unix socket (dockerd's second `-H`) in a host folder
mounted into the manager (build/clusters/NAME/, mode 0700, socket root:root 0660): no TCP port at all,
so neither other machines nor containers (the stack's own, on the nodes' bridges) can reach this
unauthenticated, root-equivalent API; only root on this host can. A docker context `iot-NAME` points at
it: `docker --context iot-NAME node ls`, or `DOCKER_HOST=unix://…/docker.sock`.

`plan_local` is the one source of the commands that make the nodes: `./iot --dry cluster.create`
shows its commands (`show()`), `create_local` runs its `steps` in order.
"""
from __future__ import annotations

import ipaddress
import shlex
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .common import (
    DESCRIPTION,
    LABEL,
    ROLE_LABEL,
    ROOT,
    STATE_DIR,
    Cluster,
    ClusterError,
    Node,
    Progress,
    Step,
    check_name,
    context_name,
    node_names,
    run,
    run_steps,
    say,
)
from .form import form_swarm
from .names import container_name, labels_args, network_name, node_ip, pick_subnet, socket_dir, used_subnets, volume_name
from .registry import (
    REGISTRY_CONTEXT,
    REGISTRY_IMAGE,
    REGISTRY_PORT,
    deploy_sets,
    push_images,
    registry_host_port,
    registry_ip,
    registry_run_command,
    wait_registry,
)

DIND_CONTEXT = ROOT / "images" / "dind"
DIND_IMAGE = "iot-base/dind:20.10-bookworm"
DEBIAN_IMAGE = "iot-base/debian:bookworm"
DISTRIBUTIONS = ("registry", "load")  # how images reach the nodes: a registry on the network, or save/load
NODE_SOCKET_DIR = "/run/iot-host"     # inside the manager: where its second API socket is
STACK_IMAGES = ("api", "simulator", "broker", "web")  # our images the stack's services run

# The flags that work on machines where --privileged fails (see DESIGN.md, "Recipes and traps").
DIND_FLAGS = ("--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
              "--security-opt", "seccomp=unconfined", "--security-opt", "systempaths=unconfined",
              "--device-cgroup-rule", "a *:* rwm")


# -- the commands (pure, for the unit tests) -----------------------------------------------------------
def network_create_command(name: str, subnet: ipaddress.IPv4Network, extra_labels: Sequence[str] = ()) -> list[str]:
    return ["docker", "network", "create", "--driver", "bridge", "--subnet", str(subnet),
            "--gateway", str(subnet.network_address + 1), *labels_args(name, extra_labels), network_name(name)]


def volume_create_command(name: str, container: str, extra_labels: Sequence[str] = ()) -> list[str]:
    return ["docker", "volume", "create", *labels_args(name, extra_labels), volume_name(container)]


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


# -- the plan: printed by --dry, run by create_local -------------------------------------------------------
@dataclass
class LocalPlan:
    """The commands that make a local cluster's network, registry and nodes, in the order they run."""
    name: str
    subnet: ipaddress.IPv4Network
    distribution: str
    steps: list[tuple[str, list[str]]]  # (network | registry | volume | node, argv)
    nodes: list[Node]
    registry: str | None                # the prefix the nodes pull with ("IP:5000/"), None with "load"

    def commands(self) -> list[list[str]]:
        return [cmd for _, cmd in self.steps]

    def lines(self) -> list[str]:
        """What `./iot --dry cluster.create` prints: every command of the plan, then what follows them."""
        images = ("docker push of the images to the cluster registry" if self.registry
                  else "docker save | docker load of the images")
        return ([f"would run: {shlex.join(cmd)}" for cmd in self.commands()]
                + [f"then: swarm init/join, node label, {images}, a context"])

    def show(self, progress: Progress = print) -> None:
        """lines(), the commands echoed through ops.run (so IOT_RECORD_COMMANDS records them, as it does the run's)."""
        for cmd in self.commands():
            run(cmd, progress, dry=True)
        progress(self.lines()[-1])


def check_local(name: str, managers: int, workers: int, distribution: str) -> list[tuple[str, str]]:
    """Refuse a bad name, node count or distribution before anything runs; the nodes [(name, role)]."""
    check_name(name)
    if distribution not in DISTRIBUTIONS:
        raise ClusterError(f"image distribution {distribution!r}: one of {', '.join(DISTRIBUTIONS)}")
    return node_names(name, managers, workers)


def plan_local(name: str, managers: int = 1, workers: int = 2, subnet: ipaddress.IPv4Network | None = None, *,
               image: str = DIND_IMAGE, distribution: str = "registry", registry_image: str = REGISTRY_IMAGE,
               extra_labels: Sequence[str] = (), state_dir: Path = STATE_DIR) -> LocalPlan:
    """The network, the registry (distribution "registry"), then each node's volume and container.
    subnet None: the first free /24 of the pool on this engine (the only query made)."""
    wanted = check_local(name, managers, workers, distribution)
    if subnet is None:
        subnet = pick_subnet(used_subnets())
    steps = [("network", network_create_command(name, subnet, extra_labels))]
    registry = None
    if distribution == "registry":
        steps.append(("registry", registry_run_command(name, registry_ip(subnet), registry_image, extra_labels)))
        registry = f"{registry_ip(subnet)}:{REGISTRY_PORT}/"
    nodes = []
    for index, (node, role) in enumerate(wanted):
        container, ip = container_name(name, node), node_ip(subnet, index)
        steps.append(("volume", volume_create_command(name, container, extra_labels)))
        steps.append(("node", node_run_command(name, node, role, ip, image,
                                               socket_dir(name, state_dir) if index == 0 else None, extra_labels,
                                               insecure_registry=registry.rstrip("/") if registry else None)))
        nodes.append(Node(node, role, ip, ["docker", "exec", container, "docker"]))
    return LocalPlan(name, subnet, distribution, steps, nodes, registry)


def stack_images(values: Mapping) -> tuple[list[str], dict[str, str], str]:
    """The images an env's stack runs, which the nodes need: ours (the device image runs on a Pi, not in the
    stack) and the bases it runs as they are (python and debian only build ours). VALUES: ops.values.load_values.
    Returns (refs, {base key: ref}, bases mode). Pure: the names, not a render."""
    from ops import images

    mode = values["bases"]["mode"]
    bases = {key: ref for key, ref in values["bases"][mode].items() if key not in ("python", "debian") and ref}
    return [images.reference(values, name) for name in STACK_IMAGES] + list(bases.values()), bases, mode


# -- the steps around the plan ---------------------------------------------------------------------------
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
    while time.monotonic() < deadline:  # polled probes, never shown: plain subprocess, not ops.run
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
    check_local(name, managers, workers, distribution)
    if ls_local(name):
        raise ClusterError(f"a local cluster {name!r} exists already: ./iot cluster.rm --name {name}")
    started = time.monotonic()
    timings: dict[str, float] = {}
    ensure_dind_image(image, progress=progress)
    if distribution == "registry":
        ensure_dind_image(registry_image, progress=progress, context=REGISTRY_CONTEXT)
    timings["node image"] = time.monotonic() - started
    sock_dir = socket_dir(name, state_dir)
    pusher = ThreadPoolExecutor(max_workers=1)  # the pushes overlap the nodes' start and the swarm's forming
    pushed = None

    def push() -> float:
        host_port = registry_host_port(name)
        wait_registry(host_port, progress)
        return push_images(host_port, images, progress)

    try:
        step = time.monotonic()
        plan = plan_local(name, managers, workers, image=image, distribution=distribution,
                          registry_image=registry_image, extra_labels=extra_labels, state_dir=state_dir)
        sock_dir.mkdir(parents=True, exist_ok=True)  # before the first manager mounts it
        sock_dir.chmod(0o700)
        for what, cmd in plan.steps:
            run(cmd, progress)
            if what == "registry":
                pushed = pusher.submit(push)
        nodes = plan.nodes
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
    registry = plan.registry
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


def rm_local_steps(name: str, state_dir: Path = STATE_DIR) -> list[Step]:
    """What removes a local cluster: its containers (nodes and registry), their volumes, its network, its
    context and socket folder. Only what carries `iot.cluster=NAME` is touched (the queries are read-only)."""
    check_name(name)
    flt = f"label={LABEL}={name}"
    steps = []
    containers = run(["docker", "ps", "-aq", "--filter", flt], echo=False).split()
    if containers:
        steps.append(Step(["docker", "rm", "--force", "--volumes", *containers], [f"container {c}" for c in containers],
                          timeout=120))
    volumes = run(["docker", "volume", "ls", "-q", "--filter", flt], echo=False).split()
    if volumes:
        steps.append(Step(["docker", "volume", "rm", "--force", *volumes], [f"volume {v}" for v in volumes]))
    networks = run(["docker", "network", "ls", "-q", "--filter", flt], echo=False).split()
    if networks:
        steps.append(Step(["docker", "network", "rm", *networks], [f"network {network_name(name)}"]))
    ctx = context_name(name)
    if ctx in run(["docker", "context", "ls", "--format", "{{.Name}}"], echo=False, check=False).split():
        steps.append(Step(["docker", "context", "rm", "--force", ctx], [f"context {ctx}"], check=False))
    sock_dir = socket_dir(name, state_dir)
    if sock_dir.exists():  # the manager's API socket (root's, 0660) and its folder
        steps.append(Step(["rm", "-rf", "--", str(sock_dir)], [f"folder {sock_dir}"], check=False))
    return steps


def rm_local(name: str, progress: Progress = say, state_dir: Path = STATE_DIR) -> list[str]:
    """Remove a local cluster (rm_local_steps). Returns what was removed."""
    return run_steps(rm_local_steps(name, state_dir), progress)
