"""invoke tasks: the operator's menu (`./iot --list`). Thin on purpose; the logic lives in ops/.

Every task echoes its commands; `./iot --dry TASK` prints them without running anything.
"""
import os

from invoke import Collection, Exit, task

from ops import commands

LAYERS = {"unit": "tests/unit", "integration": "tests/integration"}


@task(help={
    "layer": "only this layer: unit or integration (default: all)",
    "k": "only tests matching this pytest -k expression",
    "verbose": "one line per test",
    "exitfirst": "stop at the first failure",
})
def test(c, layer=None, k=None, verbose=False, exitfirst=False):
    """Run the tests (unit, then integration against a real InfluxDB and api).

    Integration tests use INFLUXDB_URL when set, otherwise they start Debian's influxd on a free
    loopback port with its data in a temporary folder; the api runs as a real server process."""
    if layer and layer not in LAYERS:
        raise Exit(f"unknown layer {layer!r}: use one of {', '.join(LAYERS)}", code=2)
    paths = [LAYERS[layer]] if layer else list(LAYERS.values())
    c.run(commands.pytest(paths, keyword=k, verbose=verbose, exitfirst=exitfirst), pty=False)


@task
def lint(c):
    """Check the Python code with ruff."""
    c.run(commands.ruff(["api", "simulator", "device", "tests", "ops", "tasks.py"]))


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
    "seconds": "measured seconds per scenario (default 10; a 2 s warm-up precedes each)",
    "workers": "api worker processes (default 2, one per core of the reference machine)",
    "out": "where to write the JSON results (default build/bench/results.json)",
})
def bench(c, seconds=10.0, workers=2, out="build/bench/results.json"):
    """Measure ingest throughput and latency against baselines from the same run (needs wrk)."""
    from pathlib import Path

    from ops import bench as benchmark

    if c.config.run.dry:
        print(f"would run the benchmark: {seconds}s per scenario, {workers} api workers, results to {out}")
        return
    try:
        summary = benchmark.run(seconds=float(seconds), workers=int(workers), out_file=Path(out))
    except benchmark.BenchError as exc:
        raise Exit(f"bench: {exc}", code=1) from None
    print(benchmark.table(summary))
    print(f"results written to {out}")


ns = Collection(test, lint, api, simulate, bench)
ns.configure({"run": {"echo": True}})
