"""The summary of a run (JSON), its ratios, the issue's targets evaluated, and the text table.

Everything here works on the JSON form of the results (lists of dicts), so a stored run can be
summarised and evaluated again without measuring.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from . import collector, floor, mqtt
from .common import NOGC, WRITE_CONNECTIONS

FLAT_MIB_PER_MIN = 1.0  # memory is "flat" when the fitted RSS slope is at most this (10 MiB over 10 minutes)
SOAK_TARGET_S = 600


def machine() -> dict:
    try:
        influxd = subprocess.run(["influxd", "version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        influxd = None
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0], "influxd": influxd}


def find(results: list[dict], name: str, conns: int | None = None) -> dict | None:
    for r in results:
        if r["name"] == name and (conns is None or r["connections"] == conns):
            return r
    return None


def ratios(results: list[dict]) -> dict:
    out = {}
    gc, nogc = find(results, "api single", WRITE_CONNECTIONS), find(results, NOGC, WRITE_CONNECTIONS)
    if gc and nogc and nogc["readings_per_s"]:
        out[f"group_commit_vs_one_write_per_request_at_{WRITE_CONNECTIONS}"] = round(
            gc["readings_per_s"] / nogc["readings_per_s"], 2)
    bare = find(results, floor.NAME, WRITE_CONNECTIONS)
    if bare and nogc and nogc["readings_per_s"]:  # the most group commit could give on this machine
        out[f"http_floor_vs_one_write_per_request_at_{WRITE_CONNECTIONS}"] = round(
            bare["requests_per_s"] / nogc["readings_per_s"], 2)
    for r in results:
        if r["name"].startswith("api batch "):
            raw = find(results, "influxdb /write batch " + r["name"].rsplit(" ", 1)[1])
            if raw and raw["readings_per_s"]:
                out[f"{r['name'].replace(' ', '_')}_vs_influxdb"] = round(r["readings_per_s"] / raw["readings_per_s"], 2)
    drain = find(results, mqtt.DRAIN)
    if drain:
        raw = find(results, f"influxdb /write batch {drain['readings_per_request']} (mqtt)")
        if raw and raw["readings_per_s"]:
            out["mqtt_historian_vs_influxdb"] = round(drain["readings_per_s"] / raw["readings_per_s"], 2)
        if gc and gc["readings_per_s"]:
            out[f"mqtt_historian_vs_api_single_at_{WRITE_CONNECTIONS}"] = round(drain["readings_per_s"] / gc["readings_per_s"], 2)
    c = WRITE_CONNECTIONS
    own = find(results, floor.NAME_API, c)
    if bare and own and bare["requests_per_s"]:  # what the api's protocol (uvicorn internals) buys or costs
        out[f"api_protocol_vs_uvicorn_protocol_floor_at_{c}"] = round(own["requests_per_s"] / bare["requests_per_s"], 2)
        # The same in CPU per answer: steadier than the rate when something else shares the machine.
        mine, theirs = ((r.get("cpu_us_per_request") or {}).get("server") for r in (own, bare))
        if mine and theirs:
            out[f"uvicorn_protocol_cpu_vs_api_protocol_cpu_per_answer_at_{c}"] = round(theirs / mine, 2)
    course, api_ts = find(results, collector.NAME, c), find(results, collector.API_TS, c)
    if course and course["readings_per_s"]:
        for name, r in (("api_ts_payload", api_ts), ("api_single", gc)):
            if r and r["readings_per_s"]:
                out[f"{name}_vs_course_collector_at_{c}"] = round(r["readings_per_s"] / course["readings_per_s"], 2)
    if api_ts and bare and bare["requests_per_s"]:
        out[f"api_ts_payload_vs_http_floor_at_{c}"] = round(api_ts["readings_per_s"] / bare["requests_per_s"], 2)
    for r in results:  # the cost of reads on ingest
        if r["name"].startswith("writes during ") and gc and gc["readings_per_s"]:
            endpoint = r["name"].removeprefix("writes during GET /")
            out[f"writes_during_{endpoint}_reads_vs_writes_alone_at_{WRITE_CONNECTIONS}"] = round(
                r["readings_per_s"] / gc["readings_per_s"], 2)
    return out


def cpu_budget(results: list[dict], cores: int | None) -> dict | None:
    """Issue #15's bar in CPU time: wrk, influxd and the server share the machine's cores, so the sum of
    their CPU per request bounds the rate. What 75% of the floor leaves the api, after influxd's and wrk's
    share, set beside what the api and the do-nothing floor server use."""
    c = WRITE_CONNECTIONS
    api_ts, bare = find(results, collector.API_TS, c), find(results, floor.NAME, c)
    a, f = (api_ts or {}).get("cpu_us_per_request") or {}, (bare or {}).get("cpu_us_per_request") or {}
    if not cores or not {"server", "influxd", "wrk"} <= a.keys() or not {"server", "wrk"} <= f.keys():
        return None
    api_total, floor_total = a["server"] + a["influxd"] + a["wrk"], f["server"] + f["wrk"]
    bar = 0.75 * bare["requests_per_s"]
    at_bar = cores * 1e6 / bar
    return {"cores": cores, "api_ts_us": a, "api_ts_total_us": round(api_total, 1),
            "api_ts_ceiling_per_s": round(cores * 1e6 / api_total), "api_ts_per_s": api_ts["requests_per_s"],
            "floor_us": f, "floor_total_us": round(floor_total, 1), "floor_ceiling_per_s": round(cores * 1e6 / floor_total),
            "floor_per_s": bare["requests_per_s"], "bar_per_s": round(bar), "us_per_request_at_bar": round(at_bar, 1),
            "api_us_left_at_bar": round(at_bar - a["influxd"] - a["wrk"], 1)}


def cpu_budget_text(b: dict) -> str:
    a, f = b["api_ts_us"], b["floor_us"]
    return "\n".join([
        f"cpu per request at {WRITE_CONNECTIONS} connections, µs (the server, influxd and wrk share {b['cores']} cores):",
        f"  {collector.API_TS:36} api {a['server']:.0f} + influxd {a['influxd']:.0f} + wrk {a['wrk']:.0f} = "
        f"{b['api_ts_total_us']:.0f}: at most {b['api_ts_ceiling_per_s']:,}/s (measured {b['api_ts_per_s']:,.0f}/s)",
        f"  {floor.NAME:36} server {f['server']:.0f} + wrk {f['wrk']:.0f} = {b['floor_total_us']:.0f}: "
        f"at most {b['floor_ceiling_per_s']:,}/s (measured {b['floor_per_s']:,.0f}/s)",
        f"  75% of the floor, {b['bar_per_s']:,}/s, is {b['us_per_request_at_bar']:.0f} µs a request in all; after "
        f"influxd's {a['influxd']:.0f} and wrk's {a['wrk']:.0f}, {b['api_us_left_at_bar']:.0f} µs for the api, "
        f"which uses {a['server']:.0f} (the do-nothing floor server {f['server']:.0f})"])


def _target(key: str, text: str, measured, op: str, threshold: float, unit: str, missing: str, note: str = "") -> dict:
    met = None if measured is None else bool(measured >= threshold if op == ">=" else measured <= threshold)
    return {"target": key, "description": text, "measured": measured, "op": op, "threshold": threshold,
            "unit": unit, "met": met, "note": missing if measured is None else note}


def targets(results: list[dict], soak: dict | None = None, cpus: int | None = None) -> list[dict]:
    """The targets of issue #6, each with its measured value, threshold and met (None: not measured)."""
    c = WRITE_CONNECTIONS
    single, rates = find(results, "api single", c), ratios(results)
    cores = "" if cpus in (None, 2) else f"measured on {cpus} cores, the target is for 2"
    ceiling = rates.get(f"http_floor_vs_one_write_per_request_at_{c}")
    out = [
        _target(f"group_commit_vs_one_write_per_request_at_{c}",
                f"single-reading ingest ≥ 5× one write per request, {c} connections",
                rates.get(f"group_commit_vs_one_write_per_request_at_{c}"), ">=", 5.0, "x",
                f"needs the single scenario at {c} connections and nogc",
                f"uvicorn storing nothing answers {ceiling:.2f}x the baseline here (floor)" if ceiling else ""),
        _target(f"single_readings_per_s_at_{c}", f"single-reading ingest ≥ 10,000 readings/s, {c} connections",
                single and single["readings_per_s"], ">=", 10_000, "readings/s",
                f"needs the single scenario at {c} connections", cores),
        _target(f"single_p99_ms_at_{c}", f"single-reading p99 ≤ 25 ms, {c} connections",
                single and single["p99_ms"], "<=", 25.0, "ms", f"needs the single scenario at {c} connections", cores),
    ]
    sizes = [r["name"].rsplit(" ", 1)[1] for r in results if r["name"].startswith("api batch ")] or ["100", "1000"]
    for size in sizes:
        out.append(_target(f"batch_{size}_vs_influxdb", f"batches of {size} ≥ 50% of InfluxDB's own /write",
                           rates.get(f"api_batch_{size}_vs_influxdb"), ">=", 0.5, "share", "needs the batch scenario"))
    if any(r.get("kind") == "mqtt" for r in results):
        fleet = find(results, mqtt.FLEET)
        out += [
            _target("mqtt_historian_vs_influxdb", "MQTT -> historian -> InfluxDB ≥ 50% of InfluxDB's own /write",
                    rates.get("mqtt_historian_vs_influxdb"), ">=", 0.5, "share", "needs the mqtt scenario"),
            _target(f"mqtt_historian_vs_api_single_at_{c}", "MQTT -> historian ≥ 10× the api's single readings",
                    rates.get(f"mqtt_historian_vs_api_single_at_{c}"), ">=", 10.0, "x",
                    f"needs the single scenario at {c} connections in the same run"),
            _target("mqtt_fleet_cpu_share", "nominal fleet, broker, historian, processor ≤ 25% of one core",
                    fleet and fleet.get("cpu_share"), "<=", 0.25, "share", "needs the mqtt scenario"),
            _target("mqtt_publish_to_queryable_p95_ms", "fleet: publish -> queryable in InfluxDB p95 ≤ 2 s",
                    fleet and fleet["p95_ms"], "<=", 2000.0, "ms", "needs the mqtt scenario"),
        ]
    if find(results, floor.NAME_API):
        out.append(_target(f"api_protocol_vs_uvicorn_protocol_floor_at_{c}",
                           "the api's protocol (uvicorn internals) ≥ 1.10× uvicorn's own, HTTP floor",
                           rates.get(f"api_protocol_vs_uvicorn_protocol_floor_at_{c}"), ">=", 1.10, "x",
                           "needs the floor scenario",
                           "below 1.10: not worth subclassing uvicorn's internals for speed alone"))
    if find(results, collector.NAME) or find(results, collector.API_TS):
        api_ts = find(results, collector.API_TS, c)
        out += [
            _target(f"api_ts_payload_vs_course_collector_at_{c}", f"api ≥ 10× the course's collector, ts payload, {c} conns",
                    rates.get(f"api_ts_payload_vs_course_collector_at_{c}"), ">=", 10.0, "x", "needs the collector scenario"),
            _target(f"api_ts_payload_vs_http_floor_at_{c}", "or, where 10× is above the floor: api ≥ 75% of the HTTP floor",
                    rates.get(f"api_ts_payload_vs_http_floor_at_{c}"), ">=", 0.75, "share",
                    "needs the collector and floor scenarios in the same run"),
            _target(f"api_ts_payload_p99_ms_at_{c}", f"api p99 ≤ 15 ms, ts payload, {c} connections",
                    api_ts and api_ts["p99_ms"], "<=", 15.0, "ms", "needs the collector scenario", cores),
        ]
    slope = soak and soak.get("rss_slope_mib_per_min")
    short = soak and soak["seconds"] < SOAK_TARGET_S and f"soak of {soak['seconds']:g} s, the target is 10 minutes"
    out.append(_target("api_memory_flat_over_soak", f"api memory flat over the soak (RSS slope ≤ {FLAT_MIB_PER_MIN:g} MiB/min)",
                       slope, "<=", FLAT_MIB_PER_MIN, "MiB/min", "measured by ./iot bench --soak", short or ""))
    return out


def summarize(results: list[dict], settings: dict, soak: dict | None = None) -> dict:
    info = machine()
    summary = {"machine": info, "settings": settings, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "results": results, "ratios": ratios(results)}
    if soak is not None:
        summary["soak"] = soak
    summary["targets"] = targets(results, soak, info["cpus"])
    budget = cpu_budget(results, info["cpus"])
    if budget:
        summary["cpu_budget"] = budget
    return summary


# -- text -----------------------------------------------------------------------------------------------------
def _value(v, unit: str, sign: str = "") -> str:
    if v is None:
        return "-"
    return {"x": f"{v:.2f}x", "readings/s": f"{v:,.0f}/s", "ms": f"{v:.2f} ms", "share": f"{v:.0%}",
            "MiB/min": f"{v:{sign}.2f} MiB/min"}[unit]


def targets_table(targets_: list[dict]) -> str:
    rows = ["targets (a benchmark: a missed target is reported here, it does not fail the run)"]
    for t in targets_:
        verdict = {True: "met", False: "MISSED", None: "-"}[t["met"]]
        threshold = f"{'≥' if t['op'] == '>=' else '≤'} {_value(t['threshold'], t['unit'])}"
        note = f"  ({t['note']})" if t["note"] else ""
        rows.append(f"  {verdict:7} {t['description']:62} {_value(t['measured'], t['unit'], '+'):>15}  "
                    f"target {threshold}{note}")
    return "\n".join(rows)


def table(summary: dict) -> str:
    head = (f"{'scenario':34} {'conns':>5} {'req/s':>9} {'readings/s':>11} {'p50 ms':>7} {'p95 ms':>7} "
            f"{'p99 ms':>7} {'errors':>6} {'api cpu s':>9} {'influxd cpu s':>13} {'wrk cpu s':>9}")
    rows = [head, "-" * len(head)]

    def num(v, fmt):
        return "" if v is None else format(v, fmt)

    for r in summary["results"]:
        rows.append(f"{r['name']:34} {r['connections']:>5} {r['requests_per_s']:>9.0f} {num(r['readings_per_s'], '.0f'):>11} "
                    f"{r['p50_ms']:>7.2f} {r['p95_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['errors']:>6} "
                    f"{num(r['api_cpu_s'], '.1f'):>9} {num(r.get('influxd_cpu_s'), '.1f'):>13} "
                    f"{num(r.get('wrk_cpu_s'), '.1f'):>9}")
    rows.append("")
    rows += [f"{k}: {v:.2f}x" for k, v in summary["ratios"].items()]
    if summary.get("cpu_budget"):
        rows += ["", cpu_budget_text(summary["cpu_budget"])]
    rows += ["", targets_table(summary["targets"])]
    return "\n".join(rows)


def soak_table(summary: dict) -> str:
    s = summary["soak"]
    window = f"{s['window_s']:g} s"
    rows = [f"soak: {s['seconds']:g} s of single-reading POSTs at {s['connections']} connections, "
            f"{len(s['samples'])} RSS samples every {s['sample_every_s']:g} s",
            f"  load            {s['requests_per_s']:,.0f} req/s, {s['readings_per_s']:,.0f} readings/s, p50/p95/p99 "
            f"{s['p50_ms']:.2f}/{s['p95_ms']:.2f}/{s['p99_ms']:.2f} ms, {s['errors']} errors "
            f"({s.get('non2xx', 0)} non-2xx answers such as 503, {s.get('socket_errors', 0)} socket errors or timeouts)",
            "  api answers     " + (", ".join(f"{code}: {n:,}" for code, n in s.get("api_answers", {}).items())
                                    or "-") + " (POST /data by status, the api's own count)",
            f"  api RSS         first {window}: {s['rss_first_window_mib']:.1f} MiB, last {window}: "
            f"{s['rss_last_window_mib']:.1f} MiB, max {s['rss_max_mib']:.1f} MiB",
            f"  slope           {_value(s['rss_slope_mib_per_min'], 'MiB/min', '+')} (least squares after the first "
            f"{window}); flat: {s['flat']} (threshold {FLAT_MIB_PER_MIN:g} MiB/min)",
            f"  readings        {s['acknowledged']:,} acknowledged to wrk, {s['api_counted'] or 0:,} counted by the api, "
            f"{s['stored']:,} stored in InfluxDB: checked {s['stored_checked']}",
            "", targets_table([t for t in summary["targets"] if t["target"] == "api_memory_flat_over_soak"])]
    return "\n".join(rows)
