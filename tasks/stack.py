"""Local stacks with Docker Compose: render, build, up, down, logs, ps, autotest; the offline base images."""
from invoke import Collection, Exit, task

from ._common import ENV_HELP, SET_HELP, clear_errors, env_help, env_of, prepare_stack


@task(help={"env": ENV_HELP, "set": SET_HELP}, iterable=["set"])
def render(c, env=None, set=None):  # noqa: A002 - the option is --set
    """Render the Compose, autotest and Swarm files of an environment into build/ENV/."""
    stack = prepare_stack(c, env, set, need_engine=False)
    print("\n".join(stack.result.lines()))


@task(help={"env": ENV_HELP, "set": SET_HELP, "no_cache": "rebuild every layer"}, iterable=["set"])
def build(c, env=None, set=None, no_cache=False):
    """Build the api, simulator, broker and web images (Compose, BuildKit) and the device image of an environment."""
    from ops import images

    stack = prepare_stack(c, env, set)
    args = ["build"] + (["--no-cache"] if no_cache else [])
    c.run(stack.compose(*args, profiles=("simulator",)), env=stack.run_env(), pty=False)
    with clear_errors():
        images.build_device("device", stack.result.images["device"], base_image=stack.result.bases["python"],
                            version=stack.result.build_args.get("VERSION", "0.0.0-dev"),
                            revision=images.git_revision(), dry=c.config.run.dry)


@task(help={"env": ENV_HELP, "set": SET_HELP, "simulator": "also start the simulator (default on)",
            "build": "build the images first (default on)"}, iterable=["set"])
def up(c, env=None, set=None, simulator=True, build=True):
    """Run the stack locally (installs the engine and Compose if missing) and print its URLs."""
    from ops import stack as stacks

    stack = prepare_stack(c, env, set)
    run_env = stack.run_env()
    if build:
        c.run(stack.compose("build", profiles=("simulator",)), env=run_env, pty=False)
    c.run(stack.compose("up", "--detach", "--wait", "--remove-orphans"), env=run_env, pty=False)
    if simulator:  # no --wait: the simulators (HTTP, and the MQTT fleet) are clients without a healthcheck
        c.run(stack.compose("up", "--detach", "simulator", "fleet", profiles=("simulator",)), env=run_env, pty=False)
    print("\n".join(stack.result.lines()))
    if simulator and c.config.run.dry:
        print(f"would wait up to {stacks.FIRST_READING_TIMEOUT_S:g} s for the first stored reading: "
              f"GET {stacks.first_reading_url(stack.result)} with the read token, every 0.5 s")
    elif simulator:
        took = stacks.wait_for_first_reading(stack)
        if took is None:
            raise Exit(f"the stack is up but no reading was stored within {stacks.FIRST_READING_TIMEOUT_S:g} s: "
                       "see `./iot logs`", code=1)
        print(f"first reading stored {took:.1f} s after the simulator started; data is flowing")


@task(help={"env": ENV_HELP, "volumes": "also delete the data volumes (InfluxDB, Grafana)"})
def down(c, env=None, volumes=False):
    """Stop and remove the stack's containers; data volumes are kept unless --volumes."""
    stack = prepare_stack(c, env, [], need_engine=False)
    args = ["down", "--remove-orphans"] + (["--volumes"] if volumes else [])
    c.run(stack.compose(*args, profiles=("simulator",)), env=stack.run_env(), pty=False)


@task(help={"env": ENV_HELP, "service": "only this service", "follow": "keep following"})
def logs(c, env=None, service=None, follow=False):
    """Show the stack's logs."""
    stack = prepare_stack(c, env, [], need_engine=False)
    args = ["logs", "--no-color"] + (["--follow"] if follow else []) + ([service] if service else [])
    c.run(stack.compose(*args, profiles=("simulator",)), env=stack.run_env(), pty=False)


@task(help={"env": ENV_HELP})
def ps(c, env=None):
    """List the stack's containers and their health."""
    stack = prepare_stack(c, env, [], need_engine=False)
    c.run(stack.compose("ps", "--all", profiles=("simulator",)), env=stack.run_env(), pty=False)


@task(help={"env": env_help("autotest_env"), "set": SET_HELP}, iterable=["set"])
def autotest(c, env=None, set=None):
    """Run the autotest file: its `sut` service checks the stack end to end; its exit code is the verdict."""
    stack = prepare_stack(c, env_of(c, env, "autotest_env"), set)
    run_env = stack.run_env()
    try:
        result = c.run(stack.compose("up", "--build", "--abort-on-container-exit", "--exit-code-from", "sut",
                                     target="autotest.yaml"), env=run_env, pty=False, warn=True)
    finally:
        c.run(stack.compose("down", "--volumes", "--remove-orphans", target="autotest.yaml"), env=run_env,
              pty=False, warn=True)
    if result is not None and result.exited:
        raise Exit(f"autotest failed (exit {result.exited}: the sut's verdict, or compose could not run it; "
                   "see above)", code=result.exited)


@task(help={"force": "rebuild even if the images exist"})
def bootstrap(c, force=False):
    """Build the offline base images from a Debian mirror (Debian, Python, InfluxDB)."""
    from ops import engine, images, render

    with clear_errors():
        engine.ensure_engine(dry=c.config.run.dry)
        bases = render.load_values("dev", {"bases.mode": "offline"})["bases"]["offline"]
        images.bootstrap(debian_tag=bases["debian"], python_tag=bases["python"], influxdb_tag=bases["influxdb"],
                         force=force, dry=c.config.run.dry)


@task(name="name", help={"image": "ours: api, simulator, device, broker, web; a base: influxdb, grafana, python, debian",
                         "env": ENV_HELP, "set": SET_HELP}, iterable=["set"])
def image_name(c, image, env=None, set=None):  # noqa: A002 - the option is --set
    """Print the image the env's stack runs for IMAGE, with the bases `up` would choose here.

    For commands typed by hand: IMG=$(./iot images.name influxdb). The base mode is the values' (with
    --set), switched to the offline bases when they ask for online ones that Docker Hub cannot serve, as
    `up` and `build` do. Only the name goes to stdout, why a mode was chosen to stderr. Nothing is built
    or pulled."""
    import sys

    from ops import images, render, stack

    env = env_of(c, env)
    with clear_errors():
        overrides = stack.choose_bases(env, render.parse_overrides(set or []), lambda m: print(m, file=sys.stderr))
        print(images.reference(render.load_values(env, overrides), image))


images_ns = Collection("images")
images_ns.add_task(bootstrap)
images_ns.add_task(image_name, name="name")
