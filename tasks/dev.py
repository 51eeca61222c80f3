"""Development: tests, lint, the api and simulator on the host, the benchmark, the Docker engine."""
import os

from invoke import Exit, task

from ops import commands

from ._common import clear_errors

# quick: the unit layer and the course's path through real processes (simulator -> api -> InfluxDB).
LAYERS = {"quick": ["tests/unit", "tests/integration/test_simulator_api.py"], "unit": ["tests/unit"],
          "integration": ["tests/integration"], "e2e": ["tests/e2e"]}
FULL = ("unit", "integration", "e2e")


@task(help={
    "layer": "only this layer: quick (the unit layer + simulator -> api -> InfluxDB), unit, integration "
             "or e2e (default: unit, integration and e2e)",
    "k": "only tests matching this pytest -k expression",
    "verbose": "one line per test",
    "exitfirst": "stop at the first failure",
    "jobs": "test processes side by side (default 2; 1: one process, in file order)",
})
def test(c, layer=None, k=None, verbose=False, exitfirst=False, jobs=2):
    """Run the tests (unit, integration against a real InfluxDB and api, e2e on a real Docker engine).

    First installs what they need and this machine lacks (influxd, mosquitto, nginx, wrk, Chromium from
    Debian's packages; the Docker engine for e2e), as `./iot up` installs the engine; where it cannot
    (not Debian, not root), the tests that need a missing program are skipped with the reason, unless
    IOT_REQUIRE_DOCKER=1 or CI=true make that a failure. Integration tests use INFLUXDB_URL when set,
    otherwise their own influxd on a free loopback port. Two processes by default: the e2e tests that
    share env test and the swarm run in order on one, everything else beside them on the other."""
    from ops import devtools, needs

    if layer and layer not in LAYERS:
        raise Exit(f"unknown layer {layer!r}: use one of {', '.join(LAYERS)}", code=2)
    if int(jobs) < 1:
        raise Exit(f"--jobs {jobs}: give 1 or more", code=2)
    paths = LAYERS[layer] if layer else [p for name in FULL for p in LAYERS[name]]
    with clear_errors():
        devtools.ensure("./iot test", dry=c.config.run.dry)
        needs.ensure(paths, dry=c.config.run.dry)
    c.run(commands.pytest(paths, keyword=k, verbose=verbose, exitfirst=exitfirst, jobs=int(jobs)), pty=False)


@task
def lint(c):
    """Lint the Python code, CI workflows, Dockerfiles and shell scripts.

    ruff, actionlint, hadolint and shellcheck all run, so one pass shows every finding; any finding fails."""
    from ops import devtools

    with clear_errors():
        devtools.ensure("./iot lint", dry=c.config.run.dry)
    python_paths = ["api", "simulator", "device", "tests", "ops", "stacks", "ci", "grafana-provisioning", "tasks"]
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
    # The settings go on the command line (through env(1)), so `--dry` and the echo show them.
    settings = [f"API_PORT={port}",
                f"INFLUXDB_URL={influxdb_url or os.environ.get('INFLUXDB_URL', 'http://localhost:8086')}"]
    c.run(commands.command_line(["env", *settings]) + " " + commands.python_module("iot_api", []), pty=False)


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
    "scenarios": "comma-separated subset of single,batch,nogc,floor,reads,mqtt,collector (default: all; collector = "
                 "the course's Node.js collector, needs node and npm; nogc = group "
                 "commit off; floor = uvicorn alone, storing nothing)",
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
    from ops import devtools

    with clear_errors():
        devtools.ensure("./iot bench", dry=c.config.run.dry)
    with clear_errors("bench"):  # OptionError exits 2, BenchError 1 (their exit_code)
        opts = benchmark.parse(seconds=seconds, workers=workers, scenarios=scenarios, connections=connections,
                               soak=soak, soak_seconds=soak_seconds, out=out, plot_only=plot_only, docs=docs)
        if c.config.run.dry:
            print(opts.describe())
            return
        text = benchmark.execute(opts, progress=lambda line: print(line, flush=True))
    print(text)


@task
def engine(c):
    """Install and start the Docker engine and the Compose v2 plugin if they are missing."""
    from ops import engine as docker_engine

    with clear_errors():
        docker_engine.ensure_engine(dry=c.config.run.dry)
