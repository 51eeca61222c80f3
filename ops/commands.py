"""Command lines the tasks run, built in one place so that --dry prints exactly what would run."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable  # the .venv interpreter ./iot runs invoke with


def pytest(paths: list[str], keyword: str | None = None, verbose: bool = False,
           exitfirst: bool = False) -> str:
    args = [PYTHON, "-m", "pytest", *paths]
    if keyword:
        args += ["-k", keyword]
    if verbose:
        args.append("-v")
    if exitfirst:
        args.append("-x")
    return shlex.join(args)


def python_module(module: str, args: list[str]) -> str:
    return shlex.join([PYTHON, "-m", module, *args])


def ruff(paths: list[str]) -> str:
    return shlex.join([PYTHON, "-m", "ruff", "check", *paths])
