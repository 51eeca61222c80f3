"""The fleet's value model: plausible ranges, the daily cycle's shape, urban heat, altitude, humidity
against temperature, pressure drift, faults, and determinism with a seed."""
from __future__ import annotations

import calendar
import json
import statistics

from iot_api import config as api_config
from iot_api.readings import Limits, parse_body
from iot_simulator.fleet import model
from iot_simulator.fleet.run import STATIONS_JSON

STATIONS = json.loads(STATIONS_JSON.read_text(encoding="utf-8"))["stations"]
BY_ID = {s["sensor_id"]: s for s in STATIONS}
JAN = calendar.timegm((2026, 1, 15, 0, 0, 0))
JUL = calendar.timegm((2026, 7, 15, 0, 0, 0))


def run(station: dict, start: float, seconds: float, step: float, seed=1, faults=False, weather=None):
    m = model.StationModel(station, weather or model.Weather(seed), seed, faults=faults)
    out = []
    t = start
    while t < start + seconds:
        out.append((t, m.readings(t)))
        t += step
    return out


def series(rows, kind):
    return [next(r.value for r in rs if r.type == kind) for _, rs in rows if rs]


def test_values_stay_plausible_over_a_year_for_every_station():
    weather = model.Weather(5)
    for st in STATIONS:
        rows = run(st, JAN, 365 * 86400, 86400 / 2.3, seed=5, weather=weather)  # every ~10 h: all hours, all seasons
        temps, hums = series(rows, "temp"), series(rows, "humidity")
        assert -12 < min(temps) and max(temps) < 43, (st["sensor_id"], min(temps), max(temps))
        assert 8 <= min(hums) and max(hums) <= 100
        if "pressure" in st["types"]:
            ps = series(rows, "pressure")
            assert 990 < min(ps) and max(ps) < 1037 and 1005 < statistics.mean(ps) < 1021


def test_daily_cycle_minimum_near_dawn_maximum_mid_afternoon_and_seasons():
    st = BY_ID["tls-42"]  # Compans-Caffarelli
    m = model.StationModel(st, model.Weather(1), 1, faults=False)
    for day in (JAN, JUL):
        # The model's temperature without noise, every 10 minutes of a day, in local solar hours.
        ts = [day + i * 600 for i in range(144)]
        temps = [m.temperature(t) for t in ts]
        hour = lambda t: model.solar_hour(t, st["lon"])  # noqa: E731
        coldest, warmest = hour(ts[temps.index(min(temps))]), hour(ts[temps.index(max(temps))])
        assert abs(coldest - model.dawn_hour(day)) < 1.0, coldest
        assert 14.0 < warmest < 16.0, warmest
    winter = statistics.mean(m.temperature(JAN + i * 3600) for i in range(24 * 7))
    summer = statistics.mean(m.temperature(JUL + i * 3600) for i in range(24 * 7))
    assert 1 < winter < 12 and 18 < summer < 29 and summer - winter > 10
    # Dawn itself moves with the season: later in winter.
    assert model.dawn_hour(JAN) > model.dawn_hour(JUL) + 2


def test_urban_heat_island_is_a_night_effect_and_trees_cool():
    city = dict(BY_ID["tls-42"], bati=100_000.0, veg_haute=5_000.0, lcz=2, altitude=150, sensor_id="a")
    forest = dict(city, bati=200.0, veg_haute=150_000.0, lcz=11, sensor_id="a")  # same id: same noise
    assert model.urban_heat(city) > 2.0 > 0 > model.urban_heat(forest)
    w = model.Weather(1)
    mc, mf = model.StationModel(city, w, 1), model.StationModel(forest, w, 1)
    night, afternoon = JUL + 3 * 3600, JUL + 15 * 3600  # solar time ~ UTC at 1.44 E (+6 min)
    night_gap = mc.temperature(night) - mf.temperature(night)
    day_gap = mc.temperature(afternoon) - mf.temperature(afternoon)
    assert night_gap > 2 * day_gap > 0


def test_lapse_rate_with_altitude():
    low = dict(BY_ID["tls-42"], altitude=150.0)
    high = dict(low, altitude=250.0)
    w = model.Weather(1)
    diff = model.StationModel(low, w, 1).temperature(JUL) - model.StationModel(high, w, 1).temperature(JUL)
    assert abs(diff - 0.65) < 1e-9  # 6.5 °C per km


def test_humidity_falls_when_temperature_rises():
    rows = run(BY_ID["tls-42"], JUL, 3 * 86400, 600)
    temps, hums = series(rows, "temp"), series(rows, "humidity")
    assert statistics.correlation(temps, hums) < -0.8
    assert max(hums) - min(hums) > 25  # a real daily swing, not noise


def test_pressure_drifts_slowly_near_1013():
    ps = series(run(BY_ID["tls-42"], JAN, 14 * 86400, 60), "pressure")
    steps = [abs(b - a) for a, b in zip(ps, ps[1:], strict=False)]
    assert max(steps) < 0.6  # a minute apart: noise and rounding only
    assert max(ps) - min(ps) > 4  # over two weeks the weather moves it
    assert abs(statistics.mean(ps) - 1013.25) < 10


def test_seed_makes_values_reproducible_and_station_independent():
    st = BY_ID["tls-63"]
    a = [(t, [(r.type, r.value) for r in rs]) for t, rs in run(st, JUL, 600, 1, seed=42, faults=True)]
    b = [(t, [(r.type, r.value) for r in rs]) for t, rs in run(st, JUL, 600, 1, seed=42, faults=True)]
    c = [(t, [(r.type, r.value) for r in rs]) for t, rs in run(st, JUL, 600, 1, seed=43, faults=True)]
    assert a == b and a != c
    # A station's values do not depend on which other stations run (its own generators).
    w = model.Weather(42)
    alone = model.StationModel(st, w, 42, faults=False)
    model.StationModel(BY_ID["tls-0"], w, 42, faults=False).readings(JUL)
    again = model.StationModel(st, w, 42, faults=False)
    assert [r.value for r in alone.readings(JUL)] == [r.value for r in again.readings(JUL)]


def test_faults_outages_and_glitches_and_no_faults():
    st = BY_ID["tls-42"]
    with_faults = run(st, JUL, 7 * 86400, 20, seed=9, faults=True)
    without = run(st, JUL, 7 * 86400, 20, seed=9, faults=False)
    silent = [t for t, rs in with_faults if not rs]
    glitches = [t for t, rs in with_faults for r in rs if r.type == "temp" and r.value == model.GLITCH_TEMP]
    assert all(rs for _, rs in without)
    assert all(r.value != model.GLITCH_TEMP for _, rs in without for r in rs)
    # About one outage of 2-7 minutes every 3 hours: 56 expected in a week, each 6-21 ticks of 20 s.
    outages = 1 + sum(1 for a, b in zip(silent, silent[1:], strict=False) if b - a > 20)
    assert 25 < outages < 100 and 6 * outages <= len(silent) <= 22 * outages
    assert 10 < len(glitches) < 60  # about 28 expected (one per 6 h)
    # Faults draw from their own generator: outside faults, the values are those of --no-faults.
    same = [(t, rs, rs2) for (t, rs), (_, rs2) in zip(with_faults, without, strict=True) if rs and t not in glitches]
    assert all([r.value for r in rs] == [r.value for r in rs2] for _, rs, rs2 in same)


def test_a_glitch_reading_is_still_a_valid_reading_for_the_api():
    # -50 °C is a sensor fault the fleet reproduces, not a malformed message: the api stores it.
    api = api_config.load({})
    limits = Limits(1, api.min_ts_ns, api.max_future_ns, api.retention_ns, api.measurement)
    body = json.dumps({"ts": "2026-07-15T03:00:00.000Z", "type": "temp", "value": model.GLITCH_TEMP,
                       "sensor_id": "tls-42"}).encode()
    assert parse_body(body, limits)[1] == 1
