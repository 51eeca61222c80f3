"""The MQTT scenario: readings stored per second through mosquitto -> historian -> InfluxDB at QoS 1,
against InfluxDB's own /write with the historian's batch size, and what the nominal fleet costs.

drain   the historian's persistent session is made, the historian stopped, READINGS readings queued in
        the broker by mosquitto_pub (QoS 1, every one PUBACKed), then the historian started again:
        readings/s = READINGS / (time until InfluxDB holds them all). This is the historian's own
        capacity (broker + historian + influxd on the same cores), free of any publisher's limit.
influx  the same readings as line protocol to InfluxDB's own /write in batches of batch_max (wrk):
        the limit, as the batch scenario measures it for the api.
fleet   the nominal fleet (77 stations at 1 Hz) with the broker, historian and processor for SECONDS:
        their CPU in all, as a share of one core, and publish -> queryable in InfluxDB (p50/p95/p99).

Every server is real and on loopback: mosquitto with the stacks' configuration (ops/servers.py),
the historian and processor from the api package, the fleet from the simulator package.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import procs, wrk
from .common import BenchError, InfluxServer, batch_bodies, rfc3339_ms, wait_until

READINGS_PER_SECOND = 10_000  # queued for the drain per --seconds (100,000 at the default 10 s)
PUBLISHERS = 8              # mosquitto_pub processes (one sensor each) filling the queue
DB = "bench_mqtt"
STEPS = 3
DRAIN = "mqtt historian drain"             # result names (report.py finds them)
FLEET = "mqtt nominal fleet (77 stations)"


def require() -> None:
    if not shutil.which("mosquitto") and not Path("/usr/sbin/mosquitto").exists():
        raise BenchError("the mqtt scenario needs mosquitto and mosquitto_pub: apt-get install mosquitto mosquitto-clients")
    if not shutil.which("mosquitto_pub"):
        raise BenchError("the mqtt scenario needs mosquitto_pub: apt-get install mosquitto-clients")


def _broker():
    from ops.servers import MosquittoServer  # configured as the stacks are

    try:
        return MosquittoServer("dev")
    except (RuntimeError, TimeoutError, OSError) as exc:
        raise BenchError(f"mosquitto did not start: {exc}") from None


class _Service:
    """A service of ours (historian, processor, fleet) as a real process, its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], work: Path):
        self.name, self.log = name, work / f"{name}.log"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-400:] if self.log.exists() else ""
            raise BenchError(f"the {self.name} exited with {self.proc.returncode}: {tail.strip()}")
        return True


def _influx_env(influx: InfluxServer, db: str) -> dict[str, str]:
    return {"INFLUXDB_URL": influx.url, "INFLUXDB_DB": db, "INFLUXDB_RP": "autogen", "INFLUXDB_MEASUREMENT": "data"}


def _historian(broker, influx: InfluxServer, work: Path, batch_max: int, batch_ms: int) -> _Service:
    return _Service("historian", [sys.executable, "-m", "iot_stream", "historian"],
                    {**broker.env("historian"), **_influx_env(influx, DB), "HISTORIAN_BATCH_MAX": str(batch_max),
                     "HISTORIAN_BATCH_MS": str(batch_ms), "MQTT_CLIENT_ID": "bench-historian"}, work)


def _lines(sensor: int, n: int, t0_ms: int) -> bytes:
    out = []
    for i in range(n):
        ts = rfc3339_ms((t0_ms + i) * 10**6)
        out.append(f'{{"ts":"{ts}","type":"temp","value":{20 + i % 15},"sensor_id":"bench-{sensor}"}}')
    return ("\n".join(out) + "\n").encode()


def _queue(broker, n: int, work: Path, progress) -> float:
    """Publish N readings at QoS 1 with PUBLISHERS mosquitto_pub processes; their rate (readings/s)."""
    user, password = broker.credentials("fleet")
    per = n // PUBLISHERS
    t0_ms = (time.time_ns() // 10**6) - 3_600_000  # the past hour: within any retention
    started = time.monotonic()
    pubs = []
    for s in range(PUBLISHERS):
        path = work / f"pub{s}.jsonl"
        path.write_bytes(_lines(s, per, t0_ms))
        with open(path, "rb") as stdin:
            pubs.append(subprocess.Popen(
                ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-u", user, "-P", password,
                 "-i", f"bench-pub-{s}", "-q", "1", "-t", f"iot/q01/bench-{s}/temp", "-l"],
                stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for p in pubs:
        _, err = p.communicate(timeout=600)
        if p.returncode != 0:
            raise BenchError(f"mosquitto_pub failed ({p.returncode}): {err.decode(errors='replace').strip()[:300]}")
    took = time.monotonic() - started
    progress(f"bench: {per * PUBLISHERS:,} readings queued in the broker at QoS 1 in {took:.1f} s")
    return per * PUBLISHERS / took


def drain(runner, batch_max: int, batch_ms: int) -> dict:
    """The historian's drain rate of a queue of readings (see the module's docstring)."""
    influx, work, progress = runner.influx, runner.work, runner.progress
    readings = max(PUBLISHERS * 100, int(READINGS_PER_SECOND * runner.seconds))
    influx.query(f'DROP DATABASE "{DB}"')
    influx.query(f'CREATE DATABASE "{DB}"')
    broker = _broker()
    try:
        historian = _historian(broker, influx, work, batch_max, batch_ms)
        try:  # one probe reading: the historian's session and subscription now exist
            wait_until(lambda: historian.alive() and _probe(broker, influx), 30, "the historian's first reading")
        finally:
            historian.stop()
        # Not the probes: a probe published again while the first was on its way may be stored during the drain.
        def drained() -> int:
            return influx.count(DB, f"WHERE sensor_id != '{PROBE}'")

        base = drained()
        runner.step += 1
        progress(f"bench [{runner.step}/{runner.steps}] mqtt: {readings:,} readings queued, then drained by the historian ...")
        publish_rate = _queue(broker, readings, work, progress)
        queued = readings // PUBLISHERS * PUBLISHERS
        cpu_before = procs.cpu_seconds(broker.proc.pid), procs.cpu_seconds(influx.proc.pid) if influx.proc else 0.0
        started = time.monotonic()
        historian = _historian(broker, influx, work, batch_max, batch_ms)
        try:
            hist_pid = historian.proc.pid
            wait_until(lambda: historian.alive() and drained() - base >= queued, 600,
                       f"{queued:,} readings stored by the historian", interval=0.05)
            took = time.monotonic() - started
            hist_cpu = procs.cpu_seconds(hist_pid)
        finally:
            historian.stop()
        stored = drained() - base
        if stored != queued:
            raise BenchError(f"mqtt drain: {queued:,} readings acknowledged by the broker, {stored:,} stored")
        return {"readings": queued, "seconds": round(took, 3), "readings_per_s": round(queued / took, 1),
                "publish_per_s": round(publish_rate, 1), "historian_cpu_s": round(hist_cpu, 2),
                "broker_cpu_s": round(procs.cpu_seconds(broker.proc.pid) - cpu_before[0], 2),
                "influxd_cpu_s": round((procs.cpu_seconds(influx.proc.pid) if influx.proc else 0.0) - cpu_before[1], 2)}
    finally:
        broker.close()


PROBE = "bench-probe"


def _probe(broker, influx: InfluxServer) -> bool:
    user, password = broker.credentials("fleet")
    ts = rfc3339_ms(time.time_ns())
    subprocess.run(["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-u", user, "-P", password, "-q", "1",
                    "-t", "iot/q01/bench-probe/temp", "-m", f'{{"ts":"{ts}","type":"temp","value":1,"sensor_id":"bench-probe"}}'],
                   check=False, capture_output=True, timeout=10)
    return influx.count(DB, "WHERE sensor_id = 'bench-probe'") > 0


def fleet(runner, seconds: float) -> dict:
    """The nominal fleet with broker, historian and processor: CPU share of one core, publish -> queryable."""
    influx, work, progress = runner.influx, runner.work, runner.progress
    db = DB + "_fleet"
    influx.query(f'DROP DATABASE "{db}"')
    influx.query(f'CREATE DATABASE "{db}"')
    broker = _broker()
    services: list[_Service] = []
    try:
        env = _influx_env(influx, db)
        services.append(_Service("historian", [sys.executable, "-m", "iot_stream", "historian"],
                                 {**broker.env("historian"), **env, "MQTT_CLIENT_ID": "bench-fleet-historian"}, work))
        services.append(_Service("processor", [sys.executable, "-m", "iot_stream", "processor"],
                                 {**broker.env("processor"), **env, "MQTT_CLIENT_ID": "bench-fleet-processor"}, work))
        services.append(_Service("fleet", [sys.executable, "-m", "iot_simulator.fleet", "--interval", "1"],
                                 {**broker.env("fleet"), "MQTT_CLIENT_ID": "bench-fleet"}, work))
        wait_until(lambda: all(s.alive() for s in services) and influx.count(db) > 0, 60, "the fleet's first stored reading")
        runner.step += 1
        progress(f"bench [{runner.step}/{runner.steps}] mqtt: the nominal fleet (77 stations at 1 Hz), {seconds:g} s ...")
        pids = [broker.proc.pid] + [s.proc.pid for s in services]
        before = [procs.cpu_seconds(p) for p in pids]
        count_before = influx.count(db)
        latencies: list[float] = []
        seen: dict[str, int] = {}
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            _sample_latency(influx, db, seen, latencies)
            time.sleep(0.1)
        took = time.monotonic() - started
        cpu = [procs.cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)]
        stored = influx.count(db) - count_before
        for s in services:
            s.alive()
        latencies.sort()

        def pct(q: float) -> float:
            return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 1) if latencies else 0.0

        names = ["broker", "historian", "processor", "fleet"]
        return {"seconds": round(took, 1), "stored": stored, "readings_per_s": round(stored / took, 1),
                "cpu_share_of_one_core": round(sum(cpu) / took, 4),
                "cpu_s": {n: round(c, 2) for n, c in zip(names, cpu, strict=True)},
                "latency_samples": len(latencies), "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99)}
    finally:
        for s in reversed(services):
            s.stop()
        broker.close()


def _sample_latency(influx: InfluxServer, db: str, seen: dict[str, int], out: list[float]) -> None:
    """Each sensor's newest stored reading: when its ts is new, now - ts is one publish -> queryable
    sample (the fleet stamps ts as it publishes; the 0.1 s poll adds at most that much)."""
    rows = influx.query("SELECT last(value) FROM data WHERE time > now() - 10s GROUP BY sensor_id", db=db, epoch="ns")
    now = time.time_ns()
    for series in rows:
        sensor, ns = series["tags"]["sensor_id"], series["values"][0][0]
        if seen.get(sensor) != ns:
            if sensor in seen:
                out.append((now - ns) / 1e9)
            seen[sensor] = ns


def influx_baseline(runner, batch_max: int) -> dict:
    """InfluxDB's own /write with batches of batch_max readings, 8 connections (as the batch scenario)."""
    path = runner.work / f"mqtt_batch{batch_max}.lp"
    path.write_bytes(batch_bodies(batch_max)[1])
    runner.influx.query('CREATE DATABASE "bench_raw_mqtt"')
    [res], delta = runner._measure(f"influxdb /write batch {batch_max} (the historian's batch), 8 connections", [
        (f"{runner.influx.url}/write?db=bench_raw_mqtt&precision=ns", wrk.post_script(path, "text/plain"), 8)], None, None)
    elapsed = res["duration_us"] / 1e6
    return {"readings_per_s": round((res["requests"] - res["non2xx"]) * batch_max / elapsed, 1),
            "requests_per_s": round(res["requests"] / elapsed, 1), "p50_ms": res["p50_us"] / 1000,
            "p95_ms": res["p95_us"] / 1000, "p99_ms": res["p99_us"] / 1000,
            "errors": res["socket_errors"] + res["non2xx"], "influxd_cpu_s": delta["influxd_cpu_s"],
            "requests": res["requests"], "wrk_cpu_s": res["wrk_cpu_s"]}

