"""Every query of every provisioned Grafana dashboard, run against a real InfluxDB filled by the real
api from a simulator run.

Grafana itself cannot run on these machines (no Debian package, no registry to pull its image from),
so what Grafana would send is reproduced (ops/dashboards.py, shared with `./iot show`): its macros
expanded the way its InfluxDB (InfluxQL) datasource expands them -- `$timeFilter` as a relative range
(`time >= now() - 1h`, the browser's form) and as the absolute millisecond range the backend sends
(`time > Xms and time < Yms`), `$__interval` / `$__interval_ms`, and the multi-value variables
`$type` / `$sensor` in a regex with one value (`temp`, regex-escaped), several (`(a|b)`), and All (the
variable's allValue `.*`). Each panel must return the series it is drawn from: non-empty, with the columns (and group-by tags) the
panel's alias, transformations and overrides refer to. Panels repeated over a variable run with each
single value, as Grafana repeats them, and so do panels of a single-value variable (the districts'
Type). A typo in a query fails (shown by a broken copy below).

The districts dashboard reads the processor's aggregates, measurement `district` (docs/mqtt.md): the
module writes those points itself (what the historian stores), with numbers chosen so the panels'
answers are exact.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ops.dashboards import expand, load_dashboards

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "grafana-provisioning" / "dashboards"
TYPES = ["temp", "humidity", "pressure"]
DEVICES = 4
COUNT = 5
PREFIX = "graf-"
SENSORS = [f"{PREFIX}{i:04d}" for i in range(1, DEVICES + 1)]
STALE = "stale-0001"  # one temp reading 30 minutes old, through the api: not "active", still "seen"
# The processor's aggregates: district -> types it has (blagnac: TH stations only, no pressure), and the
# newest aggregate's n per district; AGG_POINTS per district and type, AGG_STEP_S apart, the newest now.
DISTRICTS = {"q01": TYPES, "q02": TYPES, "blagnac": ["temp", "humidity"]}
NEWEST_N = {"q01": 4, "q02": 2, "blagnac": 1}
AGG_POINTS, AGG_STEP_S = 6, 50

# What each panel draws: (dashboard uid, panel title) -> columns of every series, the tags it is grouped
# by (the alias `$tag_x` and the merge transformations need them), and how to count its series.
EXPECT = {
    ("iot-overview", "Active sensors (last 5 min)"): {"columns": ["time", "sensors"], "tags": []},
    ("iot-overview", "Readings in range"): {"columns": ["time", "readings"], "tags": []},
    ("iot-overview", "Readings per minute"): {"columns": ["time", "readings"], "tags": ["type"]},
    ("iot-overview", "$type per sensor"): {"columns": ["time", "mean"], "tags": ["sensor_id"]},
    ("iot-overview", "Latest value per sensor"): {"columns": ["time", "value"], "tags": ["sensor_id", "type"]},
    ("iot-overview", "Top 10 sensors: highest $type"): {"columns": ["time", "value", "sensor_id"], "tags": []},
    ("iot-overview", "Time since last seen"): {"columns": ["time", "last"], "tags": ["sensor_id"]},
    ("iot-service-health", "Newest point"): {"columns": ["time", "value"], "tags": []},
    ("iot-service-health", "Series in range"): {"columns": ["time", "series"], "tags": []},
    ("iot-service-health", "Sensors per type"): {"columns": ["time", "sensors"], "tags": ["type"]},
    ("iot-service-health", "Write rate (points per minute)"): {"columns": ["time", "points"], "tags": []},
    ("iot-service-health", "Points per type"): {"columns": ["time", "points"], "tags": ["type"]},
    ("iot-districts", "Mean $type per district"): {"columns": ["time", "mean"], "tags": ["district"]},
    ("iot-districts", "Stations reporting (latest)"): {"columns": ["time", "stations"], "tags": []},
    ("iot-districts", "Latest per district"): {"columns": ["time", "mean", "min", "max", "n"], "tags": ["district"]},
    ("iot-districts", "Stations reporting (n) per district"): {"columns": ["time", "min"], "tags": ["district"]},
}


# -- Grafana's macro expansion: ops/dashboards.py (shared with ./iot show) ---------------------------
def time_filters() -> dict[str, str]:
    now_ms = int(time.time() * 1000)
    return {"relative": "time >= now() - 1h",
            "absolute": f"time > {now_ms - 3_600_000}ms and time < {now_ms + 60_000}ms"}


# Variable selections every query runs with: one value, several, All.
SELECTIONS = {
    "one": {"type": ["temp"], "sensor": [SENSORS[0]], "district": ["q01"]},
    "several": {"type": ["temp", "humidity"], "sensor": SENSORS[:2], "district": ["q01", "blagnac"]},
    "all": {"type": "All", "sensor": "All", "district": "All"},
}


def panel_cases() -> list[tuple[str, str, dict]]:
    cases = []
    for name, board in load_dashboards().items():
        for panel in board["panels"]:
            for target in panel["targets"]:
                cases.append((name, panel["title"], target["refId"]))
    return cases


# -- data: the real api, filled by the simulator --------------------------------------------------
@pytest.fixture(scope="module")
def filled(influxdb):
    """One database for the module: api + simulator run (DEVICES x TYPES x COUNT) + one stale reading."""
    from harness import ApiServer

    db = "grafana_" + uuid.uuid4().hex[:12]
    api = ApiServer(influxdb.url, db)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "iot_simulator", "--url", api.url, "--devices", str(DEVICES), "--count",
             str(COUNT), "--interval", "0", "--types", ",".join(TYPES), "--sensor-prefix", PREFIX, "--json"],
            capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["stored"] == DEVICES * COUNT * len(TYPES)
        stale_ts = (datetime.now(UTC) - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
        status, _, body = api.post("/data", {"ts": stale_ts, "type": "temp", "value": 21.5, "sensor_id": STALE})
        assert status == 201, body
    finally:
        api.stop()
    status, body = influxdb.write(db, "".join(f"district,district={d},type={t} {agg_fields(d, t, k)} {agg_ns(k)}\n"
                                              for d, types in DISTRICTS.items() for t in types
                                              for k in range(AGG_POINTS)))
    assert status == 204, body
    return influxdb, db


_NOW_NS = time.time_ns()


def agg_ns(k: int) -> int:
    """The time of the K-th newest aggregate (0: the newest)."""
    return _NOW_NS - k * AGG_STEP_S * 1_000_000_000


def agg_values(district: str, kind: str, k: int) -> tuple[float, float, float, int]:
    """(mean, min, max, n) of the K-th newest aggregate of DISTRICT and KIND: distinct everywhere."""
    mean = 10.0 * (1 + list(DISTRICTS).index(district)) + TYPES.index(kind) + k / 4
    return mean, mean - 1.5, mean + 2.25, NEWEST_N[district] + k % 2


def agg_fields(district: str, kind: str, k: int) -> str:
    mean, lo, hi, n = agg_values(district, kind, k)
    return f"max={hi},mean={mean},min={lo},n={n}i"


def run(filled, query: str) -> list[dict]:
    influx, db = filled
    return influx.query(query, db=db)


def check_series(series: list[dict], expect: dict, what: str) -> None:
    assert series, f"{what}: no series"
    for s in series:
        assert s["columns"] == expect["columns"], f"{what}: columns {s['columns']}"
        assert sorted(s.get("tags") or {}) == sorted(expect["tags"]), f"{what}: tags {s.get('tags')}"
        assert s["values"], f"{what}: a series without rows"


# -- the tests ------------------------------------------------------------------------------------
def test_every_panel_has_an_expectation():
    """A new panel cannot slip through without saying what it must return."""
    assert {(json.loads((DASHBOARDS / n).read_text())["uid"], t) for n, t, _ in panel_cases()} == set(EXPECT)


@pytest.mark.parametrize("selection", sorted(SELECTIONS))
@pytest.mark.parametrize("time_form", ["relative", "absolute"])
@pytest.mark.parametrize(("board_file", "title", "ref"), panel_cases())
def test_panel_query_returns_its_series(filled, board_file, title, ref, selection, time_form):
    board = load_dashboards()[board_file]
    panel = next(p for p in board["panels"] if p["title"] == title)
    target = next(t for t in panel["targets"] if t["refId"] == ref)
    assert target["datasource"]["uid"] == panel["datasource"]["uid"] == "iot-influxdb"
    assert target["rawQuery"] is True and target["resultFormat"] in ("time_series", "table")
    variables = dict(SELECTIONS[selection])
    single_type = any(v["name"] == "type" and not v["multi"] for v in board["templating"]["list"])
    repeats = [[v] for v in (TYPES if variables["type"] == "All" else variables["type"])] \
        if panel.get("repeat") == "type" or single_type else [variables["type"]]
    for value in repeats:  # a repeated panel: one copy per value of its variable
        q = expand(target["query"], dict(variables, type=value), time_filters()[time_form])
        series = run(filled, q)
        check_series(series, EXPECT[(board["uid"], title)], f"{title} [{q}]")
        _check_content(board["uid"], title, series, dict(variables, type=value), filled)


def _selected(variables: dict, name: str, every: list[str]) -> list[str]:
    return every if variables[name] == "All" else variables[name]


def _check_content(uid: str, title: str, series: list[dict], variables: dict, filled=None) -> None:
    """The numbers, where the simulator run makes them exact."""
    types = _selected(variables, "type", TYPES)
    sensors = _selected(variables, "sensor", SENSORS + [STALE])
    fresh = [s for s in sensors if s != STALE]
    stale_in = STALE in sensors and "temp" in types
    if title == "Active sensors (last 5 min)":
        assert series[0]["values"][0][1] == len(fresh)  # the 30-minute-old sensor is not active
    elif title == "Readings in range":
        assert series[0]["values"][0][1] == len(fresh) * len(types) * COUNT + stale_in
    elif title == "$type per sensor":
        assert {s["tags"]["sensor_id"] for s in series} == set(fresh) | ({STALE} if stale_in else set())
    elif title == "Latest value per sensor":
        assert len(series) == len(fresh) * len(types) + stale_in
    elif title == "Top 10 sensors: highest $type":
        # Against an independent, plain query: each selected sensor's maximum of that one type.
        (kind,) = types
        chosen = "|".join(sensors)
        maxima = run(filled, f'SELECT max("value") FROM "data" WHERE "type" = \'{kind}\' '
                             f'AND "sensor_id" =~ /^({chosen})$/ GROUP BY "sensor_id"')
        expected = sorted(((s["values"][0][1], s["tags"]["sensor_id"]) for s in maxima), reverse=True)[:10]
        assert sorted(((r[1], r[2]) for r in series[0]["values"]), reverse=True) == expected
    elif title == "Time since last seen":
        assert {s["tags"]["sensor_id"] for s in series} == set(fresh) | ({STALE} if stale_in else set())
        stale = [s for s in series if s["tags"]["sensor_id"] == STALE]
        assert all(s["values"][0][0] < min(f["values"][0][0] for f in series if f not in stale) for s in stale)
    elif title == "Series in range":
        assert series[0]["values"][0][1] == len(SENSORS) * len(TYPES) + 1
    elif title == "Sensors per type":
        counts = {s["tags"]["type"]: s["values"][0][1] for s in series}
        assert counts == {t: len(SENSORS) + (t == "temp") for t in TYPES}
    elif uid == "iot-districts":
        (kind,) = types  # one type at a time
        districts = [d for d in _selected(variables, "district", list(DISTRICTS)) if kind in DISTRICTS[d]]
        if title in ("Mean $type per district", "Stations reporting (n) per district"):
            assert {s["tags"]["district"] for s in series} == set(districts)
        elif title == "Latest per district":
            got = {s["tags"]["district"]: s["values"] for s in series}
            assert got == {d: [[got[d][0][0], *agg_values(d, kind, 0)]] for d in districts}
        elif title == "Stations reporting (latest)":
            assert series[0]["values"][0][1] == sum(NEWEST_N[d] for d in districts)


@pytest.mark.parametrize("selection", sorted(SELECTIONS))
def test_template_variable_queries_return_their_values(filled, selection):
    for board in load_dashboards().values():
        for var in board["templating"]["list"]:
            assert var["datasource"]["uid"] == "iot-influxdb"
            q = expand(var["query"], SELECTIONS[selection], time_filters()["relative"])
            series = run(filled, q)
            assert series and series[0]["columns"] == ["key", "value"], q
            values = {row[1] for s in series for row in s["values"]}
            if var["name"] == "type":
                assert values == set(TYPES)
            elif var["name"] == "sensor":  # filtered by $type
                types = _selected(SELECTIONS[selection], "type", TYPES)
                assert values == set(SENSORS) | ({STALE} if "temp" in types else set()), q
            elif var["name"] == "district":  # filtered by $type
                types = _selected(SELECTIONS[selection], "type", TYPES)
                assert values == {d for d, have in DISTRICTS.items() if set(types) & set(have)}, q
            else:
                pytest.fail(f"no expectation for template variable {var['name']}")


def test_the_dashboards_have_variables_and_panels():
    boards = {b["uid"]: b for b in load_dashboards().values()}
    assert set(boards) == {"iot-overview", "iot-service-health", "iot-districts"}
    assert [v["name"] for v in boards["iot-overview"]["templating"]["list"]] == ["type", "sensor"]
    assert [v["name"] for v in boards["iot-districts"]["templating"]["list"]] == ["type", "district"]
    assert len(panel_cases()) == len(EXPECT)


def test_macro_expansion_matches_grafanas_forms():
    q = 'SELECT x FROM "data" WHERE "type" =~ /^$type$/ AND "sensor_id" =~ /^$sensor$/ AND $timeFilter ' \
        'GROUP BY time($__interval) LIMIT $__interval_ms'
    got = expand(q, {"type": ["temp", "a.b"], "sensor": "All"}, "time >= now() - 1h")
    assert got == ('SELECT x FROM "data" WHERE "type" =~ /^(temp|a\\.b)$/ AND "sensor_id" =~ /^.*$/ AND '
                   'time >= now() - 1h GROUP BY time(10s) LIMIT 10000')
    assert expand("/^$sensor$/", {"sensor": ["x/y"]}, "") == "/^x\\/y$/"


@pytest.mark.parametrize("typo", [("last(", "lsat("), ('"sensor_id"', '"sensorid"'), ("FROM", "FORM")])
def test_a_query_typo_fails_the_suite(filled, typo):
    """A deliberately broken copy of a real panel query is caught (error or no series)."""
    board = load_dashboards()["overview.json"]
    panel = next(p for p in board["panels"] if p["title"] == "Time since last seen")
    broken = panel["targets"][0]["query"].replace(*typo, 1)
    assert broken != panel["targets"][0]["query"]
    q = expand(broken, SELECTIONS["one"], time_filters()["relative"])
    with pytest.raises((RuntimeError, AssertionError)):
        check_series(run(filled, q), EXPECT[("iot-overview", "Time since last seen")], q)


@pytest.mark.parametrize("typo", [('"district" =~', '"distrcit" =~'), ("DESC", "DSC"), ('"n"', '"nn"')])
def test_a_district_query_typo_fails_the_suite(filled, typo):
    """The same for the districts' table: a wrong tag, keyword or field is caught."""
    board = load_dashboards()["districts.json"]
    panel = next(p for p in board["panels"] if p["title"] == "Latest per district")
    broken = panel["targets"][0]["query"].replace(*typo, 1)
    assert broken != panel["targets"][0]["query"]
    q = expand(broken, SELECTIONS["one"], time_filters()["relative"])
    with pytest.raises((RuntimeError, AssertionError)):
        series = run(filled, q)
        check_series(series, EXPECT[("iot-districts", "Latest per district")], q)
        _check_content("iot-districts", "Latest per district", series, SELECTIONS["one"], filled)
