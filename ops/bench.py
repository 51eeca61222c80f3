"""`invoke bench`: the api's ingest throughput and latency, with baselines measured in the same run.

Load comes from wrk (Debian's package) in its own process on loopback; the api runs as a real server
with its production settings against a real influxd started for the run (data in a temporary folder).
Headline ratios: group commit against one-write-per-request, and api batches against InfluxDB's own
line-protocol throughput for the same batch. Results: a table on stdout and a JSON file.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from harness import ApiServer, InfluxServer  # noqa: E402  (the same real processes the tests use)

# wrk reports through this hook as one JSON line (latencies in microseconds).
_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH {"requests":%d,"duration_us":%d,"socket_errors":%d,"non2xx":%d,' ..
    '"p50_us":%d,"p95_us":%d,"p99_us":%d}\\n', summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


@dataclass
class Result:
    name: str
    connections: int
    readings_per_request: int
    requests_per_s: float
    readings_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    api_cpu_s: float | None
    stored_checked: bool | None = None


class BenchError(Exception):
    pass


def _cpu_seconds(pid: int) -> float:
    """utime+stime of a process and its children (uvicorn workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = {pid}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                pids.add(int(entry.name))
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _wrk(url: str, script: str, connections: int, seconds: float, workdir: Path) -> dict:
    path = workdir / "load.lua"
    path.write_text(script + _DONE)
    threads = max(1, min(2, connections))
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(path), url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[6:])
    raise BenchError(f"wrk gave no result: {out.stdout[-500:]} {out.stderr[-500:]}")


def _post_script(body_file: Path, content_type: str) -> str:
    return (f'local f = assert(io.open("{body_file}", "rb"))\nwrk.body = f:read("*a")\nf:close()\n'
            f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "{content_type}"\n')


def _batch(n: int, t0: int) -> tuple[bytes, bytes]:
    """The same n readings as a JSON batch for the api and as line protocol for InfluxDB."""
    readings = [{"ts": f"2026-01-01T00:00:{i // 1000:02d}.{i % 1000:03d}Z", "type": "temp",
                 "value": 20 + (i % 15), "sensor_id": f"bench-{i % 100}"} for i in range(n)]
    lines = "".join(f"data,sensor_id=bench-{i % 100},type=temp value={float(20 + i % 15)!r} "
                    f"{t0 + (i // 1000) * 10**9 + (i % 1000) * 10**6}\n" for i in range(n))
    return json.dumps(readings).encode(), lines.encode()


def run(seconds: float = 10.0, workers: int = 2, connections: tuple[int, ...] = (1, 8, 64, 256),
        batch_sizes: tuple[int, ...] = (100, 1000), out_file: Path | None = None, progress=print) -> dict:
    if not shutil.which("wrk"):
        raise BenchError("wrk not found: install it (Debian: apt-get install wrk)")
    work = Path(tempfile.mkdtemp(prefix="iot-bench-"))
    influx = InfluxServer()
    results: list[Result] = []
    try:
        single = work / "single.json"
        single.write_bytes(b'{"type":"temp","value":34,"sensor_id":123}')  # no ts: a new point each time
        env = {"API_WORKERS": str(workers), "API_LOG_LEVEL": "warning"}

        def measure(name, url, script, conns, per_request, pid=None, db=None):
            progress(f"bench: {name}, {conns} connections, {seconds:g}s ...")
            _wrk(url, script, conns, min(2.0, seconds), work)  # warm-up: connections, JIT-less caches
            before_cpu = _cpu_seconds(pid) if pid else None
            before = influx.count(db) if db else None
            res = _wrk(url, script, conns, seconds, work)
            cpu = round(_cpu_seconds(pid) - before_cpu, 2) if pid else None
            elapsed = res["duration_us"] / 1e6
            ok = res["requests"] - res["non2xx"]
            checked = None
            if db and per_request == 1:
                stored = influx.count(db) - before
                checked = stored >= ok  # every acknowledged reading is in InfluxDB
                if not checked:
                    raise BenchError(f"{name}: {ok} readings acknowledged but only {stored} stored")
            results.append(Result(name, conns, per_request, round(res["requests"] / elapsed, 1),
                                  round(ok * per_request / elapsed, 1), res["p50_us"] / 1000,
                                  res["p95_us"] / 1000, res["p99_us"] / 1000,
                                  res["socket_errors"] + res["non2xx"], cpu, checked))

        for group_commit in (True, False):
            db = "bench_gc" if group_commit else "bench_nogc"
            api = ApiServer(influx.url, db, {**env, "API_GROUP_COMMIT": str(group_commit).lower()})
            try:
                script = _post_script(single, "application/json")
                conns_list = connections if group_commit else (64,)
                for conns in conns_list:
                    label = "api single" if group_commit else "api single, one write per request"
                    measure(label, api.url + "/data", script, conns, 1, api.proc.pid, db)
                if group_commit:
                    for size in batch_sizes:
                        json_body, lines = _batch(size, 1_767_225_600 * 10**9)
                        (work / f"batch{size}.json").write_bytes(json_body)
                        (work / f"batch{size}.lp").write_bytes(lines)
                        measure(f"api batch {size}", api.url + "/data",
                                _post_script(work / f"batch{size}.json", "application/json"), 8, size,
                                api.proc.pid)
                        influx.query('CREATE DATABASE "bench_raw"')
                        measure(f"influxdb /write batch {size}",
                                f"{influx.url}/write?db=bench_raw&precision=ns",
                                _post_script(work / f"batch{size}.lp", "text/plain"), 8, size,
                                influx.proc.pid if influx.proc else None)
            finally:
                api.stop()
    finally:
        influx.close()
        shutil.rmtree(work, ignore_errors=True)

    summary = _summarize(results, seconds, workers)
    if out_file:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _find(results, name, conns=None):
    for r in results:
        if r.name == name and (conns is None or r.connections == conns):
            return r
    return None


def _summarize(results: list[Result], seconds: float, workers: int) -> dict:
    ratios = {}
    gc, nogc = _find(results, "api single", 64), _find(results, "api single, one write per request", 64)
    if gc and nogc:
        ratios["group_commit_vs_one_write_per_request_at_64"] = round(gc.readings_per_s / nogc.readings_per_s, 2)
    for r in results:
        if r.name.startswith("api batch "):
            raw = _find(results, "influxdb /write batch " + r.name.rsplit(" ", 1)[1])
            if raw:
                ratios[f"{r.name.replace(' ', '_')}_vs_influxdb"] = round(r.readings_per_s / raw.readings_per_s, 2)
    return {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "influxd": subprocess.run(["influxd", "version"], capture_output=True, text=True).stdout.strip()},
        "settings": {"seconds_per_scenario": seconds, "api_workers": workers},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": [asdict(r) for r in results],
        "ratios": ratios,
    }


def table(summary: dict) -> str:
    head = f"{'scenario':38} {'conns':>5} {'req/s':>9} {'readings/s':>11} {'p50 ms':>7} {'p95 ms':>7} " \
           f"{'p99 ms':>7} {'errors':>6} {'server cpu s':>12}"
    rows = [head, "-" * len(head)]
    for r in summary["results"]:
        cpu = "" if r["api_cpu_s"] is None else f"{r['api_cpu_s']:.1f}"
        rows.append(f"{r['name']:38} {r['connections']:>5} {r['requests_per_s']:>9.0f} {r['readings_per_s']:>11.0f} "
                    f"{r['p50_ms']:>7.2f} {r['p95_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['errors']:>6} {cpu:>12}")
    rows.append("")
    rows += [f"{k}: {v}x" for k, v in summary["ratios"].items()]
    return "\n".join(rows)
