"""Swarm clusters: local Docker-in-Docker nodes, existing hosts over SSH, Docker Machine nodes, one way to form the swarm.

Three ways to get nodes (local.py, remote.py), one way to form the swarm (form.py): `swarm init` on the
first manager, `swarm join` of every other node, the database node labelled, a wait until every node is
Ready. A local cluster's images reach its nodes through its own registry container (registry.py); the
names and addresses of its resources are in names.py; what every driver shares is in common.py.
`from ops import cluster; cluster.X` reaches every public name of those modules.
"""
from .common import (
                     DESCRIPTION,
                     LABEL,
                     NAME_RE,
                     ROLE_LABEL,
                     ROOT,
                     STATE_DIR,
                     Cluster,
                     ClusterError,
                     Node,
                     Progress,
                     check_name,
                     context_name,
                     node_names,
                     run,
                     say,
)
from .form import DB_LABEL, MQTT_LABEL, SWARM_PORT, form_swarm, node_states, swarm_commands, wait_ready
from .local import (
                     DEBIAN_IMAGE,
                     DIND_CONTEXT,
                     DIND_FLAGS,
                     DIND_IMAGE,
                     DISTRIBUTIONS,
                     NODE_SOCKET_DIR,
                     LocalPlan,
                     check_local,
                     create_local,
                     distribute_images,
                     ensure_dind_image,
                     ls_local,
                     network_create_command,
                     node_run_command,
                     plan_local,
                     rm_local,
                     volume_create_command,
                     wait_engine,
)
from .names import (
                     FIRST_NODE_HOST,
                     SUBNET_POOL,
                     container_name,
                     labels_args,
                     network_name,
                     node_ip,
                     pick_subnet,
                     socket_dir,
                     used_subnets,
                     volume_name,
)
from .registry import (
                     REGISTRY_CONTEXT,
                     REGISTRY_HOST,
                     REGISTRY_IMAGE,
                     REGISTRY_PORT,
                     deploy_sets,
                     push_images,
                     registry_address,
                     registry_container,
                     registry_host_port,
                     registry_ip,
                     registry_ref,
                     registry_run_command,
                     wait_registry,
)
from .remote import (
                     MACHINE_INSTALL_HINT,
                     cluster_contexts,
                     create_machine,
                     create_ssh,
                     host_address,
                     ls_contexts,
                     machine_create_command,
                     parse_machine_config,
                     rm_contexts,
                     rm_machine,
                     ssh_nodes,
)

__all__ = [
    "DB_LABEL", "DEBIAN_IMAGE", "DESCRIPTION", "DIND_CONTEXT", "DIND_FLAGS", "DIND_IMAGE", "DISTRIBUTIONS",
    "FIRST_NODE_HOST", "LABEL", "MACHINE_INSTALL_HINT", "MQTT_LABEL", "NAME_RE", "NODE_SOCKET_DIR", "REGISTRY_CONTEXT",
    "REGISTRY_HOST", "REGISTRY_IMAGE", "REGISTRY_PORT", "ROLE_LABEL", "ROOT", "STATE_DIR", "SUBNET_POOL", "SWARM_PORT",
    "Cluster", "ClusterError", "LocalPlan", "Node", "Progress",
    "check_local", "check_name", "cluster_contexts", "container_name", "context_name", "create_local", "create_machine",
    "create_ssh", "deploy_sets", "distribute_images", "ensure_dind_image", "form_swarm", "host_address", "labels_args",
    "ls_contexts", "ls_local", "machine_create_command", "network_create_command", "network_name", "node_ip",
    "node_names", "node_run_command", "node_states", "parse_machine_config", "pick_subnet", "plan_local", "push_images",
    "registry_address", "registry_container", "registry_host_port", "registry_ip", "registry_ref",
    "registry_run_command", "rm_contexts", "rm_local", "rm_machine", "run", "say", "socket_dir", "ssh_nodes",
    "swarm_commands", "used_subnets", "volume_create_command", "volume_name", "wait_engine", "wait_ready",
    "wait_registry",
]
