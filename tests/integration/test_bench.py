"""`invoke bench` must keep working: a short run of a few scenarios with the real api, influxd and wrk.

This checks the tool, not the figures (those are machine-dependent and live in docs/benchmarks.md):
every scenario ran without errors, every acknowledged single reading was found in InfluxDB, and the
ratios against the same-run baselines were computed.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ops import bench  # noqa: E402


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (.ci/run installs it)")
def test_bench_runs_and_reports_ratios(tmp_path):
    out = tmp_path / "results.json"
    summary = bench.run(seconds=1, workers=1, connections=(8,), batch_sizes=(100,), out_file=out,
                        progress=lambda _msg: None)
    names = [r["name"] for r in summary["results"]]
    assert names == ["api single", "api batch 100", "influxdb /write batch 100",
                     "api single, one write per request"]
    for r in summary["results"]:
        assert r["errors"] == 0, r
        assert r["readings_per_s"] > 0, r
    assert all(r["stored_checked"] for r in summary["results"] if r["readings_per_request"] == 1)
    assert set(summary["ratios"]) == {"api_batch_100_vs_influxdb"}  # no 64-connection pair in this run
    assert json.loads(out.read_text()) == summary
    assert "readings/s" in bench.table(summary)
