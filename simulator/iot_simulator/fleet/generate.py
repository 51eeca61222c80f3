"""Build stations.json (the fleet's 77 stations) from Toulouse Métropole's open data.

    python -m iot_simulator.fleet.generate [--source DIR] [--output FILE] [--check]

Reads DIR/stations-meteo-en-place.json and DIR/quartiers-de-democratie-locale.geojson (default: the
repository's ../shared/data/toulouse) and places each station in its district by point in polygon (ray
casting over the 20 MultiPolygons, holes included). A station outside Toulouse's districts gets its
commune's slug. Plain Python, no dependency: the simulator image never runs it, it ships its output.
The output is derived from ODbL data and stays under ODbL, with the attribution inside it.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import unicodedata
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "stations.json"
# simulator/iot_simulator/fleet -> the repository's parent holds shared/data (the course's layout).
DEFAULT_SOURCE = HERE.parents[3] / "shared" / "data" / "toulouse"
STATIONS_FILE = "stations-meteo-en-place.json"
DISTRICTS_FILE = "quartiers-de-democratie-locale.geojson"
ATTRIBUTION = "Données: Toulouse Métropole, open data, ODbL"
# Typos of the source's `ville` (the commune is Saint-Alban, Haute-Garonne); the slug follows the fix.
COMMUNE_FIXES = {"Saintt Alban": "Saint-Alban"}
TYPES = {"ISS": ["temp", "humidity", "pressure"], "TH": ["temp", "humidity"]}


def slug(name: str) -> str:
    """`L'Union` -> `l-union`, `Saint Jory` -> `saint-jory`: lowercase ASCII, `-` for the rest."""
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_.lower()).strip("-")


def sensor_ids(stations_raw: list[dict]) -> dict[str, str]:
    """id_nom -> sensor id. `tls-{id_numero}`, except that id_numero is not unique in the source (77
    stations, 61 numbers: a full ISS station and its TH satellites share one, e.g. 63 is
    LIFE-marechal-juin (ISS), LIFE-soufflot and LIFE-debut-soufflot (TH)). The ISS of such a group
    keeps `tls-{n}`; each other member gets `tls-{n}-{place}`, its place from id_nom, slugged."""
    by_number: dict[int, list[dict]] = {}
    for raw in stations_raw:
        by_number.setdefault(int(raw["id_numero"]), []).append(raw)
    ids: dict[str, str] = {}
    for number, group in by_number.items():
        main = group[0] if len(group) == 1 else next((r for r in group if r["type_stati"] == "ISS"), None)
        for raw in group:
            if raw is main:
                ids[raw["id_nom"]] = f"tls-{number}"
            else:
                place = re.sub(r"^\d+-station-meteo-", "", raw["id_nom"])
                commune = slug(COMMUNE_FIXES.get(raw["ville"], raw["ville"]))
                place = slug(place)
                place = place[len(commune) + 1:] if place.startswith(commune + "-") else place
                ids[raw["id_nom"]] = f"tls-{number}-{place}"
    if len(set(ids.values())) != len(stations_raw):
        raise ValueError("sensor ids are not unique (same id_nom twice?)")
    return ids


def _in_ring(lon: float, lat: float, ring: list) -> bool:
    """Ray casting: a horizontal ray from the point crosses the ring's edges an odd number of times."""
    inside = False
    j = len(ring) - 1
    for i in range(len(ring)):
        xi, yi = ring[i][0], ring[i][1]
        xj, yj = ring[j][0], ring[j][1]
        if (yi > lat) != (yj > lat) and lon < (xj - xi) * (lat - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def in_multipolygon(lon: float, lat: float, coordinates: list) -> bool:
    """GeoJSON MultiPolygon coordinates: inside one polygon's outer ring and none of its holes."""
    for polygon in coordinates:
        outer, *holes = polygon
        if _in_ring(lon, lat, outer) and not any(_in_ring(lon, lat, h) for h in holes):
            return True
    return False


def load_districts(geojson: dict) -> list[dict]:
    """[{id: q01, name, coordinates (MultiPolygon)}] sorted by id."""
    out = []
    for feature in geojson["features"]:
        props, geom = feature["properties"], feature["geometry"]
        coords = geom["coordinates"] if geom["type"] == "MultiPolygon" else [geom["coordinates"]]
        out.append({"id": f"q{int(props['quartier']):02d}", "name": " ".join(props["nom_quartier"].split()),
                    "coordinates": coords})
    return sorted(out, key=lambda d: d["id"])


def district_of(lon: float, lat: float, districts: list[dict]) -> dict | None:
    return next((d for d in districts if in_multipolygon(lon, lat, d["coordinates"])), None)


def build(source: Path) -> dict:
    stations_raw = json.loads((source / STATIONS_FILE).read_text(encoding="utf-8"))
    districts = load_districts(json.loads((source / DISTRICTS_FILE).read_text(encoding="utf-8")))
    ids = sensor_ids(stations_raw)
    stations = []
    for raw in sorted(stations_raw, key=lambda s: (int(s["id_numero"]), s["type_stati"] != "ISS", s["id_nom"])):
        lon, lat = float(raw["longitude"]), float(raw["latitude"])
        commune = COMMUNE_FIXES.get(raw["ville"], raw["ville"])
        district = district_of(lon, lat, districts)
        if district is None and commune == "Toulouse":
            raise ValueError(f"station {raw['id_numero']} ({raw['id_nom']}) is in Toulouse but in no district")
        kind = raw["type_stati"]
        if kind not in TYPES:
            raise ValueError(f"station {raw['id_numero']}: unknown type_stati {kind!r}")
        stations.append({
            "sensor_id": ids[raw["id_nom"]],
            "id_numero": int(raw["id_numero"]),
            "name": raw["id_nom"],
            "commune": commune,
            "district": district["id"] if district else slug(commune),
            "district_name": district["name"] if district else commune,
            "lat": lat,
            "lon": lon,
            "altitude": raw["altitude"],
            "kind": kind,
            "types": TYPES[kind],
            "installation": raw.get("installation"),
            # What the value model uses for the urban heat island: local climate zone (Stewart & Oke,
            # 1-10 built, 11+ land cover) and the built / tall-vegetation areas around the station (m²).
            "lcz": raw.get("lcz"),
            "bati": raw.get("bati"),
            "veg_haute": raw.get("veg_haute"),
        })
    return {
        "attribution": ATTRIBUTION,
        "license": "ODbL-1.0",
        "source": ["Toulouse Métropole open data: Stations météo en place",
                   "Toulouse Métropole open data: Quartiers de démocratie locale"],
        "generated_by": "simulator/iot_simulator/fleet/generate.py (point in polygon, ray casting)",
        "districts": {d["id"]: d["name"] for d in districts},
        "stations": stations,
    }


def render(doc: dict) -> str:
    return json.dumps(doc, ensure_ascii=False, indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iot_simulator.fleet.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help=f"data folder (default {DEFAULT_SOURCE})")
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"where to write (default {OUTPUT})")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if OUTPUT differs")
    args = parser.parse_args(argv)
    try:
        text = render(build(args.source))
    except (OSError, ValueError, KeyError) as exc:
        print(f"generate: error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        same = args.output.exists() and args.output.read_text(encoding="utf-8") == text
        print(f"{args.output}: {'up to date' if same else 'differs from the generator output'}")
        return 0 if same else 1
    args.output.write_text(text, encoding="utf-8")
    doc = json.loads(text)
    print(f"{args.output}: {len(doc['stations'])} stations, {len(doc['districts'])} districts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
