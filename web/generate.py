#!/usr/bin/env python3
"""Write web/site/districts.json, the map of the live page, from Toulouse Métropole's open data.

    python3 web/generate.py [--source ../shared/data/toulouse] [--output web/site/districts.json]

Reads the 20 *quartiers de démocratie locale* (WGS84 GeoJSON), projects them (equirectangular around
the city's mean latitude: at this size it is indistinguishable from a conformal projection), simplifies
each ring (Douglas-Peucker, a fraction of a pixel) and writes SVG path data with ids q01..q20, the
districts' names, label points and the projection's parameters, so the page places a station's lat/lon
with the same formula:

    x = x0 + (lon - lon0) * kx        y = y0 - (lat - lat0) * ky

Plain Python (standard library only) and deterministic: tests/unit/test_web_districts.py regenerates the
file and compares it with the committed one. The output is derived from ODbL data: it carries the
attribution the source's README requires, and the page shows it.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parent.parent / "shared" / "data" / "toulouse"  # ../shared/data/toulouse from the repository
DEFAULT_OUTPUT = HERE / "site" / "districts.json"
GEOJSON = "quartiers-de-democratie-locale.geojson"
ATTRIBUTION = "Données: Toulouse Métropole, open data, ODbL"
WIDTH = 1000.0   # SVG user units across the districts' extent
MARGIN = 10.0    # around it, so border strokes are not clipped
TOLERANCE = 0.6  # Douglas-Peucker, in user units (~0.06% of the width: invisible, ~3x fewer vertices)


def _perpendicular(p, a, b) -> float:
    (x, y), (x1, y1), (x2, y2) = p, a, b
    dx, dy = x2 - x1, y2 - y1
    if dx == 0 and dy == 0:
        return math.hypot(x - x1, y - y1)
    return abs(dy * x - dx * y + x2 * y1 - y2 * x1) / math.hypot(dx, dy)


def simplify(points: list[tuple[float, float]], tolerance: float) -> list[tuple[float, float]]:
    """Douglas-Peucker, iterative (no recursion limit on long rings); keeps both ends."""
    if len(points) < 3:
        return list(points)
    keep = [False] * len(points)
    keep[0] = keep[-1] = True
    stack = [(0, len(points) - 1)]
    while stack:
        first, last = stack.pop()
        best, index = 0.0, None
        for i in range(first + 1, last):
            d = _perpendicular(points[i], points[first], points[last])
            if d > best:
                best, index = d, i
        if index is not None and best > tolerance:
            keep[index] = True
            stack += [(first, index), (index, last)]
    return [p for p, k in zip(points, keep, strict=True) if k]


def simplify_ring(ring: list[tuple[float, float]], tolerance: float) -> list[tuple[float, float]]:
    """A closed ring: split at its first point and at the point farthest from it, so both halves are open
    lines; the result has no closing duplicate (SVG's Z closes it)."""
    if ring[0] == ring[-1]:
        ring = ring[:-1]
    if len(ring) < 4:
        return ring
    far = max(range(len(ring)), key=lambda i: math.dist(ring[0], ring[i]))
    first = simplify(ring[:far + 1], tolerance)
    second = simplify(ring[far:] + [ring[0]], tolerance)
    return first[:-1] + second[:-1]


def _fmt(v: float) -> str:
    text = f"{v:.1f}"
    return text[:-2] if text.endswith(".0") else text


def svg_path(rings: list[list[tuple[float, float]]]) -> str:
    parts = []
    for ring in rings:
        parts.append("M" + "L".join(f"{_fmt(x)},{_fmt(y)}" for x, y in ring) + "Z")
    return "".join(parts)


def polygons_of(geometry: dict) -> list[list[list[list[float]]]]:
    if geometry["type"] == "Polygon":
        return [geometry["coordinates"]]
    if geometry["type"] == "MultiPolygon":
        return geometry["coordinates"]
    raise ValueError(f"unexpected geometry {geometry['type']!r}")


def build(source: Path) -> dict:
    collection = json.loads((source / GEOJSON).read_text(encoding="utf-8"))
    features = collection["features"]
    if len(features) != 20:
        raise ValueError(f"{GEOJSON}: {len(features)} districts, expected 20")
    lons, lats = [], []
    for feature in features:
        for polygon in polygons_of(feature["geometry"]):
            for ring in polygon:
                lons += [p[0] for p in ring]
                lats += [p[1] for p in ring]
    lon0, lat0 = min(lons), min(lats)
    # Equirectangular around the mean latitude: one degree of longitude is cos(lat) of one of latitude.
    aspect = math.cos(math.radians((min(lats) + max(lats)) / 2))
    kx = WIDTH / (max(lons) - lon0)
    ky = kx / aspect
    height = (max(lats) - lat0) * ky
    projection = {"kind": "equirectangular", "lon0": lon0, "lat0": lat0, "kx": round(kx, 6), "ky": round(ky, 6),
                  "x0": MARGIN, "y0": round(MARGIN + height, 3)}

    def project(lon: float, lat: float) -> tuple[float, float]:
        return (projection["x0"] + (lon - lon0) * projection["kx"], projection["y0"] - (lat - lat0) * projection["ky"])

    districts = []
    vertices = 0
    for feature in features:
        props = feature["properties"]
        number = int(props["quartier"])
        rings = []
        for polygon in polygons_of(feature["geometry"]):
            for ring in polygon:
                simplified = simplify_ring([project(lon, lat) for lon, lat, *_ in ring], TOLERANCE)
                if len(simplified) >= 3:
                    rings.append(simplified)
                    vertices += len(simplified)
        label = props["geo_point_2d"]
        lx, ly = project(label["lon"], label["lat"])
        districts.append({
            "id": f"q{number:02d}",
            "number": number,
            "name": " ".join(props["nom_quartier"].split()),  # the source has stray double spaces
            "label": {"lat": round(label["lat"], 6), "lon": round(label["lon"], 6), "x": round(lx, 1), "y": round(ly, 1)},
            "path": svg_path(rings),
        })
    districts.sort(key=lambda d: d["number"])
    if [d["number"] for d in districts] != list(range(1, 21)):
        raise ValueError(f"{GEOJSON}: district numbers are not 1..20")
    return {
        "attribution": ATTRIBUTION,
        "license": "ODbL-1.0",
        "source": f"Toulouse Métropole open data, {GEOJSON} (generated by web/generate.py)",
        "viewBox": [0, 0, round(WIDTH + 2 * MARGIN, 1), round(height + 2 * MARGIN, 1)],
        "projection": projection,
        "vertices": vertices,
        "districts": districts,
    }


def render(data: dict) -> str:
    """The file's text: one district per line, so a change shows as a readable diff."""
    head = {k: v for k, v in data.items() if k != "districts"}
    lines = [json.dumps(head, ensure_ascii=False)[:-1] + ', "districts": [']
    lines += [("  " + json.dumps(d, ensure_ascii=False) + ",") for d in data["districts"]]
    lines[-1] = lines[-1][:-1]
    lines.append("]}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder with the Toulouse open data")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the JSON file to write")
    args = parser.parse_args(argv)
    if not (args.source / GEOJSON).is_file():
        print(f"generate.py: {args.source / GEOJSON} not found (--source FOLDER)", file=sys.stderr)
        return 2
    data = build(args.source)
    args.output.write_text(render(data), encoding="utf-8")
    print(f"{args.output}: {len(data['districts'])} districts, {data['vertices']} vertices")
    return 0


if __name__ == "__main__":
    sys.exit(main())
