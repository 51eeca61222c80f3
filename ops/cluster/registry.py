"""A local cluster's registry: the container on the cluster network the nodes pull our images from.

A container of images/registry (Debian's docker-registry on the offline Debian base) at the fixed
address .2 of the cluster subnet, port 5000, plain HTTP; every node's dockerd gets
`--insecure-registry IP:5000`. This host pushes our images to it through a port published on
127.0.0.1 only (an ephemeral one: this engine trusts 127.0.0.0/8 as insecure by default, not the
cluster's subnet, and its daemon configuration is not ours to change), then drops those temporary
tags; the nodes pull `IP:5000/REPO:TAG` when a task needs it. Deploy with the registry prefix:
`--set registry=IP:5000/` (and `--set bases.MODE.KEY=IP:5000/REF` for the base images the stack
uses as they are, e.g. InfluxDB); `deploy_sets` gives them, `Cluster.lines` prints them.
"""
from __future__ import annotations

import ipaddress
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from .common import ROLE_LABEL, ROOT, ClusterError, Progress, run, say
from .names import labels_args, network_name

REGISTRY_CONTEXT = ROOT / "images" / "registry"
REGISTRY_IMAGE = "iot-base/registry:2.8-bookworm"
REGISTRY_HOST = 2                     # the registry's address: .2 of the cluster subnet
REGISTRY_PORT = 5000


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
