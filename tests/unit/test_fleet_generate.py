"""stations.json: what the generator writes from ../shared/data/toulouse, committed as is, with each
station in its district (ray casting) and the facts the data README states."""
from __future__ import annotations

import json
import re

import pytest
from iot_simulator.fleet import generate
from iot_simulator.fleet.run import STATIONS_JSON

DOC = json.loads(STATIONS_JSON.read_text(encoding="utf-8"))
SENSOR_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")  # the api's rule (iot_api.readings)


def test_committed_json_is_what_the_generator_writes():
    if not (generate.DEFAULT_SOURCE / generate.STATIONS_FILE).exists():
        print(f"skipped: {generate.DEFAULT_SOURCE} is absent (the shared data sits next to the repository)")
        pytest.skip(f"no source data at {generate.DEFAULT_SOURCE}")
    assert STATIONS_JSON.read_text(encoding="utf-8") == generate.render(generate.build(generate.DEFAULT_SOURCE)), \
        "stations.json is stale: run python -m iot_simulator.fleet.generate"


def test_every_district_has_a_station_and_saint_michel_holds_15():
    districts = [s["district"] for s in DOC["stations"]]
    assert sorted(DOC["districts"]) == [f"q{i:02d}" for i in range(1, 21)]
    assert all(districts.count(q) >= 1 for q in DOC["districts"])
    assert districts.count("q05") == 15  # Saint-Michel / Île du Ramier: the LIFE sensors (data README)
    assert "Saint-Michel" in DOC["districts"]["q05"] and "Île du Ramier" in DOC["districts"]["q05"]


def test_stations_facts_and_attribution():
    stations = DOC["stations"]
    assert DOC["attribution"] == "Données: Toulouse Métropole, open data, ODbL"
    assert len(stations) == 77
    toulouse = [s for s in stations if s["commune"] == "Toulouse"]
    others = [s for s in stations if s["commune"] != "Toulouse"]
    assert len(toulouse) == 57 and all(re.fullmatch(r"q(0[1-9]|1\d|20)", s["district"]) for s in toulouse)
    # Outside Toulouse: the commune's slug (14 communes), which must not look like a district id.
    assert len(others) == 20 and len({s["district"] for s in others}) == 14
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", s["district"]) and s["district_name"] == s["commune"] for s in others)
    ids = [s["sensor_id"] for s in stations]
    assert len(set(ids)) == 77 and all(SENSOR_ID_RE.match(i) for i in ids)
    assert all(i == f"tls-{s['id_numero']}" or i.startswith(f"tls-{s['id_numero']}-") for i, s in zip(ids, stations, strict=True))
    for s in stations:
        assert s["types"] == {"ISS": ["temp", "humidity", "pressure"], "TH": ["temp", "humidity"]}[s["kind"]]
        assert 43.4 < s["lat"] < 43.8 and 1.1 < s["lon"] < 1.6 and 100 < s["altitude"] < 300
    assert sum(s["kind"] == "ISS" for s in stations) == 61


def test_ray_casting_honours_holes_and_every_polygon():
    square = [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]
    hole = [[4, 4], [6, 4], [6, 6], [4, 6], [4, 4]]
    far = [[20, 20], [30, 20], [25, 30], [20, 20]]
    multi = [[square, hole], [far]]
    assert generate.in_multipolygon(1, 1, multi)
    assert not generate.in_multipolygon(5, 5, multi)  # in the hole
    assert generate.in_multipolygon(25, 22, multi)  # the second polygon
    assert not generate.in_multipolygon(15, 5, multi) and not generate.in_multipolygon(-1, 5, multi)
    concave = [[[[0, 0], [10, 0], [10, 10], [5, 2], [0, 10], [0, 0]]]]  # a V: its notch is outside
    assert generate.in_multipolygon(1, 5, concave) and not generate.in_multipolygon(5, 8, concave)


def test_district_of_a_real_point():
    # The Capitole (43.6045 N, 1.4440 E) is in district 1, "Capitole / Arnaud Bernard / Carmes".
    if not (generate.DEFAULT_SOURCE / generate.DISTRICTS_FILE).exists():
        pytest.skip(f"no source data at {generate.DEFAULT_SOURCE}")
    districts = generate.load_districts(json.loads((generate.DEFAULT_SOURCE / generate.DISTRICTS_FILE).read_text()))
    assert generate.district_of(1.4440, 43.6045, districts)["id"] == "q01"
    assert generate.district_of(1.3635, 43.6290, districts) is None  # Blagnac's airport: not Toulouse


@pytest.mark.parametrize(("name", "slug"), [("L'Union", "l-union"), ("Saint Jory", "saint-jory"),
                                            ("Saint-Alban", "saint-alban"), ("Île du Ramier", "ile-du-ramier")])
def test_commune_slugs(name, slug):
    assert generate.slug(name) == slug


def test_generator_check_and_bad_source(tmp_path, capsys):
    assert generate.main(["--source", str(tmp_path), "--output", str(tmp_path / "out.json")]) == 2
    assert "generate: error" in capsys.readouterr().err
    if (generate.DEFAULT_SOURCE / generate.STATIONS_FILE).exists():
        stale = tmp_path / "stale.json"
        stale.write_text("{}\n")
        assert generate.main(["--check", "--output", str(stale)]) == 1
        assert generate.main(["--check"]) == 0
