"""Clusters: a local multi-node swarm in containers, SSH hosts, Docker Machine nodes."""

from invoke import Collection, task

from ._common import clear_errors, env_of


def _cluster_images(c, env, image):
    """The images a local cluster's nodes get: --image as given, else the env's stack images that exist.
    Returns (refs, {base key: ref} of the stack's base images, bases mode)."""
    from ops import cluster, images, values

    with clear_errors():
        wanted, bases, mode = cluster.stack_images(values.load_values(env_of(c, env)))
    if image:
        return list(image), bases, mode
    present = [t for t in wanted if images.image_exists(t)]
    for missing in sorted(set(wanted) - set(present)):
        print(f"cluster: {missing} is not built here, not copied to the nodes (./iot build --env ENV first)")
    return present, bases, mode


@task(name="create", help={
    "driver": "local (nodes are containers on this engine), or a Docker Machine driver: virtualbox, "
              "digitalocean, generic, … (needs docker-machine); ignored with --ssh",
    "managers": "manager nodes (default 1)",
    "workers": "worker nodes (default 2); with --ssh the hosts after the managers are the workers",
    "name": "cluster name (default iot): node, context and resource names derive from it",
    "ssh": "an existing Docker host as user@host (repeatable): the swarm is formed over docker contexts",
    "env": "local driver: whose stack images to give the nodes (default: the config's env)",
    "image": "local driver: give the nodes this image instead (repeatable)",
    "distribution": "local driver: how images reach the nodes: registry (default: a registry container on the "
                    "cluster network, deploy with the printed --set registry=IP:5000/) or load (docker save, "
                    "docker load into every node)",
    "option": "Docker Machine driver flag passed to every `docker-machine create` (repeatable)",
    "db_node": "node whose engine gets the labels iot.influxdb=true and iot.mqtt=true (default: the first manager)",
    "label": "local driver: an extra label KEY=VALUE on every container, volume and network (repeatable)",
}, iterable=["ssh", "image", "option", "label"])
def cluster_create(c, driver="local", managers=1, workers=2, name="iot", ssh=None, env=None, image=None,
                   option=None, db_node=None, label=None, distribution="registry"):
    """Create a Swarm cluster: local Docker-in-Docker nodes, existing hosts over SSH, or Docker Machine nodes.

    Then: swarm init on the first manager, joins, the database node labelled, and the docker context
    to use printed. `--driver local` also gives the nodes the env's images: pushed to a registry on the
    cluster network (default), or `docker load`ed into every node (--distribution load). `--dry` shows the
    very plan the run runs (ops.cluster.plan_ssh / plan_machine / plan_local)."""
    from ops import cluster

    managers, workers, dry = int(managers), int(workers), c.config.run.dry
    with clear_errors():
        cluster.check_name(name)
        if ssh:
            if dry:
                cluster.plan_ssh(name, ssh, managers, db_node=int(db_node or 1)).show(print)
                return
            result = cluster.create_ssh(name, ssh, managers, db_node=int(db_node or 1))
        elif driver == "local":
            if dry:
                cluster.plan_local(name, managers, workers, distribution=distribution, extra_labels=label or ()).show(print)
                return
            cluster.check_local(name, managers, workers, distribution)  # before the render below
            refs, bases, mode = _cluster_images(c, env, image)
            result = cluster.create_local(name, managers, workers, images=refs, db_node=db_node,
                                          extra_labels=label or (), distribution=distribution, bases=bases,
                                          bases_mode=mode)
        else:
            if dry:
                cluster.plan_machine(name, driver, managers, workers, option or ()).show(print)
                return
            result = cluster.create_machine(name, driver, managers, workers, options=option or ())
    print("\n".join(result.lines()))


@task(name="ls")
def cluster_ls(c):
    """List the local clusters' nodes (containers) and the docker contexts of every cluster made here."""
    from ops import cluster

    with clear_errors():
        nodes, contexts = cluster.ls_local(), cluster.ls_contexts()
    if not nodes and not contexts:
        print("no clusters (create one: ./iot cluster.create --driver local)")
    for row in nodes:
        print(f"{row['cluster']:12} {row['role']:8} {row['container']:24} {row['state']:8} {row['status']}")
    for ctx in contexts:
        print(f"context {ctx['name']:20} {ctx['endpoint']:50} {ctx['description']}")


@task(name="rm", help={"name": "cluster name (default iot)"})
def cluster_rm(c, name="iot"):
    """Remove a cluster and everything made for it.

    Local nodes go with their volumes, network and context; SSH hosts leave the swarm; Docker Machine nodes
    are deleted (`docker-machine rm`). Only what carries the cluster's name is touched."""
    from ops import cluster

    with clear_errors():
        if c.config.run.dry:  # the very plan the real run runs, echoed through ops.run (recorded)
            plan = cluster.rm_plan(name)
            cluster.run_steps(plan, print, dry=True)
            if not plan:
                print(f"no cluster named {name}")
            return
        done = cluster.remove(name)
    print("\n".join(done) if done else f"no cluster named {name}")


cluster_ns = Collection("cluster")
cluster_ns.add_task(cluster_create, name="create")
cluster_ns.add_task(cluster_ls, name="ls")
cluster_ns.add_task(cluster_rm, name="rm")
