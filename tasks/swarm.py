"""Swarm: deploy with a convergence check, rollback, status, scale, swarm.init."""
import os

from invoke import Collection, Exit, task

from ._common import ENV_HELP, SET_HELP, clear_errors, env_of

MACHINE_HELP = ("deploy to this Docker Machine node: runs `docker-machine env NAME` and uses its variables "
                "(default: the docker CLI's target: local engine, DOCKER_CONTEXT, DOCKER_HOST=ssh://…)")


def _swarm_target(c, machine):
    """A Docker runner for the target; with --machine, its variables also go into this process's
    environment (so that every docker command of the task, render's included, talks to that node)."""
    from ops import swarm

    with clear_errors():
        extra = swarm.machine_env(machine) if machine else {}
    os.environ.update(extra)
    return swarm.Docker(env=extra, dry=c.config.run.dry)


def _stack_on_manager(c, env, machine):
    """The runner for the target (checked to be a swarm manager) and the env's stack (name, label prefix)."""
    from ops import swarm

    docker = _swarm_target(c, machine)
    with clear_errors():
        if not docker.dry:
            swarm.require_manager(docker)
        name, prefix = swarm.stack_of(env_of(c, env))
    return docker, name, prefix


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
    from ops import render, swarm

    docker = _swarm_target(c, machine)
    with clear_errors():
        plan = swarm.prepare_deploy(env_of(c, env), render.parse_overrides(set or []), docker, environ=os.environ,
                                    machine=machine, url=url, timeout=float(timeout), smoke=smoke)
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

    docker, name, _ = _stack_on_manager(c, env, machine)
    with clear_errors():
        rolled = swarm.rollback(docker, name, service or [])
    print(f"{'would roll back' if docker.dry else 'rolled back'}: "
          f"{', '.join(rolled) or 'nothing (no service has a previous spec)'}")


@task(help={"env": ENV_HELP, "machine": MACHINE_HELP,
            "volumes": "also delete the stack's volumes on this node (InfluxDB's data, for good)"})
def undeploy(c, env=None, machine=None, volumes=False):
    """Remove the env's stack (`docker stack rm`) and wait until its containers and networks are gone."""
    from ops import swarm

    docker, name, _ = _stack_on_manager(c, env, machine)
    with clear_errors():
        deleted = swarm.undeploy(docker, name, volumes=volumes)
    if not docker.dry:
        print(f"removed stack {name}" + (f"; deleted volumes: {', '.join(deleted)}" if deleted else ""))


@task(help={"env": ENV_HELP, "machine": MACHINE_HELP})
def status(c, env=None, machine=None):
    """Show the env's stack on the swarm: services, running/desired replicas (healthy), versions, update state."""
    from ops import swarm

    docker, name, prefix = _stack_on_manager(c, env, machine)
    with clear_errors():
        found = swarm.states(docker, name, prefix)
    if not found:
        raise Exit(f"error: no stack {name} on this swarm (deploy it with ./iot deploy --env {env_of(c, env)})", code=1)
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
    docker, name, _ = _stack_on_manager(c, env, machine)
    with clear_errors():
        swarm.scale(docker, name, counts)


@task(name="init", help={"advertise_addr": "address other nodes would join on (default 127.0.0.1: a one-node "
                                           "swarm on this machine)", "machine": MACHINE_HELP})
def swarm_init(c, advertise_addr="127.0.0.1", machine=None):
    """Make the target engine a one-node swarm (`docker swarm init`) unless it is in swarm mode already.
    `deploy` never does this by itself: joining or creating a swarm is the operator's choice."""
    from ops import swarm

    docker = _swarm_target(c, machine)
    with clear_errors():
        swarm.init_swarm(docker, advertise_addr)


swarm_ns = Collection("swarm")
swarm_ns.add_task(swarm_init, name="init")
