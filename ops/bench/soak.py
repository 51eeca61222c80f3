"""`--soak`: the api under steady single-reading load for minutes, its memory sampled from /proc.

One wrk process drives POST /data at 64 connections for the whole soak; meanwhile the resident memory
of the api (its supervisor and workers, summed) is sampled every few seconds, with the api's own count
of stored readings (GET /metrics) for the progress lines. At the end: first against last window of
RSS, the least-squares slope after the first window, "flat" against a stated threshold, and every
acknowledged reading checked in InfluxDB.
"""
from __future__ import annotations

import time
from pathlib import Path

from . import procs, wrk
from .common import SINGLE_BODY, WRITE_CONNECTIONS, ApiServer, BenchError, InfluxServer, http, start_api, start_influx
from .report import FLAT_MIB_PER_MIN

MIB = 1024 * 1024
DB = "bench_soak"


def run(seconds: float, workers: int, work: Path, progress) -> dict:
    influx = start_influx()
    try:
        api = start_api(influx, DB, workers)
        try:
            return _soak(influx, api, seconds, work, progress)
        finally:
            api.stop()
    finally:
        influx.close()


def _metrics(api: ApiServer) -> list[str] | None:
    """The lines of the api's /metrics (summed over its workers by the api), None when unreachable."""
    try:
        status, _, body = http("GET", api.url + "/metrics", timeout=5.0)
    except OSError:
        return None
    return body.decode(errors="replace").splitlines() if status == 200 else None


def _counted(api: ApiServer) -> int | None:
    """iot_api_readings_stored_total from /metrics."""
    for line in _metrics(api) or ():
        if line.startswith("iot_api_readings_stored_total "):
            return int(float(line.split()[1]))
    return None


def _answers(api: ApiServer) -> dict[str, int]:
    """The api's own count of its POST /data answers by status (iot_api_requests_total): what wrk
    counts as non-2xx, explained (503: InfluxDB failed or the api's queue is full; 408: a deadline)."""
    answers: dict[str, int] = {}
    for line in _metrics(api) or ():
        if line.startswith("iot_api_requests_total{") and 'method="POST"' in line and 'route="/data"' in line:
            code = line.split('status="', 1)[1].split('"', 1)[0]
            answers[code] = answers.get(code, 0) + int(float(line.rsplit(" ", 1)[1]))
    return dict(sorted(answers.items()))


def _settled_count(api: ApiServer) -> int | None:
    """The api's count once the requests still in flight when wrk stopped have been answered."""
    last, deadline = _counted(api), time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = _counted(api)
        if now == last:
            break
        last = now
    return last


def _soak(influx: InfluxServer, api: ApiServer, seconds: float, work: Path, progress) -> dict:
    body = work / "single.json"
    body.write_bytes(SINGLE_BODY)
    every = min(5.0, max(0.5, seconds / 20))
    report_every = max(every, min(30.0, seconds / 6))
    progress(f"soak: {seconds:g} s at {WRITE_CONNECTIONS} connections, api RSS sampled every {every:g} s")
    load = wrk.Load(api.url + "/data", wrk.post_script(body, "application/json"), WRITE_CONNECTIONS, seconds, work, "soak")
    start = time.monotonic()
    samples: list[list[float]] = []  # [elapsed s, RSS MiB, readings counted by the api]
    next_report, last = report_every, (0.0, _counted(api) or 0)
    try:
        while load.running():
            elapsed = time.monotonic() - start
            counted = _counted(api)
            samples.append([round(elapsed, 2), round(procs.rss_bytes(api.proc.pid) / MIB, 2), counted])
            if elapsed >= next_report and counted is not None:
                rate = (counted - last[1]) / max(elapsed - last[0], 1e-9)
                progress(f"soak {elapsed:6.0f}/{seconds:g} s  {rate:9,.0f} readings/s  api RSS {samples[-1][1]:7.1f} MiB")
                next_report, last = next_report + report_every, (elapsed, counted)
            load.wait(max(0.0, len(samples) * every - (time.monotonic() - start)))
        res = load.result()
    finally:
        load.stop()
    if len(samples) < 2:
        raise BenchError(f"soak: only {len(samples)} memory sample(s): wrk ended early")
    counted = _settled_count(api)
    answers = _answers(api)
    stored = influx.count(DB)
    acknowledged = res["requests"] - res["non2xx"]
    elapsed = res["duration_us"] / 1e6
    out = {"seconds": seconds, "connections": WRITE_CONNECTIONS, "sample_every_s": every,
           "requests_per_s": round(res["requests"] / elapsed, 1), "readings_per_s": round(acknowledged / elapsed, 1),
           "p50_ms": res["p50_us"] / 1000, "p95_ms": res["p95_us"] / 1000, "p99_ms": res["p99_us"] / 1000,
           "errors": res["socket_errors"] + res["non2xx"], "socket_errors": res["socket_errors"],
           "non2xx": res["non2xx"], "api_answers": answers, **memory(samples, seconds),
           "acknowledged": acknowledged, "api_counted": counted, "stored": stored,
           # >= acknowledged: wrk does not count the requests it stops waiting for, which may still be stored
           "stored_checked": stored >= acknowledged and stored == counted, "samples": samples}
    return out


def memory(samples: list[list[float]], seconds: float) -> dict:
    """First against last window (a minute, or a third of a short soak), and the least-squares slope of
    RSS over time after the first window (start-up and the first allocations are not a leak)."""
    window = 60.0 if seconds >= 180 else seconds / 3
    end = samples[-1][0]
    first = [rss for t, rss, _ in samples if t < window] or [samples[0][1]]
    last = [rss for t, rss, _ in samples if t >= end - window] or [samples[-1][1]]
    fit = [(t / 60, rss) for t, rss, _ in samples if t >= window]
    if len(fit) < 3:
        fit = [(t / 60, rss) for t, rss, _ in samples]
    slope = _slope(fit)
    return {"window_s": round(window, 2), "rss_first_window_mib": round(sum(first) / len(first), 2),
            "rss_last_window_mib": round(sum(last) / len(last), 2), "rss_max_mib": max(s[1] for s in samples),
            "rss_slope_mib_per_min": None if slope is None else round(slope, 3),
            "flat_threshold_mib_per_min": FLAT_MIB_PER_MIN, "flat": None if slope is None else slope <= FLAT_MIB_PER_MIN}


def _slope(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return None if sxx == 0 else sum((x - mx) * (y - my) for x, y in points) / sxx
