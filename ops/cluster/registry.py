"""The one registry container: images/registry (Debian's docker-registry on the offline Debian base), run
for a local cluster and for `./iot registry.start`, from one spec (`container_run_command`).

- **A local cluster's registry**: at the fixed address .2 of the cluster subnet, port 5000, plain HTTP;
  every node's dockerd gets `--insecure-registry IP:5000`. This host pushes our images to it through a
  port published on 127.0.0.1 only (an ephemeral one: this engine trusts 127.0.0.0/8 as insecure by
  default, not the cluster's subnet, and its daemon configuration is not ours to change), then drops
  those temporary tags; the nodes pull `IP:5000/REPO:TAG`. Deploy with the registry prefix:
  `--set registry=IP:5000/` (and `--set bases.MODE.KEY=IP:5000/REF` for the base images the stack uses
  as they are, e.g. InfluxDB); `deploy_sets` gives them, `Cluster.lines` prints them. Its data goes
  with the cluster (an anonymous volume, removed by `cluster.rm`).
- **The local registry to push to** (`registry.start`, `registry.stop`): the same container published
  on 127.0.0.1:PORT only (Docker allows plain HTTP to 127.0.0.0/8 without `insecure-registries`), its
  data in the named volume NAME-data, which `registry.stop` keeps. Publishing to it is ops/registry.py.

The image is built when missing (`ensure_registry_image`) on the Debian base `./iot up` would choose: the
offline one as the cluster builds it (debootstrapped from the Debian mirror when missing: Debian and root),
or with online bases the official debian image, which the build pulls (any machine with Docker). Its config
(images/registry/config.yml) is in the image.
"""
from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests

from ops import run as runner
from ops.registry import API_HEADER, RegistryError, is_loopback
from ops.registry import say as registry_say

from .common import ROLE_LABEL, ROOT, ClusterError, Progress, run, say
from .names import labels_args, network_name

REGISTRY_CONTEXT = ROOT / "images" / "registry"
REGISTRY_IMAGE = "iot-base/registry:2.8-bookworm"
REGISTRY_HOST = 2                     # the registry's address: .2 of the cluster subnet
REGISTRY_PORT = 5000                  # inside the container: images/registry/config.yml's http.addr
REGISTRY_DATA = "/var/lib/docker-registry"  # inside the container: the config's storage root, a volume

LOCAL_NAME = "iot-registry"           # the container of `registry.start`; its volume is NAME-data
LOCAL_LABEL = "iot.registry"          # value "local": what registry.stop agrees to remove
DEFAULT_PORT = 5000
_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}")


class RegistryOptionError(RegistryError):
    """A name, port or address given to registry.start/stop that cannot be used (bad input: exit 2)."""

    exit_code = 2


# -- the spec both share -----------------------------------------------------------------------------------
def container_run_command(container: str, publish: str, *, image: str = REGISTRY_IMAGE, volume: str | None = None,
                          labels: Sequence[str] = (), network: Sequence[str] = ()) -> list[str]:
    """`docker run` of the registry image: PUBLISH (`127.0.0.1:[PORT]`, loopback only) maps to the registry's
    port, its data is on VOLUME (None: an anonymous one) at REGISTRY_DATA. LABELS: `--label` args; NETWORK:
    `--network`/`--ip` args. Pure."""
    host = publish.rsplit(":", 1)[0]
    if not is_loopback(host):
        raise RegistryOptionError(f"{publish}: the registry is published on loopback only (plain http, no auth)")
    mount = f"{volume}:{REGISTRY_DATA}" if volume else REGISTRY_DATA
    return ["docker", "run", "-d", "--name", container, *labels, *network,
            "--publish", f"{publish}:{REGISTRY_PORT}", "--volume", mount, image]


def ensure_registry_image(image: str = REGISTRY_IMAGE, progress: Progress = say, dry: bool = False,
                          present: bool | None = None, debian_image: str | None = None) -> None:
    """Build the registry image when missing, on DEBIAN_IMAGE. None or the offline base: as the cluster does
    (ops.cluster.local.ensure_dind_image: the Debian base debootstrapped first if missing, which needs Debian
    and root). An official image (online bases: debian:bookworm-slim) is pulled by the build instead: no
    debootstrap, so a learner's laptop with Docker Desktop builds it too. dry: only print those commands.
    PRESENT: already probed."""
    from ops import images

    from . import local

    debian = debian_image or local.DEBIAN_IMAGE
    offline = debian == local.DEBIAN_IMAGE
    if offline and not dry:
        local.ensure_dind_image(image, progress=progress, context=REGISTRY_CONTEXT)
        return
    if present is None:
        present = images.image_exists(image)
    if present:
        progress(f"{image}: present")
        return
    if offline and not images.image_exists(debian):
        images.build_debian_base(debian, progress=progress, dry=True)
    _step(registry_build_command(image, debian), progress, dry, timeout=1800, env={"DOCKER_BUILDKIT": "0"})


def registry_build_command(image: str = REGISTRY_IMAGE, debian_image: str | None = None) -> list[str]:
    """What ensure_dind_image runs for the registry image (its dry run prints it) on the offline Debian base,
    or on DEBIAN_IMAGE. Pure."""
    from .local import DEBIAN_IMAGE

    return ["docker", "build", "--build-arg", f"DEBIAN_IMAGE={debian_image or DEBIAN_IMAGE}", "--tag", image,
            str(REGISTRY_CONTEXT)]


def chosen_debian_base(env: str, overrides: dict, progress: Progress = say) -> str:
    """The Debian base `./iot up` would build on here for ENV: the official image when the bases are online
    and Docker Hub answers (or bases.mode=online is forced), else the offline one."""
    from ops import render, stack

    values = render.load_values(env, stack.choose_bases(env, overrides, progress))
    bases = values["bases"]
    return bases[bases["mode"]]["debian"]


def answers(host_port: str, timeout: float = 2.0) -> bool:
    """http://HOST_PORT/v2/ answers 200, or carries the registry API header (a 401 of one that wants a login).
    Only asked of a container we started on a port that was free."""
    try:
        resp = requests.get(f"http://{host_port}/v2/", timeout=timeout)
    except requests.RequestException:
        return False
    return resp.status_code == 200 or bool(resp.headers.get(API_HEADER))


def _wait(host_port: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers(host_port):
            return True
        time.sleep(0.2)
    return False


# -- a local cluster's registry ------------------------------------------------------------------------------
def registry_container(name: str) -> str:
    return f"iotc-{name}-registry"


def registry_ip(subnet: ipaddress.IPv4Network) -> str:
    return str(subnet.network_address + REGISTRY_HOST)


def registry_run_command(name: str, ip: str, image: str = REGISTRY_IMAGE,
                         extra_labels: Sequence[str] = ()) -> list[str]:
    """`docker run` of the cluster's registry: on the cluster network at IP, port 5000 also published on
    127.0.0.1 (a port the engine picks) for the pushes from this host. Pure (for the unit tests)."""
    return container_run_command(registry_container(name), "127.0.0.1:", image=image,
                                 labels=[*labels_args(name, extra_labels), "--label", f"{ROLE_LABEL}=registry"],
                                 network=["--network", network_name(name), "--ip", ip])


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
    if not _wait(host_port, timeout):
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


# -- the local registry to push to (registry.start, registry.stop) -----------------------------------------
@dataclass(frozen=True)
class LocalRegistry:
    name: str                 # the container
    host: str
    port: int
    reused: bool = False

    @property
    def volume(self) -> str:
        return data_volume(self.name)

    @property
    def prefix(self) -> str:
        """What --registry / the `registry` value takes: `127.0.0.1:PORT/`."""
        return f"{self.host}:{self.port}/"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def data_volume(name: str) -> str:
    return f"{name}-data"


def _docker_inspect(kind: str, name: str) -> dict | None:
    """`docker KIND inspect NAME` as a dict; None when there is none; RegistryError when the engine does
    not answer. Read-only (dry runs make it too)."""
    try:
        proc = subprocess.run(["docker", kind, "inspect", name], capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        raise RegistryError("docker: command not found (install the engine: ./iot engine)") from None
    except subprocess.TimeoutExpired:
        raise RegistryError("the Docker engine did not answer within 30 s (./iot engine)") from None
    if proc.returncode != 0:
        err = proc.stderr.strip()
        if "no such" in err.lower():
            return None
        raise RegistryError(f"the Docker engine does not answer ({err.splitlines()[-1] if err else 'no output'}): "
                            "start it with ./iot engine")
    return json.loads(proc.stdout)[0]


def _published(info: dict) -> tuple[str, int] | None:
    """(host, port) where a container publishes the registry's port, if it does."""
    bindings = ((info.get("HostConfig") or {}).get("PortBindings") or {}).get(f"{REGISTRY_PORT}/tcp") or []
    for b in bindings:
        if (b.get("HostPort") or "").isdigit():
            return b.get("HostIp") or "0.0.0.0", int(b["HostPort"])  # noqa: S104 (what docker means by "")
    return None


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _check_local(name: str, port: int, host: str) -> None:
    if not _NAME_RE.fullmatch(name):
        raise RegistryOptionError(f"registry name {name!r}: letters, digits, '_', '.', '-' (a container name)")
    if not 0 < port < 65536:
        raise RegistryOptionError(f"port {port}: must be 1-65535")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise RegistryOptionError(f"host {host}: the local registry listens on a loopback address only (plain http, no auth)")


def _would_run(cmd: Sequence[str], progress: Progress) -> None:
    runner.run(cmd, progress, dry=True)  # echoed (and recorded) as the run would, not run


def _step(cmd: list[str], progress: Progress, dry: bool, **kw) -> str:
    """Run CMD with the cluster's runner (echoed `$ CMD`), or in a dry run only echo it."""
    if dry:
        _would_run(cmd, progress)
        return ""
    return run(cmd, progress, **kw)


def start_local(port: int = DEFAULT_PORT, *, name: str = LOCAL_NAME, host: str = "127.0.0.1",
                labels: Sequence[str] = (), image: str = REGISTRY_IMAGE, progress: Progress = registry_say,
                dry: bool = False, timeout: float = 30.0, debian_image: str | None = None) -> LocalRegistry:
    """Run the registry container NAME published on HOST:PORT (loopback only), data in the volume NAME-data.
    Reuses NAME when it already runs on that port; refuses when it runs on another, or the port is taken.
    dry: print the docker commands it would run (the read-only probes still ask the engine; without one, the
    plan from scratch, said so). LABELS: extra `key=value` labels on the container and the volume.
    DEBIAN_IMAGE: the base its image is built on when missing (ensure_registry_image)."""
    port = int(port)
    _check_local(name, port, host)
    reg = LocalRegistry(name, host, port)
    volume = reg.volume
    try:
        info = _docker_inspect("container", name)
        has_volume = _docker_inspect("volume", volume) is not None
        has_image = None
    except RegistryError as exc:
        if not dry:
            raise
        progress(f"note: {exc}; the plan as from scratch")
        info, has_volume, has_image = None, False, False
    if info is not None:
        running, where = (info.get("State") or {}).get("Running"), _published(info)
        if running and where == (host, port):
            progress(f"a local registry already runs: {reg.url} (container {name}, data in volume {volume})")
            return LocalRegistry(name, host, port, reused=True)
        if running:
            at = f"{where[0]}:{where[1]}" if where else "no published port"
            raise RegistryError(f"a local registry {name} already runs on {at}: stop it first "
                                f"(./iot registry.stop --name {name}) or use another --name")
        _step(["docker", "rm", name], progress, dry)  # stopped (e.g. the engine restarted): its data is in the volume
    ensure_registry_image(image, progress, dry, present=has_image, debian_image=debian_image)
    if not _port_free(host, port):  # dry too: the run would stop here
        raise RegistryError(f"port {port} on {host} is already in use by another program: choose another with --port")
    label_args = [arg for label in (f"{LOCAL_LABEL}=local", *labels) for arg in ("--label", label)]
    if not has_volume:
        _step(["docker", "volume", "create", *label_args, volume], progress, dry)
    publish = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # docker's form of an IPv6 address
    _step(container_run_command(name, publish, image=image, volume=volume, labels=label_args), progress, dry)
    if dry:
        return reg
    started = time.monotonic()
    if not _wait(f"{host}:{port}", timeout):
        logs = subprocess.run(["docker", "logs", "--tail", "3", name], capture_output=True, text=True, check=False)
        tail = " | ".join((logs.stdout + logs.stderr).strip().splitlines()[-3:])
        run(["docker", "rm", "--force", name], progress, check=False)
        raise RegistryError(f"the registry did not answer on {reg.url}/v2/ within {timeout:.0f} s: {tail or 'no log'}")
    progress(f"local registry ready in {time.monotonic() - started:.1f} s: {reg.url} (container {name}, data in "
             f"volume {volume}); push with --registry {reg.prefix}")
    return reg


def stop_local(name: str = LOCAL_NAME, *, progress: Progress = registry_say, dry: bool = False) -> bool:
    """Stop and remove the registry container NAME; its volume (the images pushed) is kept. False when there
    was none. Never removes a container NAME that registry.start did not make (no iot.registry label)."""
    if not _NAME_RE.fullmatch(name):
        raise RegistryOptionError(f"registry name {name!r}: letters, digits, '_', '.', '-' (a container name)")
    info = _docker_inspect("container", name)
    if info is None:
        progress(f"no local registry to stop (no container {name})")
        return False
    if ((info.get("Config") or {}).get("Labels") or {}).get(LOCAL_LABEL) != "local":
        raise RegistryError(f"container {name} was not started by ./iot registry.start (no {LOCAL_LABEL}=local label): "
                            "not removing it")
    if (info.get("State") or {}).get("Running"):
        _step(["docker", "stop", name], progress, dry, timeout=60)
    _step(["docker", "rm", name], progress, dry)
    volume = data_volume(name)
    if not dry:
        progress(f"local registry {name} stopped; its data is kept in volume {volume} "
                 f"(delete it: docker volume rm {volume})")
    return True
