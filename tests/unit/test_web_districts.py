"""web/site/districts.json is exactly what web/generate.py makes from Toulouse Métropole's open data, so
the committed map can be trusted and regenerated (python3 web/generate.py)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location("web_generate", ROOT / "web" / "generate.py")
generate = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(generate)


def test_committed_districts_json_is_the_generators_output():
    source = generate.DEFAULT_SOURCE
    if not (source / generate.GEOJSON).is_file():
        pytest.skip(f"{source / generate.GEOJSON} is absent (the shared data sits next to the repository): "
                    "cannot regenerate the map to compare")
    committed = (ROOT / "web" / "site" / "districts.json").read_text(encoding="utf-8")
    assert generate.render(generate.build(source)) == committed, "run: python3 web/generate.py"


def test_simplification_keeps_the_shape():
    # A square with a tiny notch (dropped) and a big one (kept); the ring stays closed by SVG's Z.
    ring = [(0, 0), (5, 0.1), (10, 0), (10, 10), (5, 6), (0, 10), (0, 0)]
    assert generate.simplify_ring(ring, 0.6) == [(0, 0), (10, 0), (10, 10), (5, 6), (0, 10)]
    assert generate.svg_path([[(0.04, 1.25), (2, 3)]]) == "M0,1.2L2,3Z"
