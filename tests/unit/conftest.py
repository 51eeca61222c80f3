"""Fixtures shared by unit tests: a breakable copy of the values (test_render.py, test_security_render.py)
and recording stand-ins for commands on PATH (test_cluster_commands.py, test_cluster_registry.py)."""
from __future__ import annotations

import json
import os
import shutil
import stat
import sys

import pytest

from ops import values


@pytest.fixture
def values_dir(tmp_path, monkeypatch):
    """A copy of stacks/values that a test may break."""
    folder = tmp_path / "values"
    shutil.copytree(values.VALUES_DIR, folder)
    monkeypatch.setattr(values, "VALUES_DIR", folder)  # where ops/values.py reads them
    return folder


@pytest.fixture
def stand_ins(tmp_path, monkeypatch):
    """`stand_ins(script, "docker", ...)` puts executables running SCRIPT (a Python program template
    with `{python}`; it appends its argv as a JSON line to $REC_LOG) first on PATH, and returns a
    function that reads the calls made so far."""
    def install(script: str, *names: str):
        bindir = tmp_path / "bin"
        bindir.mkdir(exist_ok=True)
        for name in names:
            path = bindir / name
            path.write_text(script.format(python=sys.executable))
            path.chmod(path.stat().st_mode | stat.S_IEXEC)
        log = tmp_path / "calls.jsonl"
        log.touch()
        monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("REC_LOG", str(log))
        return lambda: [json.loads(line) for line in log.read_text().splitlines()]
    return install
