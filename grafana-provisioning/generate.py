"""Generate the provisioned Grafana dashboards (dashboards/*.json) from code.

    .venv/bin/python grafana-provisioning/generate.py          # rewrite dashboards/*.json
    .venv/bin/python grafana-provisioning/generate.py --check  # exit 1 if the committed JSON differs

Why generated, not hand-written: every panel repeats the same datasource reference, target shape and
filters; written once here, a query or the datasource uid cannot drift between panels, and the
measurement name comes from stacks/values/defaults.yaml (influxdb.measurement), the value the api
writes with. Plain dicts, no dependency (grafana-foundation-sdk would be one more pinned package for
what is a few dozen lines). The committed JSON is what Grafana reads; tests/unit/test_grafana_provisioning.py
fails when it is not exactly what this script writes, and tests/integration/test_grafana_queries.py
runs every query below against a real InfluxDB.
"""
# ruff: noqa: S608 - the queries are built from constants of this file, never from input
from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DASHBOARDS = HERE / "dashboards"
DATASOURCE = {"type": "influxdb", "uid": "iot-influxdb"}  # = datasources/influxdb.yaml `uid`
SCHEMA_VERSION = 41  # Grafana 12
TOP_N = 10  # the seeds' Flask dashboard: NUM_TOP_DEVICES=10


def _measurement() -> str:
    values = yaml.safe_load((ROOT / "stacks" / "values" / "defaults.yaml").read_text(encoding="utf-8"))
    return values["influxdb"]["measurement"]


M = f'"{_measurement()}"'
# The processor's aggregates as the historian stores them (docs/mqtt.md, Storage): tags district and type,
# fields mean, min, max, n, time = the aggregate's ts. A fixed name, like the agg/ topics.
DISTRICT_M = '"district"'
DISTRICT_FILTER = '"type" =~ /^$type$/ AND "district" =~ /^$district$/'
# The two template variables, in Grafana's regex form: one value `/^temp$/`, several `/^(a|b)$/`,
# All = allValue `.*` (not the list of every sensor: a regex of thousands of ids stays out of queries).
FILTER = '"type" =~ /^$type$/ AND "sensor_id" =~ /^$sensor$/'


def target(query: str, fmt: str = "time_series", alias: str | None = None, ref: str = "A") -> dict:
    out = {"refId": ref, "datasource": DATASOURCE, "rawQuery": True, "query": query, "resultFormat": fmt}
    if alias:
        out["alias"] = alias
    return out


def panel(pid: int, kind: str, title: str, grid: tuple[int, int, int, int], targets: list[dict],
          description: str, unit: str | None = None, options: dict | None = None,
          overrides: list | None = None, **extra) -> dict:
    x, y, w, h = grid
    defaults: dict = {}
    if unit:
        defaults["unit"] = unit
    out = {
        "id": pid, "type": kind, "title": title, "description": description,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "datasource": DATASOURCE, "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or {},
    }
    out.update(extra)
    return out


def stat_options(fields: str = "") -> dict:
    return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": fields, "values": False},
            "colorMode": "value", "graphMode": "none", "textMode": "value"}


def variable(name: str, label: str, query: str, multi: bool = True, current: str | None = None) -> dict:
    """A query variable: multi-value with All (allValue `.*`), or one value at a time (CURRENT first)."""
    out = {
        "name": name, "label": label, "type": "query", "datasource": DATASOURCE,
        "query": query, "definition": query, "refresh": 2,  # 2: on time range change
        "multi": multi, "includeAll": multi, "allValue": ".*", "sort": 1, "regex": "",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "options": [],
    }
    if not multi:
        del out["allValue"]
        out["current"] = {"selected": True, "text": current, "value": current}
    return out


def dashboard(uid: str, title: str, description: str, panels: list[dict], variables: list[dict]) -> dict:
    return {
        "uid": uid, "title": title, "description": description, "tags": ["iot"],
        "editable": False, "graphTooltip": 1, "timezone": "browser", "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"}, "schemaVersion": SCHEMA_VERSION, "version": 1,
        "annotations": {"list": []}, "links": [],
        "templating": {"list": variables}, "panels": panels,
    }


def overview() -> dict:
    last_per_sensor = f'SELECT last("value") FROM {M} WHERE {FILTER} AND $timeFilter GROUP BY "sensor_id"'
    panels = [
        panel(1, "stat", "Active sensors (last 5 min)", (0, 0, 6, 4), [target(
            f'SELECT count("last") AS "sensors" FROM (SELECT last("value") FROM {M} WHERE {FILTER} '
            f'AND time > now() - 5m GROUP BY "sensor_id")')],
            "Sensors (of the selected types and sensors) with at least one reading in the last 5 minutes.",
            options=stat_options()),
        panel(2, "stat", "Readings in range", (6, 0, 6, 4), [target(
            f'SELECT count("value") AS "readings" FROM {M} WHERE {FILTER} AND $timeFilter')],
            "Readings stored in the dashboard's time range.", unit="short", options=stat_options()),
        panel(3, "timeseries", "Readings per minute", (12, 0, 12, 8), [target(
            f'SELECT count("value") AS "readings" FROM {M} WHERE {FILTER} AND $timeFilter '
            'GROUP BY time(1m), "type" fill(0)', alias="$tag_type")],
            "Readings per minute, one line per type (by the reading's own timestamp).", unit="short",
            options={"legend": {"displayMode": "list", "placement": "bottom"}}),
        panel(4, "timeseries", "$type per sensor", (0, 8, 12, 9), [target(
            f'SELECT mean("value") FROM {M} WHERE {FILTER} AND $timeFilter '
            'GROUP BY time($__interval), "sensor_id" fill(none)', alias="$tag_sensor_id")],
            "Every reading type gets its own panel (repeated over $type), one line per sensor; values "
            "averaged per $__interval.",
            options={"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull"]}},
            repeat="type", repeatDirection="h", maxPerRow=3),
        panel(5, "table", "Latest value per sensor", (0, 17, 8, 10), [target(
            f'SELECT last("value") AS "value" FROM {M} WHERE {FILTER} AND $timeFilter '
            'GROUP BY "sensor_id", "type"', fmt="table")],
            "The newest reading of each sensor and type in the time range.",
            transformations=[{"id": "merge", "options": {}}]),
        panel(6, "table", f"Top {TOP_N} sensors: highest $type", (8, 17, 8, 10), [target(
            f'SELECT top("max", "sensor_id", {TOP_N}) AS "value" FROM (SELECT max("value") FROM {M} '
            f'WHERE {FILTER} AND $timeFilter GROUP BY "sensor_id")', fmt="table")],
            f"The {TOP_N} sensors with the highest value of each type in the time range, one sensor once "
            "(the course's Flask dashboard: top devices by feature value). One table per type (repeated "
            "over $type): values of different types are not comparable.",
            transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True}}},
                             {"id": "sortBy", "options": {"sort": [{"field": "value", "desc": True}]}}],
            repeat="type", repeatDirection="h", maxPerRow=3),
        panel(7, "table", "Time since last seen", (16, 17, 8, 10), [target(
            last_per_sensor, fmt="table")],
            "When each sensor last sent a reading (within the time range), stalest first.",
            transformations=[{"id": "merge", "options": {}},
                             {"id": "sortBy", "options": {"sort": [{"field": "Time", "desc": False}]}}],
            overrides=[{"matcher": {"id": "byName", "options": "Time"},
                        "properties": [{"id": "unit", "value": "dateTimeFromNow"},
                                       {"id": "displayName", "value": "last seen"}]}]),
    ]
    variables = [
        variable("type", "Type", f'SHOW TAG VALUES FROM {M} WITH KEY = "type"'),
        variable("sensor", "Sensor", f'SHOW TAG VALUES FROM {M} WITH KEY = "sensor_id" WHERE "type" =~ /^$type$/'),
    ]
    return dashboard("iot-overview", "IoT overview",
                     "Readings of every sensor: per type over time, latest values, rates, top sensors, "
                     "last seen.", panels, variables)


def service_health() -> dict:
    series = f'SELECT last("value") FROM {M} WHERE $timeFilter GROUP BY "sensor_id", "type"'
    panels = [
        panel(1, "stat", "Newest point", (0, 0, 6, 4), [target(
            f'SELECT last("value") AS "value" FROM {M} WHERE time > now() - 7d')],
            "How long ago the newest reading was stored (any sensor, last 7 days): a stalled api or "
            "InfluxDB shows here first.",
            options=stat_options("/^Time$/"),
            overrides=[{"matcher": {"id": "byName", "options": "Time"},
                        "properties": [{"id": "unit", "value": "dateTimeFromNow"}]}]),
        panel(2, "stat", "Series in range", (6, 0, 6, 4), [target(
            f'SELECT count("last") AS "series" FROM ({series})')],
            "Series (sensor x type) with data in the time range: the cardinality InfluxDB indexes.",
            unit="short", options=stat_options()),
        panel(3, "bargauge", "Sensors per type", (12, 0, 12, 4), [target(
            f'SELECT count("last") AS "sensors" FROM ({series}) GROUP BY "type"', alias="$tag_type")],
            "Sensors that sent each type of reading in the time range.", unit="short",
            options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                     "orientation": "horizontal", "displayMode": "basic"}),
        panel(4, "timeseries", "Write rate (points per minute)", (0, 4, 12, 9), [target(
            f'SELECT count("value") AS "points" FROM {M} WHERE $timeFilter GROUP BY time(1m) fill(0)',
            alias="points")],
            "Points stored per minute, by the readings' timestamps.", unit="short"),
        panel(5, "timeseries", "Points per type", (12, 4, 12, 9), [target(
            f'SELECT count("value") AS "points" FROM {M} WHERE $timeFilter '
            'GROUP BY time($__interval), "type" fill(0)', alias="$tag_type")],
            "Points stored per $__interval, one line per reading type.", unit="short"),
    ]
    return dashboard("iot-service-health", "IoT service health",
                     "What InfluxDB itself tells about ingestion (write rate, series). Read from the "
                     "iot database only: InfluxDB's _internal database may be disabled and the reader "
                     "user may not read it.", panels, [])


def districts() -> dict:
    latest = (f'SELECT "mean", "min", "max", "n" FROM {DISTRICT_M} WHERE {DISTRICT_FILTER} AND $timeFilter '
              'GROUP BY "district" ORDER BY time DESC LIMIT 1')  # LIMIT is per series: each district's newest
    legend = {"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull", "min", "max"]}}
    panels = [
        panel(1, "timeseries", "Mean $type per district", (0, 0, 16, 10), [target(
            f'SELECT mean("mean") FROM {DISTRICT_M} WHERE {DISTRICT_FILTER} AND $timeFilter '
            'GROUP BY time($__interval), "district" fill(none)', alias="$tag_district")],
            "The processor's sliding-window mean (each station's latest value in the window, one station "
            "once), one line per district; averaged per $__interval.", options=legend),
        panel(2, "stat", "Stations reporting (latest)", (16, 0, 8, 10), [target(
            f'SELECT sum("last") AS "stations" FROM (SELECT last("n") FROM {DISTRICT_M} WHERE {DISTRICT_FILTER} '
            'AND $timeFilter GROUP BY "district")')],
            "Stations in the selected districts' latest aggregates in the time range (each district's n, "
            "summed). A district whose window emptied keeps its last n here: the processor clears its topic and "
            "the historian stores nothing for it (docs/mqtt.md).",
            unit="short", options=stat_options()),
        panel(3, "table", "Latest per district", (0, 10, 12, 11), [target(latest, fmt="table")],
            "Each district's newest aggregate of $type: mean, min and max of its stations' latest values, n "
            "stations, and when (the newest reading in its window).",
            transformations=[{"id": "merge", "options": {}},
                             {"id": "organize", "options": {"indexByName": {
                                 "district": 0, "mean": 1, "min": 2, "max": 3, "n": 4, "Time": 5}}},
                             {"id": "sortBy", "options": {"sort": [{"field": "district", "desc": False}]}}],
            overrides=[{"matcher": {"id": "byName", "options": "Time"},
                        "properties": [{"id": "unit", "value": "dateTimeFromNow"},
                                       {"id": "displayName", "value": "updated"}]}]),
        panel(4, "timeseries", "Stations reporting (n) per district", (12, 10, 12, 11), [target(
            f'SELECT min("n") FROM {DISTRICT_M} WHERE {DISTRICT_FILTER} AND $timeFilter '
            'GROUP BY time($__interval), "district" fill(none)', alias="$tag_district")],
            "How many stations each district's aggregate was made of (n), the lowest per $__interval: a "
            "station that stops reporting leaves its district's window and shows here as a step down.",
            unit="short", options={"legend": {"displayMode": "list", "placement": "bottom"}}),
    ]
    variables = [
        # One type at a time: °C, % and hPa on one axis would mean nothing.
        variable("type", "Type", f'SHOW TAG VALUES FROM {DISTRICT_M} WITH KEY = "type"', multi=False, current="temp"),
        variable("district", "District",
                 f'SHOW TAG VALUES FROM {DISTRICT_M} WITH KEY = "district" WHERE "type" =~ /^$type$/'),
    ]
    return dashboard("iot-districts", "Toulouse districts",
                     "The district processor's aggregates (agg/{district}/{type}, stored by the historian in "
                     "measurement district): per district, the mean, min and max of its stations' latest values "
                     "over a sliding window, and how many stations reported.", panels, variables)


def generate() -> dict[str, str]:
    """File name -> JSON text, exactly as committed."""
    return {name: json.dumps(board, indent=2, ensure_ascii=False) + "\n"
            for name, board in (("overview.json", overview()), ("service-health.json", service_health()),
                                ("districts.json", districts()))}


def main(argv: list[str]) -> int:
    files = generate()
    if "--check" in argv:
        stale = [n for n, text in files.items()
                 if not (DASHBOARDS / n).is_file() or (DASHBOARDS / n).read_text(encoding="utf-8") != text]
        if stale:
            print(f"stale: {', '.join(stale)}: run grafana-provisioning/generate.py", file=sys.stderr)
            return 1
        return 0
    for name, text in files.items():
        (DASHBOARDS / name).write_text(text, encoding="utf-8")
        print(f"wrote {(DASHBOARDS / name).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
