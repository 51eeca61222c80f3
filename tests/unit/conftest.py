"""Fixtures shared by the unit tests of the render (tests/unit/test_render.py, test_security_render.py)."""
from __future__ import annotations

import shutil

import pytest

from ops import render


@pytest.fixture
def values_dir(tmp_path, monkeypatch):
    """A copy of stacks/values that a test may break."""
    folder = tmp_path / "values"
    shutil.copytree(render.VALUES_DIR, folder)
    monkeypatch.setattr(render, "VALUES_DIR", folder)
    return folder
