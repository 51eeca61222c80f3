"""The development tools come with the tasks that use them (ops/devtools.py), not with ./iot's first run."""
from __future__ import annotations

import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from ops import devtools

ROOT = Path(__file__).resolve().parents[2]
DEV_ONLY = ("pytest", "matplotlib", "selenium", "schemathesis", "hypothesis", "ruff")


def _names(path: Path) -> set[str]:
    return {m.lower() for m in re.findall(r"^([A-Za-z0-9_.-]+)==", path.read_text(), re.M)}


def test_the_stack_requirements_hold_no_test_or_plot_tool_and_dev_includes_them():
    base, dev = _names(ROOT / "requirements.txt"), _names(ROOT / "requirements-dev.txt")
    assert not base & set(DEV_ONLY), base & set(DEV_ONLY)
    assert set(DEV_ONLY) <= dev and "invoke" in base
    assert re.search(r"^-r requirements\.txt$", (ROOT / "requirements-dev.txt").read_text(), re.M)


def test_the_stamp_follows_the_dev_lock(tmp_path):
    """requirements-dev.lock holds every package it installs (tests/unit/test_locks.py: it is current)."""
    for name in devtools.INPUTS:
        shutil.copy(ROOT / name, tmp_path / name)
    before = devtools.digest(tmp_path)
    assert before == devtools.digest(ROOT)
    with open(tmp_path / devtools.DEV, "a") as f:
        f.write("# changed\n")
    assert devtools.digest(tmp_path) != before


def test_a_current_stamp_installs_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(devtools, "stamp_path", lambda: tmp_path / devtools.STAMP)
    (tmp_path / devtools.STAMP).write_text(devtools.digest() + "\n")
    monkeypatch.setattr(devtools.runner.subprocess, "Popen", lambda *a, **k: pytest.fail(f"ran {a}"))
    assert devtools.ensure("./iot test") is False


def test_dry_says_the_install_and_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(devtools, "stamp_path", lambda: tmp_path / devtools.STAMP)
    monkeypatch.setattr(devtools, "_in_venv", lambda: True)
    monkeypatch.setattr(devtools.runner.subprocess, "Popen", lambda *a, **k: pytest.fail(f"ran {a}"))
    said: list[str] = []
    assert devtools.ensure("./iot lint", dry=True, progress=said.append) is True
    assert said[-1] == "would run: " + shlex.join(devtools.install_command())
    assert "./iot lint needs the development tools" in said[0]
    assert not (tmp_path / devtools.STAMP).exists()


def test_outside_a_venv_it_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setattr(devtools, "stamp_path", lambda: tmp_path / devtools.STAMP)
    monkeypatch.setattr(sys, "base_prefix", sys.prefix)
    with pytest.raises(devtools.DevToolsError,
                       match=r"not a venv: run it through ./iot .*pip install --require-hashes -r requirements-dev.lock"):
        devtools.ensure("./iot bench")


def test_a_failed_install_is_one_line_and_no_stamp(tmp_path, monkeypatch):
    monkeypatch.setattr(devtools, "stamp_path", lambda: tmp_path / devtools.STAMP)
    monkeypatch.setattr(devtools, "_in_venv", lambda: True)
    monkeypatch.setattr(devtools, "install_command",
                        lambda: [sys.executable, "-c", "print('ERROR: No matching distribution'); raise SystemExit(1)"])
    with pytest.raises(devtools.DevToolsError, match=r"failed \(exit 1\):\s+ERROR: No matching distribution"):
        devtools.ensure("./iot test", progress=lambda _: None)
    assert not (tmp_path / devtools.STAMP).exists()
