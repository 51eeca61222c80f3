"""`./iot show` without a stack: Grafana's macro expansion (ops/dashboards.py), the drawing (sparkline,
ages, values, groups, the screen) and the task's answers to bad input, run as a real subprocess.

The numbers against real data are tests/integration/test_show_influxdb.py (real influxd and api) and
tests/e2e/test_stack.py (the real Compose stack)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ops import dashboards as dash
from ops import show

ROOT = Path(__file__).resolve().parents[2]

NOW = datetime(2026, 12, 3, 7, 0, 0, tzinfo=UTC)


# -- Grafana's macros ------------------------------------------------------------------------------------
def test_macro_expansion_matches_grafanas_forms():
    q = ('SELECT x FROM "data" WHERE "type" =~ /^$type$/ AND "sensor_id" =~ /^${sensor:regex}$/ AND $timeFilter '
         'GROUP BY time($__interval) LIMIT $__interval_ms')
    got = dash.expand(q, {"type": ["temp", "a.b"], "sensor": "All"}, "time >= now() - 1h")
    assert got == ('SELECT x FROM "data" WHERE "type" =~ /^(temp|a\\.b)$/ AND "sensor_id" =~ /^.*$/ AND '
                   'time >= now() - 1h GROUP BY time(10s) LIMIT 10000')
    assert dash.expand("/^$sensor$/", {"sensor": ["x/y"]}, "") == "/^x\\/y$/"
    assert dash.expand("/^$sensor$/", {"sensor": [dash.Raw("tls-.*")]}, "") == "/^tls-.*$/"  # a glob: not escaped
    assert dash.expand("/^$type$/ $types", {"type": ["t"], "types": ["u"]}, "") == "/^t$/ u"  # longest name first


def test_an_unexpanded_macro_is_an_error():
    with pytest.raises(dash.DashboardError, match=r"\$district"):
        dash.expand('WHERE "district" =~ /^$district$/', {"type": ["temp"]}, "")


def test_time_filters_and_interval_as_grafana():
    assert dash.relative_time_filter("6h") == "time >= now() - 6h"
    assert dash.absolute_time_filter(3600, now_ms=10_000_000) == "time > 6400000ms and time < 10060000ms"
    assert dash.interval_ms(3_600_000, 400) == 10_000        # 9 s rounds to 10 s
    assert dash.interval_ms(3_600_000, 4000) == 1000         # 0.9 s: the datasource's 1 s floor
    assert dash.interval_ms(7 * 86_400_000, 400) == 1_800_000  # 25.2 min -> 30 min
    assert dash.interval_ms(86_400_000, 400) == 300_000      # 3.6 min -> 5 min
    assert [dash.influx_duration(ms) for ms in (10_000, 60_000, 1_200_000, 3_600_000, 86_400_000, 1500)] == [
        "10s", "1m", "20m", "1h", "1d", "1500ms"]


def test_every_panel_show_uses_exists_in_the_committed_dashboards():
    """ops/show.py names panels by title: a renamed panel must fail here, not on a user's screen."""
    q = show.Queries(show.Options())
    first = q.first()
    assert set(first) == {"types", "active", "in_range", "per_minute", "latest", "district_types"}
    assert not [s for s in first.values() if re.search(r"\$[A-Za-z_{]", s)]
    assert 'top("max", "sensor_id", 5)' in q.top("temp") and '"type" =~ /^temp$/' in q.top("temp")
    assert 'top("max", "sensor_id", 10)' in dash.panel_query(dash.dashboard("iot-overview"), show.TOP)
    stations, latest = q.district("humidity")
    assert '"district"' in stations and "/^humidity$/" in latest and "LIMIT 1" in latest
    assert "GROUP BY time(10s)" in q.per_sensor("temp", q.plot_interval_ms())
    with pytest.raises(dash.DashboardError, match="no panel"):
        dash.panel_query(dash.dashboard("iot-overview"), "No such panel")


def test_the_options_become_grafana_variables():
    q = show.Queries(show.Options(types=("temp",), sensors=("tls-*", "sim-0001")))
    latest = q.first()["latest"]
    assert '"type" =~ /^temp$/' in latest
    assert '"sensor_id" =~ /^(tls\\-.*|sim-0001)$/' in latest  # fnmatch escapes -, Grafana does not
    assert '"type" =~ /^.*$/' in show.Queries(show.Options()).first()["latest"]  # no --type: All


# -- input -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "seconds"), [("1h", 3600), ("15m", 900), ("2d", 172800), ("1w", 604800), ("90s", 90)])
def test_since_takes_influxql_durations(text, seconds):
    assert show.parse_since(text) == seconds


@pytest.mark.parametrize("text", ["", "1", "h", "0h", "-1h", "1.5h", "1y", "1h30m", "30s", "1h; DROP DATABASE iot"])
def test_a_bad_since_is_refused(text):
    with pytest.raises(show.ShowError, match="--since"):
        show.parse_since(text)


def test_top_and_names_are_checked():
    assert show.parse_top("7") == 7
    for bad in ("0", "101", "x", "2.5"):
        with pytest.raises(show.ShowError, match="--top"):
            show.parse_top(bad)
    assert show.split_names(["temp,humidity", "temp", " pressure "], "type") == ["temp", "humidity", "pressure"]
    for bad in ("a b", "x/", "t$", "a|b", "(x)"):
        with pytest.raises(show.ShowError, match="--type"):
            show.split_names([bad], "type")


def test_png_path_is_checked_before_any_query(tmp_path):
    assert show.check_png_path(tmp_path / "a.png") == tmp_path / "a.png"
    for bad, why in ((tmp_path / "no" / "a.png", "no such directory"), (tmp_path / "a.jpg", "end in .png"),
                     (tmp_path, "end in .png")):
        with pytest.raises(show.ShowError, match=why):
            show.check_png_path(bad)
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.geteuid() != 0:  # root writes anywhere
            with pytest.raises(show.ShowError, match="not writable"):
                show.check_png_path(locked / "a.png")
    finally:
        locked.chmod(0o700)


# -- drawing ---------------------------------------------------------------------------------------------
def test_sparkline_scales_to_the_max_and_marks_empty_minutes():
    assert show.sparkline([0, 1, 2, 4, 8]) == "·▁▂▄█"
    assert show.sparkline([5, 5]) == "██"
    assert show.sparkline([0, 0]) == "··"
    assert show.sparkline([1, 100]) == "▁█"  # any reading shows
    assert show.sparkline([]) == ""


def test_resample_keeps_the_mean_per_column():
    assert show.resample([1, 2, 3], 10) == [1.0, 2.0, 3.0]
    assert show.resample([1, 1, 3, 3, 5, 5], 3) == [1.0, 3.0, 5.0]
    assert len(show.resample(list(range(1441)), 60)) == 60
    assert show.resample([1], 0) == []


def test_values_ages_and_groups():
    assert [show.format_value(v) for v in (21.5, 1013.25, 45.0, -50.0, 0.001, -0.001, 3.14159)] == [
        "21.5", "1013.25", "45", "-50", "0", "0", "3.14"]
    assert [show.format_age(s) for s in (0, 59, 61, 3599, 3600, 90061, -3)] == [
        "0s", "59s", "1m01s", "59m59s", "1h00m", "1d01h", "0s"]
    assert [show.group_of(s) for s in ("sim-0001", "tls-63-life-soufflot", "e2e-0001", "graf_1", "123", "abc")] == [
        "sim-", "tls-", "e2e-", "graf_", "123", "abc"]


def test_times_from_influxdb_are_read_to_the_microsecond():
    assert show.parse_time("2026-12-03T07:00:01.123456789Z") == datetime(2026, 12, 3, 7, 0, 1, 123456, tzinfo=UTC)
    assert show.parse_time("2026-12-03T07:00:01Z") == datetime(2026, 12, 3, 7, 0, 1, tzinfo=UTC)
    with pytest.raises(show.ShowError):
        show.parse_time("yesterday")


def dev_like_snapshot() -> show.Snapshot:
    """The dev stack's shape: 10 simulator devices (temp, humidity) and 77 fleet stations (some with pressure)."""
    latest = {f"sim-{i:04d}": {"temp": (20.0 + i, NOW - timedelta(seconds=i)), "humidity": (40.0 + i, NOW)}
              for i in range(1, 11)}
    for i in range(77):
        sid = f"tls-{i}" if i % 3 else f"tls-{i}-life-debut-soufflot"
        per = {"temp": (10.0 + i / 10, NOW - timedelta(seconds=2)), "humidity": (60.0 + i / 4, NOW)}
        if i % 5 == 0:
            per["pressure"] = (1000.0 + i, NOW)
        latest[sid] = per
    latest["sim-0003"]["temp"] = (23.0, NOW - timedelta(minutes=42))  # the stale one
    latest["sim-0003"]["humidity"] = (43.0, NOW - timedelta(minutes=42))
    types = ["humidity", "pressure", "temp"]
    top = {t: sorted(((v[t][0], s) for s, v in latest.items() if t in v), reverse=True)[:5] for t in types}
    return show.Snapshot(where="the dev stack (iot-dev), InfluxDB database iot", since="1h", now=NOW, types=types,
                         active=86, in_range=123456, per_minute={t: [0] * 20 + [100 + k for k in range(41)] for t in types},
                         latest=latest, top=top,
                         districts={"temp": {"districts": 34, "stations": 77, "low": 9.5, "high": 14.25}})


def test_the_dev_screen_is_one_screen_and_plain_without_colour():
    text = show.render_screen(dev_like_snapshot(), show.Style(False), width=100)
    lines = text.splitlines()
    assert len(lines) <= 45, text
    assert max(len(line) for line in lines) <= 100, text
    assert "\033" not in text
    assert "not Grafana" in lines[1]
    assert re.search(r"active sensors \(last 5 min\)\s+86\s+sensors in range\s+87\s+readings in range\s+123,456", text)
    # the 10 simulator devices listed, the 77 stations summarised with their min and max per type
    assert all(f"sim-{i:04d}" in text for i in range(1, 11))
    assert "tls-41 " not in text and "tls-* (77 sensors)" in text
    tls_min = next(line for line in lines if "tls-* (77 sensors)" in line).split()
    assert tls_min[-5:] == ["min", "60", "1000", "10", "0s"]
    assert next(line for line in lines if line.strip().startswith("max")).split()[1:] == ["79", "1075", "17.6", "0s"]
    assert "--sensor 'tls-*' lists them" in text
    assert re.search(r"sim-0003\s+43\s+-\s+23\s+42m00s", text)  # its age, from the newest of its types
    # one sparkline per type, the last full minute's count at the end
    for t in ("humidity", "pressure", "temp"):
        assert re.search(rf"^  {t}\s+·+[▁▂▃▄▅▆▇█]+\s+139/min$", text, re.M), text
    assert "temp      34 districts, 77 stations reporting, district means 9.5 to 14.25" in text
    top_head = lines.index(next(line for line in lines if line.startswith("top 5 per type")))
    assert lines[top_head + 1].split() == ["humidity", "pressure", "temp"]
    assert lines[top_head + 2].split() == ["tls-76", "79", "tls-75-life-debut-sou…", "1075", "sim-0010", "30"]


def test_the_screen_fits_a_narrow_terminal_and_lists_everything_when_asked():
    snap = dev_like_snapshot()
    narrow = show.render_screen(snap, show.Style(False), width=70)
    tables = [line for line in narrow.splitlines() if line.startswith("  ") and "summarised" not in line
              and "districts," not in line]  # prose lines may wrap; the tables and sparklines may not
    assert max(len(line) for line in tables) <= 70, narrow
    listed = show.render_screen(snap, show.Style(False), width=100, list_all=True)
    assert "tls-41 " in listed and "summarised" not in listed


def test_colour_only_on_a_tty_and_never_with_no_color():
    class Tty:
        def isatty(self):
            return True

    assert show.use_colour(Tty(), {}) is True
    assert show.use_colour(Tty(), {"NO_COLOR": "1"}) is False
    assert show.use_colour(Tty(), {"NO_COLOR": ""}) is True  # no-color.org: set and non-empty
    assert show.use_colour(open(os.devnull, "w"), {}) is False  # noqa: SIM115 - closed by the GC
    coloured = show.render_screen(dev_like_snapshot(), show.Style(True), width=100)
    assert "\033[1m" in coloured and "\033[33m" in coloured  # bold headings, the stale age in yellow


# -- the task, as a person runs it -------------------------------------------------------------------
DOCKER = textwrap.dedent("""\
    #!{python}
    import json, os, sys
    with open(os.environ["REC_LOG"], "a") as log:
        log.write(json.dumps(sys.argv[1:]) + "\\n")
    # `docker ps -q ...`: no container runs
    """)


def task(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", "show", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "NO_COLOR": "1", **(env or {})}, check=False)


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "5x"], "error: --since 5x: use a duration like 15m, 1h"),
    (["--top", "abc"], "error: --top abc: a whole number from 1 to 100"),
    (["--type", "a b"], "error: --type 'a b': only letters"),
    (["--png", "/nonexistent-dir/x.png"], "error: --png /nonexistent-dir/x.png: no such directory"),
    (["--png", "plot.jpg"], "error: --png plot.jpg: the file name must end in .png"),
    (["--env", "nope"], "error: unknown env 'nope'"),
    (["--set", "influxdb.nokey=1"], "error: "),
    (["--influxdb-url", "ftp://x"], "error: --influxdb-url ftp://x: expected http://HOST:PORT"),
    (["--influxdb-url", "http://127.0.0.1:1"], "error: cannot reach InfluxDB at http://127.0.0.1:1"),
])
def test_bad_input_is_one_line_and_a_non_zero_exit(args, message):
    proc = task(*args)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.startswith(message), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_no_stack_running_says_how_to_start_it(stand_ins):
    calls = stand_ins(DOCKER, "docker")
    proc = task()
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: the dev stack is not running: ./iot up"
    assert calls() == [["ps", "-q", "--filter", "label=com.docker.compose.project=iot-dev", "--filter",
                        "label=com.docker.compose.service=api", "--filter", "status=running"]]
    proc = task("--env", "test")
    assert proc.stderr.strip() == "error: the test stack is not running: ./iot up --env test"


def test_dry_prints_the_commands_and_runs_nothing(stand_ins, tmp_path):
    calls = stand_ins(DOCKER, "docker")
    proc = subprocess.run([sys.executable, "-m", "invoke", "--dry", "show", "--type", "temp", "--top", "3",
                           "--png", str(tmp_path / "p.png")], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert calls() == []
    out = proc.stdout
    assert out.startswith("would run: docker ps -q --filter label=com.docker.compose.project=iot-dev")
    assert "docker exec -i <that container> python3 -c" in out and "as iot_reader" in out
    assert 'top("max", "sensor_id", 3)' in out and '"type" =~ /^temp$/' in out
    assert f"would write {tmp_path / 'p.png'}" in out and not (tmp_path / "p.png").exists()
    direct = subprocess.run([sys.executable, "-m", "invoke", "--dry", "show", "--influxdb-url", "http://127.0.0.1:1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert direct.returncode == 0 and direct.stdout.startswith("would run: POST http://127.0.0.1:1/query db=iot")
