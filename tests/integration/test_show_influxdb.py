"""`./iot show --influxdb-url` against a real InfluxDB filled by the real api from bounded simulator runs:
the numbers on the screen are the numbers written.

Data (one database for the module): 3 devices `dev-` (temp, humidity) x 5 ticks and 15 devices `st-`
(temp, humidity, pressure) x 2 ticks from the simulator through the api; `hot-1` temp 123.25 (the top),
`old-1` temp 21.5 thirty minutes ago (in range, not active); and the processor's aggregates for three
districts (measurement `district`, as the historian stores them). The task runs as a subprocess, as a
person runs it; its screen is read back and compared with what was written (and with independent,
plain InfluxQL where the simulator picked the values)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLEETS = {"dev-": (3, ["temp", "humidity"], 5), "st-": (15, ["temp", "humidity", "pressure"], 2)}
DISTRICTS = {"q01": 4, "q02": 2, "blagnac": 1}  # district -> stations in its temp aggregate
SENT = sum(n * len(types) * count for n, types, count in FLEETS.values()) + 2
SENSORS = sum(n for n, _, _ in FLEETS.values()) + 2


@pytest.fixture(scope="module")
def filled(influxdb):
    from harness import ApiServer

    db = "show_" + uuid.uuid4().hex[:12]
    api = ApiServer(influxdb.url, db)
    try:
        for prefix, (devices, types, count) in FLEETS.items():
            proc = subprocess.run(
                [sys.executable, "-m", "iot_simulator", "--url", api.url, "--devices", str(devices), "--count", str(count),
                 "--interval", "0", "--types", ",".join(types), "--sensor-prefix", prefix, "--json"],
                capture_output=True, text=True, timeout=120, check=False)
            assert proc.returncode == 0, proc.stderr
            assert json.loads(proc.stdout)["stored"] == devices * len(types) * count
        old = (datetime.now(UTC) - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for reading in ({"type": "temp", "value": 123.25, "sensor_id": "hot-1"},
                        {"ts": old, "type": "temp", "value": 21.5, "sensor_id": "old-1"}):
            status, _, body = api.post("/data", reading)
            assert status == 201, body
    finally:
        api.stop()
    now_ns = time.time_ns()
    lines = "".join(f"district,district={d},type=temp max={20 + n},mean={10 + n},min={n},n={n}i {now_ns - k * 10**10}\n"
                    for d, n in DISTRICTS.items() for k in range(3))
    status, body = influxdb.write(db, lines)
    assert status == 204, body
    return influxdb, db


def show(filled, *args: str, db: str | None = None) -> subprocess.CompletedProcess:
    influx, name = filled
    return subprocess.run([sys.executable, "-m", "invoke", "show", "--influxdb-url", influx.url, "--set",
                           f"influxdb.db={db or name}", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": "1", "COLUMNS": "100"}, check=False)


def screen(filled, *args: str) -> str:
    proc = show(filled, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "\033" not in proc.stdout  # not a TTY: no colour
    return proc.stdout


def row(text: str, sensor: str) -> list[str]:
    return next(line.split() for line in text.splitlines() if line.startswith(f"  {sensor} "))


def latest(filled, sensor: str, kind: str) -> float:
    influx, db = filled
    series = influx.query(f'SELECT last("value") FROM "data" WHERE "sensor_id" = \'{sensor}\' AND "type" = \'{kind}\'', db=db)
    return series[0]["values"][0][1]


def test_the_counts_on_screen_are_what_was_written(filled):
    text = screen(filled)
    assert re.search(rf"active sensors \(last 5 min\)\s+{SENSORS - 1}\s+sensors in range\s+{SENSORS}\s+"
                     rf"readings in range\s+{SENT}\b", text), text
    assert "not Grafana" in text.splitlines()[1]


def latest_table(text: str) -> str:
    """The "latest value per sensor" section of the screen (up to the next blank line)."""
    return text.split("latest value per sensor\n", 1)[1].split("\n\n", 1)[0]


def test_latest_values_small_groups_listed_large_ones_summarised(filled):
    text = latest_table(screen(filled))
    head = next(line.split() for line in text.splitlines() if line.strip().startswith("sensor "))
    assert head == ["sensor", "humidity", "pressure", "temp", "last", "seen"]
    for i in range(1, 4):
        sid = f"dev-{i:04d}"
        cells = row(text, sid)
        assert cells[1:4] == [_fmt(latest(filled, sid, "humidity")), "-", _fmt(latest(filled, sid, "temp"))], text
    assert row(text, "hot-1")[1:4] == ["-", "-", "123.25"]
    old = row(text, "old-1")
    assert old[3] == "21.5" and re.fullmatch(r"(29|30)m\d\ds", old[4]), old
    assert "  st-0001 " not in text and "st-* (15 sensors)" in text
    lo = next(line for line in text.splitlines() if "st-* (15 sensors)" in line).split()
    hi = next(line for line in text.splitlines() if line.strip().startswith("max")).split()
    for col, kind in enumerate(["humidity", "pressure", "temp"]):
        values = [latest(filled, f"st-{i:04d}", kind) for i in range(1, 16)]
        assert lo[4 + col] == _fmt(min(values)) and hi[1 + col] == _fmt(max(values)), (kind, lo, hi)


def test_the_top_list_is_the_highest_value_of_each_sensor(filled):
    influx, db = filled
    text = screen(filled, "--top", "4")
    lines = text.splitlines()
    at = lines.index(next(line for line in lines if line.startswith("top 4 per type")))
    assert lines[at + 1].split() == ["humidity", "pressure", "temp"]
    table = [line.split() for line in lines[at + 2:at + 6]]
    assert table[0][4:6] == ["hot-1", "123.25"]  # the max sent
    for col, kind in enumerate(["humidity", "pressure", "temp"]):
        maxima = influx.query(f'SELECT max("value") FROM "data" WHERE "type" = \'{kind}\' GROUP BY "sensor_id"', db=db)
        expected = sorted(((s["values"][0][1], s["tags"]["sensor_id"]) for s in maxima), key=lambda p: (-p[0], p[1]))[:4]
        assert [(r[2 * col], r[2 * col + 1]) for r in table] == [(s, _fmt(v)) for v, s in expected], kind


def test_readings_per_minute_and_districts(filled):
    text = screen(filled)
    for kind in ("humidity", "pressure", "temp"):
        assert re.search(rf"^  {kind}\s+[·▁▂▃▄▅▆▇█]+\s+[\d,]+/min$", text, re.M), text
    stations = sum(DISTRICTS.values())
    assert re.search(rf"^  temp\s+3 districts, {stations} stations reporting, district means 11 to 14$", text, re.M), text


def test_type_and_sensor_filters(filled):
    text = screen(filled, "--type", "pressure")
    assert re.search(r"sensors in range\s+15\s+readings in range\s+30\b", text), text
    assert "  temp " not in text and "hot-1" not in text
    listed = screen(filled, "--sensor", "st-*", "--type", "temp,humidity")
    assert all(f"  st-{i:04d} " in latest_table(listed) for i in range(1, 16)) and "dev-0001" not in listed
    assert "Toulouse districts" not in listed  # aggregates have no sensors: not filtered, so not shown
    one = screen(filled, "--sensor", "dev-0002")
    assert re.search(r"sensors in range\s+1\s+readings in range\s+10\b", one), one


def test_png_is_a_real_plot(filled, tmp_path):
    path = tmp_path / "overview.png"
    proc = show(filled, "--png", str(path))
    assert proc.returncode == 0, proc.stderr
    assert re.search(rf"^wrote {re.escape(str(path))} \(\d+ KiB\): humidity, pressure, temp per sensor, last 1h, "
                     r"mean per 10s$", proc.stdout, re.M), proc.stdout
    assert_png(path)


def assert_png(path: Path) -> None:
    """A valid PNG of a real size, with plotted (coloured) pixels, not a blank canvas."""
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    pixels = matplotlib.image.imread(str(path))
    height, width = pixels.shape[:2]
    assert width >= 800 and height >= 600
    rgb = pixels[..., :3]
    coloured = ((rgb.max(axis=2) - rgb.min(axis=2)) > 0.25).sum()  # not white, grey or black
    assert coloured > 200, coloured


@pytest.mark.parametrize(("args", "message"), [
    (["--type", "co2"], "error: unknown type 'co2': the data has humidity, pressure, temp"),
    (["--sensor", "nobody"], "error: no readings of --sensor nobody in the last 1h"),
    (["--since", "1m", "--sensor", "old-1"], "error: no readings of --sensor old-1 in the last 1m"),
])
def test_bad_input_against_real_data(filled, args, message):
    proc = show(filled, *args)
    assert proc.returncode == 1 and proc.stderr.startswith(message), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stdout == ""


def test_no_data_yet(filled):
    proc = show(filled, db="show_empty_" + uuid.uuid4().hex[:8])  # a database that does not exist (yet)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: no readings in InfluxDB {filled[0].url}, database show_empty_"), proc.stderr
    assert "yet" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def _fmt(value: float) -> str:
    from ops import show as view

    return view.format_value(value)
