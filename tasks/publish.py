"""Publishing: tag, push, and a local registry to push to."""
from invoke import Collection, task

from ._common import ENV_HELP, SET_HELP, clear_errors, env_of

REGISTRY_HELP = ("registry to publish to instead of the env's `registry` value, e.g. 127.0.0.1:5000/ "
                 "(same as --set registry=...)")


def _publish_plan(c, env, sets, registry, check_registry=False):
    """Which local image gets which tags, and the registry prefix (ops.registry.publish_plan)."""
    from ops import registry as registries
    from ops import render

    sets = list(sets or [])
    if registry is not None:
        sets.append(f"registry={registries.normalize_prefix(registry)}")
    with clear_errors():
        return registries.publish_plan(env_of(c, env), render.parse_overrides(sets), dry=c.config.run.dry,
                                       check=check_registry)


@task(help={"env": ENV_HELP, "set": SET_HELP, "registry": REGISTRY_HELP}, iterable=["set"])
def tag(c, env=None, set=None, registry=None):  # noqa: A002 - the option is --set
    """Tag the built images for the registry: version, git-<sha7> (-dirty if built from a dirty tree), branch."""
    from ops import registry as registries

    plans, _ = _publish_plan(c, env, set, registry)
    with clear_errors():
        registries.tag(plans, dry=c.config.run.dry)


@task(help={"env": ENV_HELP, "set": SET_HELP, "registry": REGISTRY_HELP}, iterable=["set"])
def push(c, env=None, set=None, registry=None):  # noqa: A002 - the option is --set
    """Tag and push the built images to the registry (checks first that it answers); never `latest`."""
    from ops import registry as registries

    plans, prefix = _publish_plan(c, env, set, registry, check_registry=True)
    with clear_errors():
        registries.push(plans, prefix, dry=c.config.run.dry)


NAME_HELP = "the registry's container (default iot-registry); its data is in the volume NAME-data"


@task(name="start", help={
    "port": "port on 127.0.0.1 (default 5000; then push with --registry 127.0.0.1:PORT/)",
    "name": NAME_HELP,
    "env": "whose bases the registry image is built on when missing, as `up` chooses them: "
           + ENV_HELP.split(": ", 1)[1],
    "set": SET_HELP,
}, iterable=["set"])
def registry_start(c, port=5000, name=None, env=None, set=None):  # noqa: A002 - the option is --set
    """Run a local registry: the registry container (images/registry, built if missing) on 127.0.0.1 only."""
    from ops import render
    from ops.cluster import registry as local

    with clear_errors():
        debian = local.chosen_debian_base(env_of(c, env), render.parse_overrides(set or []))
        local.start_local(int(port), name=name or local.LOCAL_NAME, dry=c.config.run.dry, debian_image=debian)


@task(name="stop", help={"name": NAME_HELP})
def registry_stop(c, name=None):
    """Stop and remove the local registry's container; its data volume is kept (docker volume rm NAME-data)."""
    from ops.cluster import registry as local

    with clear_errors():
        local.stop_local(name or local.LOCAL_NAME, dry=c.config.run.dry)


registry_ns = Collection("registry")
registry_ns.add_task(registry_start, name="start")
registry_ns.add_task(registry_stop, name="stop")
