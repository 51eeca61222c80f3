"""`invoke bench` must keep working: the real task, with the real api, influxd and wrk, in tiny durations.

This checks the tool, not the figures (those are machine-dependent and live in docs/benchmarks.md):
every scenario ran and reported sane numbers, every acknowledged single reading was found in
InfluxDB, the reads returned data, the targets were evaluated, the plot is a PNG, the soak sampled
memory; bad options end in one line. The targets' evaluation is checked with results that miss them.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ops import bench

ROOT = Path(__file__).resolve().parents[2]

needs_tools = pytest.mark.skipif(any(shutil.which(t) is None for t in ("wrk", "influxd", "mosquitto_pub", "node", "npm"))
                                 or not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()),
                                 reason="wrk, influxd, mosquitto(-clients), node or npm not installed (.ci/run installs them)")

TARGETS = {"group_commit_vs_one_write_per_request_at_64", "single_readings_per_s_at_64", "single_p99_ms_at_64",
           "batch_100_vs_influxdb", "batch_1000_vs_influxdb", "api_memory_flat_over_soak",
           "mqtt_historian_vs_influxdb", "mqtt_historian_vs_api_single_at_64", "mqtt_fleet_cpu_share",
           "mqtt_publish_to_queryable_p95_ms", "api_ts_payload_vs_course_collector_at_64",
           "api_ts_payload_vs_http_floor_at_64", "api_ts_payload_p99_ms_at_64",
           "api_protocol_vs_uvicorn_protocol_floor_at_64"}


def invoke_bench(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`./iot bench ARGS` without the bootstrap: the same invoke task, from this interpreter."""
    return subprocess.run([sys.executable, "-m", "invoke", "bench", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


@needs_tools
def test_bench_runs_every_scenario_and_reports_targets_and_a_plot(tmp_path):
    out = tmp_path / "results.json"
    run = invoke_bench("--seconds", "1", "--connections", "64", "--out", str(out), timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    summary = json.loads(out.read_text())
    names = [r["name"] for r in summary["results"]]
    assert names == ["api single", "api batch 100", "influxdb /write batch 100", "api batch 1000",
                     "influxdb /write batch 1000", "reads GET /data, under writes", "writes during GET /data",
                     "reads GET /top, under writes", "writes during GET /top", "api single, one write per request",
                     "http floor: uvicorn storing nothing", "http floor, the api's protocol",
                     "influxdb /write batch 1000 (mqtt)", "mqtt historian drain",
                     "mqtt nominal fleet (77 stations)", "course collector (node), ts payload", "api single, ts payload"]
    for r in summary["results"]:
        assert r["errors"] == 0, r
        if r["kind"] == "mqtt":  # stored readings through the broker and the historian, counted in InfluxDB
            assert r["readings_per_s"] > 0 and r["api_cpu_s"] > 0, r
            if r["name"] == "mqtt historian drain":
                assert r["stored_checked"] is True and r["readings_per_request"] == 1000, r
            else:  # the nominal fleet: ~215 readings/s, a share of one core, publish -> queryable
                assert 100 < r["readings_per_s"] < 400 and 0 < r["cpu_share"] < 1, r
                assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] < 5000, r
            continue
        assert r["requests_per_s"] > 0 and 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"], r
        if r["kind"] == "write":
            assert r["readings_per_s"] > 0, r
        elif r["kind"] == "floor":  # stores nothing: no readings, and nothing to check in InfluxDB
            assert r["readings_per_s"] is None and r["api_cpu_s"] > 0, r
        else:
            assert r["returned_data"] is True and r["readings_per_s"] is None, r
        if r["kind"] == "write" and r["readings_per_request"] == 1:
            assert r["stored_checked"] is True, r
        if not r["name"].startswith("influxdb"):
            assert r["api_cpu_s"] is not None or r["name"].startswith("writes during"), r
    assert set(summary["ratios"]) >= {"group_commit_vs_one_write_per_request_at_64", "api_batch_100_vs_influxdb",
                                      "api_batch_1000_vs_influxdb", "writes_during_data_reads_vs_writes_alone_at_64",
                                      "writes_during_top_reads_vs_writes_alone_at_64",
                                      "http_floor_vs_one_write_per_request_at_64", "mqtt_historian_vs_influxdb",
                                      "mqtt_historian_vs_api_single_at_64", "api_ts_payload_vs_course_collector_at_64",
                                      "api_single_vs_course_collector_at_64", "api_ts_payload_vs_http_floor_at_64",
                                      "api_protocol_vs_uvicorn_protocol_floor_at_64",
                                      "uvicorn_protocol_cpu_vs_api_protocol_cpu_per_answer_at_64"}
    targets = {t["target"]: t for t in summary["targets"]}
    assert set(targets) == TARGETS
    assert "uvicorn storing nothing answers" in targets["group_commit_vs_one_write_per_request_at_64"]["note"]
    for key, t in targets.items():
        if key == "api_memory_flat_over_soak":  # not part of this run
            assert t["measured"] is None and t["met"] is None and "--soak" in t["note"]
        else:
            assert t["measured"] is not None and t["met"] in (True, False), t
    assert "targets" in run.stdout and "api single" in run.stdout
    for r in summary["results"]:  # wrk's own CPU, from its rusage: it shares the cores with what it measures
        if r["kind"] != "mqtt":
            assert r["wrk_cpu_s"] > 0 and r["cpu_us_per_request"]["wrk"] > 0, r
    budget = summary["cpu_budget"]  # issue #15's bar in CPU time, from the collector and floor rows
    api_us, floor_us = budget["api_ts_us"], budget["floor_us"]
    assert budget["api_ts_total_us"] == pytest.approx(api_us["server"] + api_us["influxd"] + api_us["wrk"], abs=0.2)
    assert budget["floor_total_us"] == pytest.approx(floor_us["server"] + floor_us["wrk"], abs=0.2)
    assert min(api_us["server"], api_us["influxd"], floor_us["server"]) > 0, budget
    assert "cpu per request at 64 connections" in run.stdout
    assert (tmp_path / "throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # --plot-only: the same JSON, plotted again without measuring
    (tmp_path / "throughput.png").unlink()
    again = invoke_bench("--plot-only", "--out", str(out), timeout=60)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "throughput.png").read_bytes()[:4] == b"\x89PNG"


@needs_tools
def test_soak_samples_memory_and_checks_stored(tmp_path):
    out = tmp_path / "soak.json"
    run = invoke_bench("--soak", "--soak-seconds", "5", "--workers", "1", "--out", str(out))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "api RSS" in run.stdout  # progress lines while it runs
    soak = json.loads(out.read_text())["soak"]
    assert len(soak["samples"]) >= 5
    assert all(rss > 10 for _, rss, _ in soak["samples"]), soak["samples"]  # MiB: a python process or more
    assert soak["readings_per_s"] > 0 and soak["errors"] == 0
    assert soak["stored_checked"] is True and soak["stored"] >= soak["acknowledged"] > 0
    assert soak["api_answers"] == {"201": soak["api_counted"]}  # one reading per request, all stored
    assert f"201: {soak['api_counted']:,}" in run.stdout
    assert soak["rss_slope_mib_per_min"] is not None and soak["flat"] in (True, False)
    [memory] = [t for t in json.loads(out.read_text())["targets"] if t["target"] == "api_memory_flat_over_soak"]
    assert memory["measured"] == soak["rss_slope_mib_per_min"] and memory["met"] == soak["flat"]


def _row(name, conns, readings_per_s, p99_ms=5.0):
    return {"name": name, "connections": conns, "readings_per_s": readings_per_s, "p99_ms": p99_ms}


def test_targets_missed_are_reported_as_missed():
    missing = [_row("api single", 64, 8_000, p99_ms=40.0), _row("api single, one write per request", 64, 4_000),
               _row("api batch 1000", 8, 300_000), _row("influxdb /write batch 1000", 8, 900_000)]
    soak = {"seconds": 600, "rss_slope_mib_per_min": 3.5}
    targets = {t["target"]: t for t in bench.summarize(missing, {}, soak=soak)["targets"]}
    assert {k: t["met"] for k, t in targets.items()} == {
        "group_commit_vs_one_write_per_request_at_64": False, "single_readings_per_s_at_64": False,
        "single_p99_ms_at_64": False, "batch_1000_vs_influxdb": False, "api_memory_flat_over_soak": False}
    assert targets["group_commit_vs_one_write_per_request_at_64"]["measured"] == 2.0
    assert targets["group_commit_vs_one_write_per_request_at_64"]["note"] == ""  # no floor measured
    assert "MISSED" in bench.report.targets_table(list(targets.values()))

    # With the HTTP floor measured, the 5x target says how far any api could go on this machine.
    floor = {**_row("http floor: uvicorn storing nothing", 64, None), "requests_per_s": 12_000}
    summary = bench.summarize(missing + [floor], {})
    assert summary["ratios"]["http_floor_vs_one_write_per_request_at_64"] == 3.0
    [five] = [t for t in summary["targets"] if t["target"] == "group_commit_vs_one_write_per_request_at_64"]
    assert five["note"] == "uvicorn storing nothing answers 3.00x the baseline here (floor)"

    # The MQTT targets, from the mqtt scenario's rows: every one missed here.
    mqtt_rows = [{**_row("influxdb /write batch 1000 (mqtt)", 8, 800_000), "kind": "write"},
                 {**_row("mqtt historian drain", 1, 20_000), "readings_per_request": 1000, "kind": "mqtt"},
                 {**_row("mqtt nominal fleet (77 stations)", 77, 215), "kind": "mqtt", "cpu_share": 0.4,
                  "p95_ms": 2500.0}]
    targets = {t["target"]: t for t in bench.summarize(missing + mqtt_rows, {})["targets"]}
    assert {k: targets[k]["measured"] for k in targets if k.startswith("mqtt")} == {
        "mqtt_historian_vs_influxdb": 0.03, "mqtt_historian_vs_api_single_at_64": 2.5, "mqtt_fleet_cpu_share": 0.4,
        "mqtt_publish_to_queryable_p95_ms": 2500.0}
    assert all(targets[k]["met"] is False for k in targets if k.startswith("mqtt"))

    met = [_row("api single", 64, 30_000, p99_ms=9.0), _row("api single, one write per request", 64, 5_000),
           _row("api batch 100", 8, 200_000), _row("influxdb /write batch 100", 8, 300_000)]
    targets = bench.summarize(met, {}, soak={"seconds": 600, "rss_slope_mib_per_min": 0.2})["targets"]
    assert all(t["met"] is True for t in targets), targets


def test_cpu_budget_says_what_75_percent_of_the_floor_leaves_the_api():
    rows = [{**_row("api single, ts payload", 64, 11_000), "requests_per_s": 11_000.0,
             "cpu_us_per_request": {"server": 97.0, "influxd": 37.0, "wrk": 22.0}},
            {**_row("http floor: uvicorn storing nothing", 64, None), "requests_per_s": 26_000.0,
             "cpu_us_per_request": {"server": 46.0, "wrk": 25.0}}]
    budget = bench.report.cpu_budget(rows, 2)
    assert budget["api_ts_total_us"] == 156.0 and budget["api_ts_ceiling_per_s"] == 12_821  # 2e6 / 156
    assert budget["floor_total_us"] == 71.0 and budget["floor_ceiling_per_s"] == 28_169
    assert budget["bar_per_s"] == 19_500 and budget["us_per_request_at_bar"] == 102.6  # 2e6 / (0.75 * 26,000)
    assert budget["api_us_left_at_bar"] == 43.6  # 102.6 - 37 - 22
    text = bench.report.cpu_budget_text(budget)
    assert "44 µs for the api, which uses 97 (the do-nothing floor server 46)" in text, text
    assert bench.report.cpu_budget(rows[:1], 2) is None  # no floor in the run: nothing to say


@pytest.mark.parametrize("args, message", [
    (["--seconds", "-1"], "--seconds: must be a number greater than 0"),
    (["--soak", "--soak-seconds", "0"], "--soak-seconds: must be a number greater than 0"),
    (["--scenarios", "single,bogus"], "unknown scenario 'bogus'"),
    (["--connections", "64,x"], "--connections: must be an integer"),
    (["--soak-seconds", "5"], "--soak-seconds needs --soak"),
])
def test_bad_options_end_in_one_line(args, message):
    run = invoke_bench(*args, timeout=60)
    assert run.returncode == 2
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_missing_wrk_ends_in_one_line(tmp_path):
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # the venv's tools, not /usr/bin's wrk
    run = invoke_bench("--seconds", "1", "--out", str(tmp_path / "r.json"), env=env, timeout=60)
    assert run.returncode == 1
    assert run.stderr.strip() == "bench: wrk not found: install it (Debian: apt-get install wrk)", run.stderr


def test_missing_node_ends_in_one_line(tmp_path):
    """The collector scenario runs the course's Node.js collector: without node, one line before any measuring."""
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "wrk").symlink_to(shutil.which("wrk") or "/usr/bin/wrk")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{tools}"}
    run = invoke_bench("--seconds", "1", "--scenarios", "collector", "--out", str(tmp_path / "r.json"), env=env, timeout=60)
    assert run.returncode == 1
    assert run.stderr.strip().startswith("bench: node and npm not found: the collector scenario runs the course's"), run.stderr
