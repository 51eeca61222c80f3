"""`invoke bench`: the api's throughput and latency against baselines measured in the same run.

Load comes from wrk in its own processes on loopback; the api runs as a real server with its
production settings against a real influxd started for the run (data in a temporary folder).

    options     the task's options, checked        scenarios   what is measured, in which order
    wrk         the load generator                 procs       CPU and memory of a server from /proc
    soak        memory under steady load           report      summary, ratios, targets, text table
    plot        the throughput plot (matplotlib)

Results: a table on stdout, a JSON file, and a plot next to it.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from . import collector, plot, report, scenarios, soak, wrk
from .common import BenchError, OptionError, start_influx
from .options import DOCS_PLOT, Options, parse
from .report import summarize, table, targets

__all__ = ["BenchError", "OptionError", "Options", "execute", "parse", "run", "run_soak", "summarize", "table", "targets"]


def execute(opts: Options, progress=print) -> str:
    """What `invoke bench` does with its options; returns the report to print."""
    if opts.plot_only:
        summary = load(opts.out)
        return f"{table(summary)}\n\n{_plot(summary, opts)}"
    if opts.soak:
        summary = run_soak(opts, progress)
        return f"{report.soak_table(summary)}\n\nresults written to {opts.out}"
    summary = run(opts, progress)
    return f"{table(summary)}\n\nresults written to {opts.out}\n{_plot(summary, opts)}"


def run(opts: Options = Options(), progress=print) -> dict:
    """Measure the scenarios of opts; write the JSON (opts.out) and return it."""
    wrk.require()
    plot.require()  # now, not after minutes of measuring
    if "collector" in opts.scenarios:
        collector.require()
    work = Path(tempfile.mkdtemp(prefix="iot-bench-"))
    try:
        influx = start_influx()
        try:
            results = scenarios.Runner(influx, work, opts.seconds, opts.workers, opts.connections, opts.batch_sizes,
                                       progress).run(opts.scenarios)
        finally:
            influx.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    settings = {"seconds_per_scenario": opts.seconds, "api_workers": opts.workers, "scenarios": list(opts.scenarios),
                "connections": list(opts.connections), "batch_sizes": list(opts.batch_sizes),
                "read_connections": scenarios.READ_CONNECTIONS, "write_connections": scenarios.WRITE_CONNECTIONS}
    summary = summarize([asdict(r) for r in results], settings)
    _write(summary, opts.out)
    return summary


def run_soak(opts: Options, progress=print) -> dict:
    """The soak; writes the JSON (opts.out) before it reports readings that went missing."""
    wrk.require()
    work = Path(tempfile.mkdtemp(prefix="iot-bench-soak-"))
    try:
        result = soak.run(opts.soak_seconds, opts.workers, work, progress)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = summarize([], {"soak_seconds": opts.soak_seconds, "api_workers": opts.workers}, soak=result)
    _write(summary, opts.out)
    if not result["stored_checked"]:
        raise BenchError(f"soak: {result['acknowledged']} readings acknowledged to wrk, {result['api_counted']} counted "
                         f"by the api, {result['stored']} stored in InfluxDB (results in {opts.out})")
    return summary


def load(path: Path) -> dict:
    try:
        summary = json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchError(f"{path} not found: run ./iot bench first (or give --out)") from None
    except (OSError, ValueError) as exc:
        raise BenchError(f"{path}: not a results file ({exc})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("results"), list):
        raise BenchError(f"{path}: not a results file of ./iot bench (no 'results' list)")
    summary["targets"] = targets(summary["results"], summary.get("soak"), summary.get("machine", {}).get("cpus"))
    return summary


def _plot(summary: dict, opts: Options) -> str:
    if not any(r["name"] == "api single" for r in summary["results"]):
        return "no plot: the single scenario did not run"
    plot.render(summary, opts.plot)
    lines = [f"plot written to {opts.plot}"]
    if opts.docs:
        DOCS_PLOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(opts.plot, DOCS_PLOT)
        lines.append(f"plot copied to {DOCS_PLOT}")
    return "\n".join(lines)


def _write(summary: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")
