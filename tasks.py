"""invoke tasks: the operator's menu (`./iot --list`). Thin on purpose; the logic lives in ops/.

Every task echoes its commands; `./iot --dry TASK` prints them without running anything.
"""
import os
from contextlib import contextmanager

from invoke import Collection, Exit, task

from ops import commands

LAYERS = {"unit": "tests/unit", "integration": "tests/integration", "e2e": "tests/e2e"}
ENV_HELP = ("environment: a values file in stacks/values/ (dev, test, prod); default: the config's iot.env "
            "(dev; set it in invoke.yaml or with INVOKE_IOT_ENV)")
SET_HELP = "override a value, e.g. --set bases.mode=offline (repeatable)"


@contextmanager
def _clear_errors():
    """Failures of the ops layer end as one line and a non-zero exit, not a traceback."""
    from ops import engine, images, registry, render, secrets

    try:
        yield
    except (engine.EngineError, images.ImageError, registry.RegistryError, render.RenderError,
            secrets.SecretsError) as exc:
        raise Exit(f"error: {exc}", code=1) from None


def _env(c, env, default_key="env"):
    """The environment given, else the config's (invoke.yaml `iot: {env: …}`, INVOKE_IOT_ENV)."""
    return env or c.config.iot[default_key]


def _prepare(c, env, sets, need_engine=True):
    from ops import render, stack

    env = _env(c, env)
    with _clear_errors():
        return stack.prepare(env, render.parse_overrides(sets or []), dry=c.config.run.dry,
                             need_engine=need_engine)


@task(help={
    "layer": "only this layer: unit, integration or e2e (default: all)",
    "k": "only tests matching this pytest -k expression",
    "verbose": "one line per test",
    "exitfirst": "stop at the first failure",
})
def test(c, layer=None, k=None, verbose=False, exitfirst=False):
    """Run the tests (unit, integration against a real InfluxDB and api, e2e on a real Docker engine).

    Integration tests use INFLUXDB_URL when set, otherwise they start Debian's influxd on a free
    loopback port with its data in a temporary folder; the api runs as a real server process. e2e
    tests build the images and run the stacks; without a Docker engine they are skipped with the
    reason printed, unless IOT_REQUIRE_DOCKER=1 (as in CI) makes that a failure."""
    if layer and layer not in LAYERS:
        raise Exit(f"unknown layer {layer!r}: use one of {', '.join(LAYERS)}", code=2)
    paths = [LAYERS[layer]] if layer else list(LAYERS.values())
    c.run(commands.pytest(paths, keyword=k, verbose=verbose, exitfirst=exitfirst), pty=False)


@task
def lint(c):
    """Check the Python code (ruff), the CI workflows (actionlint), every Dockerfile (hadolint) and every
    shell script (shellcheck). All of them run, so one pass shows every finding; any finding fails."""
    python_paths = ["api", "simulator", "device", "tests", "ops", "stacks", "ci", "grafana-provisioning", "tasks.py"]
    checks = [("ruff", commands.ruff(python_paths))]
    checks += [(name, commands.command_line(argv)) for name, argv in commands.config_linters()]
    failed = [name for name, cmd in checks if c.run(cmd, warn=True, pty=False).failed]
    if failed:
        raise Exit(f"lint: {', '.join(failed)} reported problems (see above)", code=1)


@task(help={
    "influxdb_url": "InfluxDB 1.x to store into (default: $INFLUXDB_URL or http://localhost:8086)",
    "port": "port to listen on (default 1337, the course's)",
})
def api(c, influxdb_url=None, port=1337):
    """Run the api on this machine, in the foreground (Ctrl-C stops it after flushing)."""
    env = {"API_PORT": str(port),
           "INFLUXDB_URL": influxdb_url or os.environ.get("INFLUXDB_URL", "http://localhost:8086")}
    c.run(commands.python_module("iot_api", []), env=env, pty=False)


@task(help={
    "url": "api to send to (default http://localhost:1337)",
    "devices": "number of simulated devices (default 1)",
    "interval": "seconds between readings of one device (default 1)",
    "count": "readings per device, then stop (default: run until Ctrl-C)",
    "duration": "seconds to run, then stop",
    "token": "bearer token, when the api requires one",
})
def simulate(c, url="http://localhost:1337", devices=1, interval=1.0, count=None, duration=None, token=None):
    """Run the device simulator against an api (local or remote)."""
    args = ["--url", url, "--devices", str(devices), "--interval", str(interval)]
    if count is not None:
        args += ["--count", str(count)]
    if duration is not None:
        args += ["--duration", str(duration)]
    env = {"SIMULATOR_TOKEN": token} if token else {}
    c.run(commands.python_module("iot_simulator", args), env=env, pty=False)


@task(help={
    "seconds": "measured seconds per scenario (default 10; a warm-up of up to 2 s precedes each)",
    "workers": "api worker processes (default 2, one per core of the reference machine)",
    "scenarios": "comma-separated subset of single,batch,nogc,reads (default: all; nogc = group commit off)",
    "connections": "connections of the single-reading scenario, comma-separated (default 1,8,64,256)",
    "out": "the JSON results (default build/bench/results.json, with --soak build/bench/soak.json); "
           "the plot goes next to it (throughput.png)",
    "soak": "instead of the scenarios: single-reading load at 64 connections, the api's memory sampled",
    "soak_seconds": "length of the soak in seconds (default 600)",
    "plot_only": "print the table and re-render the plot of an existing JSON (--out), measuring nothing",
    "docs": "also copy the plot to docs/benchmarks/throughput.png, which docs/benchmarks.md shows",
})
def bench(c, seconds=None, workers=None, scenarios=None, connections=None, out=None, soak=False, soak_seconds=None,
          plot_only=False, docs=False):
    """Measure throughput and latency against baselines from the same run, or memory under load (needs wrk)."""
    from ops import bench as benchmark

    try:
        opts = benchmark.parse(seconds=seconds, workers=workers, scenarios=scenarios, connections=connections,
                               soak=soak, soak_seconds=soak_seconds, out=out, plot_only=plot_only, docs=docs)
        if c.config.run.dry:
            print(opts.describe())
            return
        text = benchmark.execute(opts, progress=lambda line: print(line, flush=True))
    except benchmark.OptionError as exc:
        raise Exit(f"bench: {exc}", code=2) from None
    except benchmark.BenchError as exc:
        raise Exit(f"bench: {exc}", code=1) from None
    print(text)


@task(help={"env": ENV_HELP, "set": SET_HELP}, iterable=["set"])
def render(c, env=None, set=None):  # noqa: A002 - the option is --set
    """Render the Compose, autotest and Swarm files of an environment into build/ENV/."""
    stack = _prepare(c, env, set, need_engine=False)
    print("\n".join(stack.result.lines()))


@task(help={"env": ENV_HELP, "set": SET_HELP, "no_cache": "rebuild every layer"}, iterable=["set"])
def build(c, env=None, set=None, no_cache=False):
    """Build the api and simulator images (Compose, BuildKit) and the device image of an environment."""
    from ops import images

    stack = _prepare(c, env, set)
    args = ["build"] + (["--no-cache"] if no_cache else [])
    c.run(stack.compose(*args, profiles=("simulator",)), env=stack.run_env(), pty=False)
    with _clear_errors():
        images.build_device("device", stack.result.images["device"], base_image=stack.result.bases["python"],
                            version=stack.result.build_args.get("VERSION", "0.0.0-dev"),
                            revision=images.git_revision(), dry=c.config.run.dry)


@task(help={"env": ENV_HELP, "set": SET_HELP, "simulator": "also start the simulator (default on)",
            "build": "build the images first (default on)"}, iterable=["set"])
def up(c, env=None, set=None, simulator=True, build=True):
    """Run the stack locally (installs the engine and Compose if missing) and print its URLs."""
    from ops import stack as stacks

    stack = _prepare(c, env, set)
    run_env = stack.run_env()
    if build:
        c.run(stack.compose("build", profiles=("simulator",)), env=run_env, pty=False)
    c.run(stack.compose("up", "--detach", "--wait", "--remove-orphans"), env=run_env, pty=False)
    if simulator:  # no --wait: the simulator is a client and has no healthcheck
        c.run(stack.compose("up", "--detach", "simulator", profiles=("simulator",)), env=run_env, pty=False)
    print("\n".join(stack.result.lines()))
    if simulator and not c.config.run.dry:
        took = stacks.wait_for_first_reading(stack)
        if took is None:
            raise Exit("the stack is up but no reading was stored within 120 s: see `./iot logs`", code=1)
        print(f"first reading stored {took:.1f} s after the simulator started; data is flowing")


@task(help={"env": ENV_HELP, "volumes": "also delete the data volumes (InfluxDB, Grafana)"})
def down(c, env=None, volumes=False):
    """Stop and remove the stack's containers; data volumes are kept unless --volumes."""
    stack = _prepare(c, env, [], need_engine=False)
    args = ["down", "--remove-orphans"] + (["--volumes"] if volumes else [])
    c.run(stack.compose(*args, profiles=("simulator",)), env=stack.run_env(), pty=False)


@task(help={"env": ENV_HELP, "service": "only this service", "follow": "keep following"})
def logs(c, env=None, service=None, follow=False):
    """Show the stack's logs."""
    stack = _prepare(c, env, [], need_engine=False)
    args = ["logs", "--no-color"] + (["--follow"] if follow else []) + ([service] if service else [])
    c.run(stack.compose(*args, profiles=("simulator",)), env=stack.run_env(), pty=False)


@task(help={"env": ENV_HELP})
def ps(c, env=None):
    """List the stack's containers and their health."""
    stack = _prepare(c, env, [], need_engine=False)
    c.run(stack.compose("ps", "--all", profiles=("simulator",)), env=stack.run_env(), pty=False)


@task(help={"env": ENV_HELP, "set": SET_HELP}, iterable=["set"])
def autotest(c, env=None, set=None):
    """Run the autotest file: its `sut` service checks the stack end to end; its exit code is the verdict."""
    stack = _prepare(c, _env(c, env, "autotest_env"), set)
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


@task
def engine(c):
    """Install and start the Docker engine and the Compose v2 plugin if they are missing."""
    from ops import engine as docker_engine

    with _clear_errors():
        docker_engine.ensure_engine(dry=c.config.run.dry)


@task(help={"force": "rebuild even if the images exist"})
def bootstrap(c, force=False):
    """Build the offline base images from a Debian mirror (Debian, Python, InfluxDB)."""
    from ops import engine, images, render

    with _clear_errors():
        engine.ensure_engine(dry=c.config.run.dry)
        bases = render.load_values("dev", {"bases.mode": "offline"})["bases"]["offline"]
        images.bootstrap(python_tag=bases["python"], influxdb_tag=bases["influxdb"], force=force,
                         dry=c.config.run.dry)


images_ns = Collection("images")
images_ns.add_task(bootstrap)

ns = Collection(test, lint, api, simulate, bench, engine, render, build, up, down, logs, ps, autotest, images_ns)
# Defaults, overridable the pyinvoke way: invoke.yaml (`iot: {env: prod}`) or INVOKE_IOT_ENV=prod.
ns.configure({"run": {"echo": True}, "iot": {"env": "dev", "autotest_env": "test"}})


# -- publishing: tag, push, and a local registry to push to -------------------------------------------
REGISTRY_HELP = ("registry to publish to instead of the env's `registry` value, e.g. 127.0.0.1:5000/ "
                 "(same as --set registry=...)")


def _publish_plan(c, env, sets, registry, check_registry=False):
    """Which local image gets which tags, and the registry prefix. The environment is rendered into a
    throw-away folder (with throw-away secrets): publishing never rewrites build/ENV or secrets/ENV."""
    import tempfile
    from pathlib import Path

    from ops import registry as registries
    from ops import render

    env = _env(c, env)
    sets = list(sets or [])
    if registry is not None:
        sets.append(f"registry={registries.normalize_prefix(registry)}")
    with _clear_errors(), tempfile.TemporaryDirectory(prefix="iot-publish-") as tmp:
        overrides = render.parse_overrides(sets)
        result = render.render(env, out_dir=Path(tmp) / "out", secrets_dir=Path(tmp) / "secrets", overrides=overrides)
        prefix = render.load_values(env, overrides)["registry"]
        if check_registry and not c.config.run.dry:  # before anything else: the likeliest failure
            registries.check_registry(prefix)
        return registries.plan(result, prefix, dry=c.config.run.dry), prefix


@task(help={"env": ENV_HELP, "set": SET_HELP, "registry": REGISTRY_HELP}, iterable=["set"])
def tag(c, env=None, set=None, registry=None):  # noqa: A002 - the option is --set
    """Tag the built images for the registry: version, git-<sha7> (-dirty if built from a dirty tree), branch."""
    from ops import registry as registries

    plans, _ = _publish_plan(c, env, set, registry)
    with _clear_errors():
        registries.tag(plans, dry=c.config.run.dry)


@task(help={"env": ENV_HELP, "set": SET_HELP, "registry": REGISTRY_HELP}, iterable=["set"])
def push(c, env=None, set=None, registry=None):  # noqa: A002 - the option is --set
    """Tag and push the built images to the registry (checks first that it answers); never `latest`."""
    from ops import registry as registries

    plans, prefix = _publish_plan(c, env, set, registry, check_registry=True)
    with _clear_errors():
        registries.push(plans, prefix, dry=c.config.run.dry)


@task(name="start", help={
    "port": "port on 127.0.0.1 (default 5000; then push with --registry 127.0.0.1:PORT/)",
    "dir": "folder for its config, pid file, log and data/ (default build/registry)",
})
def registry_start(c, port=5000, dir=None):  # noqa: A002 - the option is --dir
    """Run a local registry (Debian's docker-registry, installed if missing) on 127.0.0.1 in the background."""
    from pathlib import Path

    from ops import registry as registries

    with _clear_errors():
        registries.start_local_registry(int(port), state_dir=Path(dir) if dir else registries.STATE_DIR,
                                        dry=c.config.run.dry)


@task(name="stop", help={"dir": "the folder it was started with (default build/registry)"})
def registry_stop(c, dir=None):  # noqa: A002 - the option is --dir
    """Stop the local registry started by registry.start (by its pid file); its data is kept."""
    from pathlib import Path

    from ops import registry as registries

    with _clear_errors():
        registries.stop_local_registry(Path(dir) if dir else registries.STATE_DIR, dry=c.config.run.dry)


registry_ns = Collection("registry")
registry_ns.add_task(registry_start, name="start")
registry_ns.add_task(registry_stop, name="stop")
ns.add_task(tag)
ns.add_task(push)
ns.add_collection(registry_ns)


# -- Swarm: deploy with a convergence check, rollback, status, scale ---------------------------------------
MACHINE_HELP = ("deploy to this Docker Machine node: runs `docker-machine env NAME` and uses its variables "
                "(default: the docker CLI's target: local engine, DOCKER_CONTEXT, DOCKER_HOST=ssh://…)")


def _swarm_target(c, machine):
    """A Docker runner for the target; with --machine, its variables also go into this process's
    environment (so that every docker command of the task, render's included, talks to that node)."""
    from ops import swarm

    with _swarm_errors():
        extra = swarm.machine_env(machine) if machine else {}
    os.environ.update(extra)
    return swarm.Docker(env=extra, dry=c.config.run.dry)


@contextmanager
def _swarm_errors():
    from ops import swarm

    with _clear_errors():
        try:
            yield
        except swarm.SwarmError as exc:
            raise Exit(f"error: {exc}", code=1) from None


def _stack_name(c, env, sets):
    from ops import render

    values = render.load_values(_env(c, env), render.parse_overrides(sets or []))
    return f"{values['project']}-{_env(c, env)}", values["label_prefix"]


@task(help={"env": ENV_HELP, "set": SET_HELP, "machine": MACHINE_HELP,
            "timeout": "seconds to wait for every service to converge (default 300)",
            "url": "api URL for the smoke test (default http://HOST:PUBLISHED_PORT, HOST from DOCKER_HOST)",
            "smoke": "post a reading and read it back through the published port after converging (default on)"},
      iterable=["set"])
def deploy(c, env=None, set=None, machine=None, timeout=300, url=None, smoke=True):  # noqa: A002 - --set
    """Deploy the env's Swarm stack and check it: render, validate, deploy, wait for convergence, smoke test.

    `docker stack deploy` exits 0 even when an update rolls back: this task waits until every service
    has finished its update and runs its desired replicas healthy. On failure it rolls the stuck services
    back, names them with their last task errors, and exits non-zero. Needs a swarm manager: see
    `swarm.init` for a one-node swarm on this machine."""
    from ops import render, secrets, swarm

    docker = _swarm_target(c, machine)
    local = swarm.is_local_target(os.environ)
    sets = list(set or [])
    with _swarm_errors():
        nodes = swarm.ready_nodes(docker)
        if nodes:  # host-mode ports on too few nodes: start-first could never place the new task
            extra, notes = swarm.update_order_overrides(
                render.load_values(_env(c, env), render.parse_overrides(sets)), nodes)
            for note in notes:
                print(f"note: {note}")
            sets += [f"{k}={v}" for k, v in extra.items() if not any(x.startswith(k + "=") for x in sets)]
    prepared = _prepare(c, env, sets, need_engine=local)
    result = prepared.result
    with _swarm_errors():
        values = render.load_values(result.env, render.parse_overrides(sets))
        placements = values["influxdb"]["deploy"]["placement"] + values["api"]["deploy"]["placement"]
        if result.grafana:
            placements += values["grafana"]["deploy"]["placement"]
        grafana_files = {g["key"]: g["path"] for g in render.grafana_provisioning_files()} if result.grafana else {}
        plan = swarm.DeployPlan(
            stack=result.stack_name, stack_file=result.files["stack.yaml"],
            secrets={name: result.secrets[key] for key, name in result.swarm_secret_names.items()},
            configs={name: grafana_files[key] for key, name in result.swarm_config_names.items() if key in grafana_files},
            node_labels=swarm.label_constraints(placements),
            api_url=(url or f"http://{swarm.published_host(os.environ)}:{values['api']['published_port']}").rstrip("/"),
            write_token_file=result.secrets[secrets.SIMULATOR_TOKEN], read_token_file=result.secrets[secrets.API_READ_TOKEN],
            external_secrets=values["swarm"]["secrets"] == "external", label_prefix=values["label_prefix"],
            timeout=float(timeout), smoke=smoke)
        states = swarm.deploy(plan, docker)
    if states:
        print(swarm.table(states))
        print(f"deployed {plan.stack}: every service converged" + (", smoke test passed" if smoke else "")
              + f"; api: {plan.api_url}")


@task(help={"env": ENV_HELP, "machine": MACHINE_HELP,
            "service": "only this service, e.g. api (repeatable; default: every service with a previous spec)"},
      iterable=["service"])
def rollback(c, env=None, machine=None, service=None):
    """Roll services of the env's stack back to their previous spec (`docker service rollback`)."""
    from ops import swarm

    docker = _swarm_target(c, machine)
    with _swarm_errors():
        if not docker.dry:
            swarm.require_manager(docker)
        name, _ = _stack_name(c, env, [])
        rolled = swarm.rollback(docker, name, service or [])
    print(f"rolled back: {', '.join(rolled) or 'nothing (no service has a previous spec)'}")


@task(help={"env": ENV_HELP, "machine": MACHINE_HELP})
def status(c, env=None, machine=None):
    """Show the env's stack on the swarm: services, running/desired replicas (healthy), versions, update state."""
    from ops import swarm

    docker = _swarm_target(c, machine)
    with _swarm_errors():
        if not docker.dry:
            swarm.require_manager(docker)
        name, prefix = _stack_name(c, env, [])
        found = swarm.states(docker, name, prefix)
    if not found:
        raise Exit(f"error: no stack {name} on this swarm (deploy it with ./iot deploy --env {_env(c, env)})", code=1)
    print(swarm.table(found))
    for s in found:
        if s.errors:
            print(f"{s.name}: " + "; ".join(s.errors))


@task(help={"env": ENV_HELP, "machine": MACHINE_HELP,
            "service": "SERVICE=N, e.g. api=3 (repeatable). With host-mode ports (test env) at most one api "
                       "task runs per node: more replicas than nodes stay pending"},
      iterable=["service"])
def scale(c, env=None, machine=None, service=None):
    """Scale services of the env's stack (`docker service scale`; waits until they converge)."""
    from ops import swarm

    if not service:
        raise Exit("error: give at least one --service NAME=N, e.g. --service api=3", code=2)
    counts = {}
    for item in service:
        name, sep, n = item.partition("=")
        if not sep or not n.isdigit():
            raise Exit(f"error: --service {item!r}: expected NAME=N, e.g. api=3", code=2)
        counts[name] = int(n)
    docker = _swarm_target(c, machine)
    with _swarm_errors():
        if not docker.dry:
            swarm.require_manager(docker)
        name, _ = _stack_name(c, env, [])
        swarm.scale(docker, name, counts)


@task(name="init", help={"advertise_addr": "address other nodes would join on (default 127.0.0.1: a one-node "
                                           "swarm on this machine)", "machine": MACHINE_HELP})
def swarm_init(c, advertise_addr="127.0.0.1", machine=None):
    """Make the target engine a one-node swarm (`docker swarm init`) unless it is in swarm mode already.
    `deploy` never does this by itself: joining or creating a swarm is the operator's choice."""
    from ops import swarm

    docker = _swarm_target(c, machine)
    with _swarm_errors():
        swarm.init_swarm(docker, advertise_addr)


swarm_ns = Collection("swarm")
swarm_ns.add_task(swarm_init, name="init")
for _swarm_task in (deploy, rollback, status, scale):
    ns.add_task(_swarm_task)
ns.add_collection(swarm_ns)


# -- clusters: a local multi-node swarm in containers, SSH hosts, Docker Machine nodes -----------------
@contextmanager
def _cluster_errors():
    from ops import cluster, images

    try:
        yield
    except (cluster.ClusterError, images.ImageError) as exc:
        raise Exit(f"error: {exc}", code=1) from None


def _cluster_images(c, env, image):
    """The images a local cluster's nodes get: --image as given, else the env's stack images that exist.
    Returns (refs, {base key: ref} of the stack's base images, bases mode)."""
    import tempfile
    from pathlib import Path

    from ops import images, render

    with _clear_errors(), tempfile.TemporaryDirectory(prefix="iot-cluster-") as tmp:
        result = render.render(_env(c, env), out_dir=Path(tmp) / "out", secrets_dir=Path(tmp) / "secrets")
        mode = render.load_values(_env(c, env))["bases"]["mode"]
    bases = {k: t for k, t in result.bases.items() if k != "python" and t}
    if image:
        return list(image), bases, mode
    wanted = [result.images["api"], result.images["simulator"], *bases.values()]
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
    "db_node": "node whose engine gets the label iot.influxdb=true (default: the first manager)",
    "label": "local driver: an extra label KEY=VALUE on every container, volume and network (repeatable)",
}, iterable=["ssh", "image", "option", "label"])
def cluster_create(c, driver="local", managers=1, workers=2, name="iot", ssh=None, env=None, image=None,
                   option=None, db_node=None, label=None, distribution="registry"):
    """Create a Swarm cluster: local Docker-in-Docker nodes, existing hosts over SSH, or Docker Machine nodes.

    Then: swarm init on the first manager, joins, the database node labelled, and the docker context
    to use printed. `--driver local` also gives the nodes the env's images: pushed to a registry on the
    cluster network (default), or `docker load`ed into every node (--distribution load)."""
    import shlex

    from ops import cluster

    managers, workers = int(managers), int(workers)
    with _cluster_errors():
        cluster.check_name(name)
        if ssh:
            if c.config.run.dry:
                for node, create in cluster.ssh_nodes(name, ssh, managers):
                    print(f"would run: {shlex.join(create)}  ({node.role} {node.address})")
                return
            result = cluster.create_ssh(name, ssh, managers, db_node=int(db_node or 1))
        elif driver == "local":
            if distribution not in cluster.DISTRIBUTIONS:
                raise cluster.ClusterError(f"--distribution {distribution}: one of {', '.join(cluster.DISTRIBUTIONS)}")
            use_registry = distribution == "registry"
            if c.config.run.dry:
                subnet = cluster.pick_subnet(cluster.used_subnets())
                print("would run: " + shlex.join(cluster.network_create_command(name, subnet, label or ())))
                if use_registry:
                    print("would run: " + shlex.join(cluster.registry_run_command(
                        name, cluster.registry_ip(subnet), extra_labels=label or ())))
                for index, (node, role) in enumerate(cluster.node_names(name, managers, workers)):
                    print("would run: " + shlex.join(cluster.node_run_command(
                        name, node, role, str(subnet.network_address + cluster.FIRST_NODE_HOST + index),
                        host_socket_dir=cluster.socket_dir(name) if index == 0 else None, extra_labels=label or (),
                        insecure_registry=f"{cluster.registry_ip(subnet)}:{cluster.REGISTRY_PORT}"
                        if use_registry else None)))
                print("then: swarm init/join, node label, "
                      + ("docker push of the images to the cluster registry" if use_registry
                         else "docker save | docker load of the images") + ", a context")
                return
            refs, bases, mode = _cluster_images(c, env, image)
            result = cluster.create_local(name, managers, workers, images=refs, db_node=db_node,
                                          extra_labels=label or (), distribution=distribution, bases=bases,
                                          bases_mode=mode)
        else:
            if c.config.run.dry:
                for node, _ in cluster.node_names(name, managers, workers):
                    print("would run: " + shlex.join(cluster.machine_create_command(driver, node, option or ())))
                return
            result = cluster.create_machine(name, driver, managers, workers, options=option or ())
    print("\n".join(result.lines()))


@task(name="ls")
def cluster_ls(c):
    """List the local clusters' nodes (containers) and the docker contexts of every cluster made here."""
    from ops import cluster

    with _cluster_errors():
        nodes, contexts = cluster.ls_local(), cluster.ls_contexts()
    if not nodes and not contexts:
        print("no clusters (create one: ./iot cluster.create --driver local)")
    for row in nodes:
        print(f"{row['cluster']:12} {row['role']:8} {row['container']:24} {row['state']:8} {row['status']}")
    for ctx in contexts:
        print(f"context {ctx['name']:20} {ctx['endpoint']:50} {ctx['description']}")


@task(name="rm", help={"name": "cluster name (default iot)"})
def cluster_rm(c, name="iot"):
    """Remove a cluster: local nodes with their volumes, network and context; SSH hosts leave the swarm;
    Docker Machine nodes are deleted (`docker-machine rm`). Only what carries the cluster's name is touched."""
    from ops import cluster

    with _cluster_errors():
        cluster.check_name(name)
        if c.config.run.dry:
            print(f"would remove: {cluster.ls_local(name)} {cluster.cluster_contexts(name)}")
            return
        removed = []
        if cluster.ls_local(name) or (cluster.STATE_DIR / name).exists():
            removed += cluster.rm_local(name)
        contexts = cluster.cluster_contexts(name)
        if any("(machine " in ctx["description"] for ctx in contexts):
            removed += cluster.rm_machine(name)
        elif contexts:
            removed += cluster.rm_contexts(name)
    print("\n".join(removed) if removed else f"no cluster named {name}")


cluster_ns = Collection("cluster")
cluster_ns.add_task(cluster_create, name="create")
cluster_ns.add_task(cluster_ls, name="ls")
cluster_ns.add_task(cluster_rm, name="rm")
ns.add_collection(cluster_ns)


# -- InfluxDB backup and restore (ops/db.py) ------------------------------------------------------------
DB_TARGET_HELP = ("compose (the env's `./iot up` stack, default) or swarm (its deployed stack; the InfluxDB "
                  "task must run on the engine the docker CLI talks to)")


@contextmanager
def _db_errors():
    from ops import db

    with _clear_errors():
        try:
            yield
        except db.DbError as exc:
            raise Exit(f"error: {exc}", code=1) from None


def _db_target(c, env, sets, target):
    from ops import db, render

    with _db_errors():
        return db.target_for(_env(c, env), render.parse_overrides(sets or []), target)


@task(name="backup", help={"env": ENV_HELP, "set": SET_HELP, "target": DB_TARGET_HELP,
                           "out": "file to write (default backups/ENV-<UTC timestamp>.tar.gz)"}, iterable=["set"])
def db_backup(c, env=None, set=None, out=None, target="compose"):  # noqa: A002 - the option is --set
    """Back up the running stack's InfluxDB database (influxd backup -portable) into a .tar.gz file here."""
    from pathlib import Path

    from ops import db

    where = _db_target(c, env, set, target)
    path = Path(out) if out else db.default_out(where.env)
    with _db_errors():
        manifest = db.backup(where, path, db.Runner(dry=c.config.run.dry))
    if c.config.run.dry:
        print(f"would write {path}")
        return
    print(f"backup of {where.db} ({where.where('influxdb')}): {path} ({path.stat().st_size} bytes), "
          f"{manifest['count']} points of {len(manifest['counts'])} sensors at backup time")


@task(name="restore", help={"env": ENV_HELP, "set": SET_HELP, "target": DB_TARGET_HELP,
                            "file": "a file written by db.backup",
                            "force": "merge into a database that already holds points (default: refuse)"},
      iterable=["set"])
def db_restore(c, file=None, env=None, set=None, target="compose", force=False):  # noqa: A002 - the option is --set
    """Restore a db.backup file into the running stack (best a fresh one) and check the counts.

    Restored into a temporary database, copied into the live one with SELECT … INTO, then dropped: the
    live database is never dropped. One that already holds points is refused unless --force."""
    from pathlib import Path

    from ops import db

    if not file:  # an option rather than a positional, so that `db.restore --help` shows the help
        raise Exit("db.restore needs --file FILE (a file written by db.backup)", code=2)
    where = _db_target(c, env, set, target)
    with _db_errors():
        result = db.restore(where, Path(file), db.Runner(dry=c.config.run.dry), force=force)
    if c.config.run.dry:
        return
    restored, after = sum(result["restored"].values()), sum(result["after"].values())
    print(f"restored {file} into {where.db} ({where.where('influxdb')}): {restored} points of "
          f"{len(result['restored'])} sensors from the backup; {where.db} now holds {after} points "
          f"(backup made {result['manifest'].get('created')} with {result['manifest'].get('count')})")


db_ns = Collection("db")
db_ns.add_task(db_backup, name="backup")
db_ns.add_task(db_restore, name="restore")
ns.add_collection(db_ns)
