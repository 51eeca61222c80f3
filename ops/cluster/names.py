"""The names and addresses of a local cluster's resources: containers, volumes, network, subnet, labels, socket folder."""
from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from pathlib import Path

from .common import LABEL, STATE_DIR, ClusterError, run

SUBNET_POOL = ipaddress.ip_network("10.213.0.0/16")  # node networks: one free /24 of it per cluster
FIRST_NODE_HOST = 11                  # node addresses: .11, .12, … (the gateway, .1, is this host)


def container_name(name: str, node: str) -> str:
    return f"iotc-{node}" if node.startswith(f"{name}-") else f"iotc-{name}-{node}"


def network_name(name: str) -> str:
    return f"iotc-{name}"


def volume_name(container: str) -> str:
    return f"{container}-docker"


def socket_dir(name: str, state_dir: Path = STATE_DIR) -> Path:
    return state_dir / name


def labels_args(name: str, extra: Sequence[str] = ()) -> list[str]:
    args = ["--label", f"{LABEL}={name}"]
    for label in extra:
        args += ["--label", label]
    return args


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
