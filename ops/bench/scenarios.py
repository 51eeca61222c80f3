"""The measured scenarios, each a wrk load against a real server, every figure from the same run.

single  single-reading POST /data at each of the given connection counts (group commit on)
batch   batches of N readings to the api, then the same readings as line protocol to InfluxDB's own
        /write (the limit), same connections
nogc    single readings with group commit off: one InfluxDB write per request (the baseline)
floor   single readings to uvicorn alone, storing nothing (floor.py): the fastest any api could answer
reads   GET /data (one sensor, limit 100) and GET /top, each while a second wrk drives single-reading
        writes at 64 connections against the same api, on a database filled with known readings
mqtt    readings stored per second through mosquitto -> historian -> InfluxDB at QoS 1, InfluxDB's own
        /write with the historian's batch size, and the nominal fleet's CPU and latency (mqtt.py)
collector  the course's Node.js collector (collector.py), then the api, both with the course's payload
        with a `ts` (as devices send it), one reading per request at 64 connections
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import collector, floor, mqtt, procs, wrk
from .common import NOGC, SINGLE_BODY, WRITE_CONNECTIONS, ApiServer, BenchError, InfluxServer, batch_bodies, rfc3339_ms, start_api

SCENARIOS = ("single", "batch", "nogc", "floor", "reads", "mqtt", "collector")
READ_CONNECTIONS = 8  # dashboards and scripts, not a fleet of devices
FLOOR_ROUNDS = 2  # the floor with uvicorn's protocol and with the api's, alternated, best of each
FILL_SENSORS, FILL_PER_SENSOR, FILL_STEP_S = 50, 200, 15  # 10,000 readings over the past 50 minutes
DATA_PATHS = [f"/data?sensor_id=reads-{i}&limit=100" for i in range(FILL_SENSORS)]
TOP_PATH = "/top?type=temp&n=10"


@dataclass
class Result:
    name: str
    connections: int
    readings_per_request: int
    requests_per_s: float
    readings_per_s: float | None  # stored readings per second; None for reads
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int  # socket errors and non-2xx answers
    api_cpu_s: float | None  # CPU time of the api's processes during the measured seconds
    influxd_cpu_s: float | None = None
    stored_checked: bool | None = None  # every acknowledged single reading was found in InfluxDB
    kind: str = "write"  # "read", or "floor" (uvicorn storing nothing: floor.py)
    returned_data: bool | None = None  # reads: a sample answer had the expected readings
    cpu_share: float | None = None  # mqtt fleet: CPU of broker, historian, processor and fleet / one core
    wrk_cpu_s: float | None = None  # CPU time of wrk itself, on the same cores as what it measures
    # CPU µs per request of the server measured (the api, the floor, the collector), influxd and wrk: on 2 cores
    # shared by all three, their sum bounds the rate (report.cpu_budget).
    cpu_us_per_request: dict | None = None


def _us_per_request(requests: int, **cpu_s: float | None) -> dict | None:
    return {k: round(v / requests * 1e6, 1) for k, v in cpu_s.items() if v is not None and requests} or None


def _row(name: str, conns: int, per_request: int, res: dict, kind: str = "write", **extra) -> Result:
    elapsed = res["duration_us"] / 1e6
    ok = res["requests"] - res["non2xx"]
    per_request_us = _us_per_request(res["requests"], server=extra.get("api_cpu_s"), influxd=extra.get("influxd_cpu_s"),
                                     wrk=res.get("wrk_cpu_s"))
    return Result(name, conns, per_request, round(res["requests"] / elapsed, 1),
                  round(ok * per_request / elapsed, 1) if kind == "write" else None,
                  res["p50_us"] / 1000, res["p95_us"] / 1000, res["p99_us"] / 1000,
                  res["socket_errors"] + res["non2xx"], kind=kind, wrk_cpu_s=res.get("wrk_cpu_s"),
                  cpu_us_per_request=per_request_us, **extra)


class Runner:
    """Runs the chosen scenarios in order; `results` grows as they finish."""

    def __init__(self, influx: InfluxServer, work: Path, seconds: float, workers: int, connections: tuple[int, ...],
                 batch_sizes: tuple[int, ...], progress):
        self.influx, self.work, self.seconds, self.workers = influx, work, seconds, workers
        self.connections, self.batch_sizes, self.progress = connections, batch_sizes, progress
        self.results: list[Result] = []
        self.single = work / "single.json"
        self.single.write_bytes(SINGLE_BODY)
        self.steps, self.step = 0, 0
        self.mqtt: dict | None = None  # the mqtt scenario's details (drain, fleet) for the JSON
        self.loads = 0  # wrk processes started: each gets its own window of timestamps (collector.base_ms)

    def run(self, scenarios: tuple[str, ...]) -> list[Result]:
        counts = {"single": len(self.connections), "batch": 2 * len(self.batch_sizes), "nogc": 1,
                  "floor": 2 * FLOOR_ROUNDS, "reads": 2,
                  "mqtt": mqtt.STEPS, "collector": 2}
        self.steps = sum(counts[s] for s in scenarios)
        if "single" in scenarios:
            with _api(self.influx, "bench_gc", self.workers) as api:
                for conns in self.connections:
                    self._single(api, "api single", conns)
        if "batch" in scenarios:
            # A database of its own, as InfluxDB's baseline gets: not one that the single-reading
            # loads have just filled (InfluxDB would still be compacting it during the batches).
            with _api(self.influx, "bench_batch", self.workers) as api:
                for size in self.batch_sizes:
                    self._batches(api, size)
        if "reads" in scenarios:
            with _api(self.influx, "bench_reads", self.workers) as api:
                self._reads(api)
        if "nogc" in scenarios:
            with _api(self.influx, "bench_nogc", self.workers, API_GROUP_COMMIT="false") as api:
                self._single(api, NOGC, WRITE_CONNECTIONS)
        if "floor" in scenarios:
            self._floors()
        if "mqtt" in scenarios:
            self._mqtt()
        if "collector" in scenarios:
            self._collector()
        return self.results

    # -- one measurement: a warm-up, then the loads at once, with CPU and stored counts around them --------
    def _measure(self, title: str, loads: list[tuple], api: ApiServer | None, db: str | None) -> tuple[list[dict], dict]:
        """loads: (url, script, connections). Returns wrk's results and the CPU and stored deltas."""
        self.step += 1
        self.progress(f"bench [{self.step}/{self.steps}] {title}, {self.seconds:g} s ...")
        scripts = [(url, script, conns, f"load{i}") for i, (url, script, conns) in enumerate(loads)]
        self._together(scripts, min(2.0, self.seconds))  # warm-up: connections, caches, the api's pools
        api_pid = api.proc.pid if api else None
        influx_pid = self.influx.proc.pid if self.influx.proc else None
        before = (procs.cpu_seconds(api_pid) if api_pid else None,
                  procs.cpu_seconds(influx_pid) if influx_pid else None, self.influx.count(db) if db else None)
        results = self._together(scripts, self.seconds)
        delta = {"api_cpu_s": round(procs.cpu_seconds(api_pid) - before[0], 2) if api_pid else None,
                 "influxd_cpu_s": round(procs.cpu_seconds(influx_pid) - before[1], 2) if influx_pid else None,
                 "stored": self.influx.count(db) - before[2] if db else None}
        return results, delta

    def _together(self, scripts: list[tuple], seconds: float) -> list[dict]:
        loads = []
        try:
            for url, script, conns, name in scripts:
                script = script.replace(collector.BASE, str(collector.base_ms(self.loads)))
                self.loads += 1
                loads.append(wrk.Load(url, script, conns, seconds, self.work, name))
            return [load.result() for load in loads]
        finally:
            for load in loads:
                load.stop()

    def _check_stored(self, name: str, res: dict, stored: int) -> bool:
        ok = res["requests"] - res["non2xx"]
        if stored < ok:  # >=: a request wrk gave up on at the end may still have been stored
            raise BenchError(f"{name}: {ok} readings acknowledged but only {stored} stored")
        return True

    # -- the scenarios -----------------------------------------------------------------------------------
    def _single(self, api: ApiServer, name: str, conns: int) -> None:
        script = wrk.post_script(self.single, "application/json")
        [res], delta = self._measure(f"{name}, {conns} connections", [(api.url + "/data", script, conns)], api, api.db)
        self.results.append(_row(name, conns, 1, res, api_cpu_s=delta["api_cpu_s"], influxd_cpu_s=delta["influxd_cpu_s"],
                                 stored_checked=self._check_stored(name, res, delta["stored"])))

    def _batches(self, api: ApiServer, size: int) -> None:
        json_body, lines = batch_bodies(size)
        (self.work / f"batch{size}.json").write_bytes(json_body)
        (self.work / f"batch{size}.lp").write_bytes(lines)
        name = f"api batch {size}"
        [res], delta = self._measure(f"{name}, 8 connections", [
            (api.url + "/data", wrk.post_script(self.work / f"batch{size}.json", "application/json"), 8)], api, None)
        self.results.append(_row(name, 8, size, res, api_cpu_s=delta["api_cpu_s"], influxd_cpu_s=delta["influxd_cpu_s"]))
        self.influx.query('CREATE DATABASE "bench_raw"')
        name = f"influxdb /write batch {size}"
        [res], delta = self._measure(f"{name}, 8 connections", [
            (f"{self.influx.url}/write?db=bench_raw&precision=ns",
             wrk.post_script(self.work / f"batch{size}.lp", "text/plain"), 8)], None, None)
        self.results.append(_row(name, 8, size, res, api_cpu_s=None, influxd_cpu_s=delta["influxd_cpu_s"]))

    def _mqtt(self) -> None:
        from ops import render  # the historian's batch settings: the values the stacks run with

        historian = render.load_values("dev")["historian"]
        size, wait_ms = historian["batch_max"], historian["batch_ms"]
        mqtt.require()
        raw = mqtt.influx_baseline(self, size)
        self.results.append(Result(f"influxdb /write batch {size} (mqtt)", 8, size, raw["requests_per_s"],
                                   raw["readings_per_s"], raw["p50_ms"], raw["p95_ms"], raw["p99_ms"], raw["errors"],
                                   None, influxd_cpu_s=raw["influxd_cpu_s"], wrk_cpu_s=raw["wrk_cpu_s"],
                                   cpu_us_per_request=_us_per_request(raw["requests"], influxd=raw["influxd_cpu_s"],
                                                                      wrk=raw["wrk_cpu_s"])))
        d = mqtt.drain(self, size, wait_ms)
        self.progress(f"bench: mqtt drain {d['readings']:,} readings in {d['seconds']:.1f} s = {d['readings_per_s']:,.0f}/s "
                      f"(historian {d['historian_cpu_s']} s CPU, broker {d['broker_cpu_s']} s, influxd {d['influxd_cpu_s']} s)")
        self.results.append(Result(mqtt.DRAIN, 1, size, round(d["readings_per_s"] / size, 1), d["readings_per_s"], 0.0, 0.0,
                                   0.0, 0, d["historian_cpu_s"], influxd_cpu_s=d["influxd_cpu_s"], stored_checked=True,
                                   kind="mqtt"))
        f = mqtt.fleet(self, max(5.0, 2 * self.seconds))  # at least a few publications of every station
        self.progress(f"bench: nominal fleet {f['readings_per_s']:,.0f} readings/s stored, CPU {f['cpu_share_of_one_core']:.1%} "
                      f"of one core ({f['cpu_s']}), publish -> queryable p95 {f['p95_ms']:.0f} ms")
        self.results.append(Result(mqtt.FLEET, 77, 1, f["readings_per_s"], f["readings_per_s"], f["p50_ms"], f["p95_ms"],
                                   f["p99_ms"], 0, round(sum(f["cpu_s"].values()), 2), kind="mqtt",
                                   cpu_share=f["cpu_share_of_one_core"]))
        self.mqtt = {"drain": d, "fleet": f, "influx_baseline": raw}

    def _floors(self) -> None:
        """uvicorn's own protocol and the api's (floor.py), alternated FLOOR_ROUNDS times: the best of each,
        so a slow moment of the machine does not decide the comparison."""
        script = wrk.post_script(self.single, "application/json")
        best: dict[str, tuple[dict, dict]] = {}
        for _ in range(FLOOR_ROUNDS):
            for protocol, name in floor.PROTOCOLS.items():
                with floor.server(self.workers, protocol) as server:
                    [res], delta = self._measure(f"{name}, {WRITE_CONNECTIONS} connections",
                                                 [(server.url + "/data", script, WRITE_CONNECTIONS)], server, None)
                rate = res["requests"] / res["duration_us"]
                if name not in best or rate > best[name][0]["requests"] / best[name][0]["duration_us"]:
                    best[name] = (res, delta)
        for name, (res, delta) in best.items():
            self.results.append(_row(name, WRITE_CONNECTIONS, 1, res, kind="floor", api_cpu_s=delta["api_cpu_s"]))

    def _collector(self) -> None:
        """The course's collector and the api, one after the other, same payload, same connections."""
        collector.require()
        c, script = WRITE_CONNECTIONS, collector.TS_SCRIPT
        with collector.server(self.influx, "bench_collector", self.progress) as node:
            [res], delta = self._measure(f"{collector.NAME}, {c} connections", [(node.url + "/data", script, c)],
                                         node, node.db)
            self.results.append(_row(collector.NAME, c, 1, res, api_cpu_s=delta["api_cpu_s"],
                                     influxd_cpu_s=delta["influxd_cpu_s"],
                                     stored_checked=self._check_stored(collector.NAME, res, delta["stored"])))
        with _api(self.influx, "bench_ts", self.workers) as api:
            [res], delta = self._measure(f"{collector.API_TS}, {c} connections", [(api.url + "/data", script, c)],
                                         api, api.db)
            self.results.append(_row(collector.API_TS, c, 1, res, api_cpu_s=delta["api_cpu_s"],
                                     influxd_cpu_s=delta["influxd_cpu_s"],
                                     stored_checked=self._check_stored(collector.API_TS, res, delta["stored"])))

    def _reads(self, api: ApiServer) -> None:
        self.progress(f"bench: filling {api.db} with {FILL_SENSORS * FILL_PER_SENSOR:,} known readings for the reads")
        fill(api)
        check_reads(api)
        writes = (api.url + "/data", wrk.post_script(self.single, "application/json"), WRITE_CONNECTIONS)
        for label, paths in (("GET /data", DATA_PATHS), ("GET /top", [TOP_PATH])):
            reads = (api.url, wrk.get_script(paths), READ_CONNECTIONS)
            (read, write), delta = self._measure(
                f"{label} at {READ_CONNECTIONS} connections under writes at {WRITE_CONNECTIONS}", [reads, writes],
                api, api.db)
            self.results.append(_row(f"reads {label}, under writes", READ_CONNECTIONS, 0, read, kind="read",
                                     api_cpu_s=delta["api_cpu_s"], influxd_cpu_s=delta["influxd_cpu_s"],
                                     returned_data=check_reads(api)))
            name = f"writes during {label}"
            self.results.append(_row(name, WRITE_CONNECTIONS, 1, write, api_cpu_s=None,
                                     stored_checked=self._check_stored(name, write, delta["stored"])))


@contextmanager
def _api(influx: InfluxServer, db: str, workers: int, **env: str):
    """An api for the duration of a `with` block."""
    api = start_api(influx, db, workers, **env)
    try:
        yield api
    finally:
        api.stop()


def fill(api: ApiServer) -> None:
    """FILL_SENSORS sensors (reads-0…) with FILL_PER_SENSOR temperatures each, one every FILL_STEP_S
    seconds up to now, posted to the api in batches of 1,000."""
    now = time.time_ns()
    readings = [{"ts": rfc3339_ms(now - (j + 1) * FILL_STEP_S * 10**9), "type": "temp", "sensor_id": f"reads-{s}",
                 "value": 15 + (s * 7) % 20 + (j % 10) / 10} for s in range(FILL_SENSORS) for j in range(FILL_PER_SENSOR)]
    for i in range(0, len(readings), 1000):
        deadline = time.monotonic() + 60
        while True:  # as any client: a 503 (InfluxDB busy or briefly away) is resent after Retry-After
            status, headers, body = api.post("/data", readings[i:i + 1000])
            if status != 503 or time.monotonic() > deadline:
                break
            time.sleep(min(5.0, float(headers.get("retry-after", headers.get("Retry-After", 1)))))
        if status != 201 or not isinstance(body, dict) or body.get("stored") != len(readings[i:i + 1000]):
            raise BenchError(f"reads: filling the database failed: POST /data answered {status} {str(body)[:200]}")


def check_reads(api: ApiServer) -> bool:
    """The read endpoints answer the filled readings in their documented shape, else the run stops."""
    status, _, body = api.get(DATA_PATHS[0])
    body = body if isinstance(body, dict) else {"answer": body}
    readings = body.get("readings")
    if not (status == 200 and body.get("count") == 100 and isinstance(readings, list) and len(readings) == 100
            and all(isinstance(r, dict) and set(r) == {"ts", "sensor_id", "type", "value"} and r["sensor_id"] == "reads-0"
                    for r in readings)):
        raise BenchError(f"reads: GET {DATA_PATHS[0]} answered {status} {str(body)[:200]}: expected "
                         "100 readings of sensor reads-0 with ts, sensor_id, type and value")
    status, _, body = api.get(TOP_PATH)
    top = body.get("top") if isinstance(body, dict) else None
    if not (status == 200 and isinstance(top, dict) and all(
            isinstance(top.get(w), list) and len(top[w]) == 10 and all({"sensor_id", "value", "ts"} <= set(e) for e in top[w])
            for w in ("all_time", "past_hour"))):
        raise BenchError(f"reads: GET {TOP_PATH} answered {status} {str(body)[:200]}: expected 10 sensors "
                         "(sensor_id, value, ts) for all_time and past_hour")
    return True
