"""Command lines the tasks run, built in one place so that --dry prints exactly what would run."""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable  # the .venv interpreter ./iot runs invoke with


def pytest(paths: list[str], keyword: str | None = None, verbose: bool = False,
           exitfirst: bool = False, jobs: int = 1) -> str:
    args = [PYTHON, "-m", "pytest", *paths]
    if jobs > 1:
        # pytest-xdist: tests/conftest.py and tests/e2e/conftest.py put each test in a group (a module, or
        # the e2e tests that share env test and the swarm); the groups keep the order of the run, whose
        # first is the longest (the serial e2e chain), instead of xdist's by-size order.
        args += ["-n", str(jobs), "--dist", "loadgroup", "--no-loadscope-reorder"]
    if keyword:
        args += ["-k", keyword]
    if verbose:
        args.append("-v")
    if exitfirst:
        args.append("-x")
    return shlex.join(args)


def python_module(module: str, args: list[str]) -> str:
    return shlex.join([PYTHON, "-m", module, *args])


def command_line(argv: list[str]) -> str:
    return shlex.join(argv)


def ruff(paths: list[str]) -> str:
    return shlex.join([PYTHON, "-m", "ruff", "check", *paths])


# -- linters of the CI configuration (`invoke lint`, tests/unit/test_lint_configs.py) -----------------
# The binaries ship inside their PyPI wheels (requirements-dev.txt) and land next to the interpreter.
# The files they check are found, not listed: a new Dockerfile, shell script or workflow is covered.
TOOLS_BIN = Path(sys.executable).parent  # .venv/bin (not resolved: the venv's python is a symlink)
HADOLINT_CONFIG = "ci/hadolint.yaml"
WORKFLOWS_DIR = ".github/workflows"
# Never searched: VCS data, virtualenvs (also recognised by their pyvenv.cfg), caches, rendered output,
# generated secrets.
SKIP_DIRS = frozenset({".git", ".venv", "venv", "node_modules", "__pycache__", ".pytest_cache", ".ruff_cache",
                       ".hypothesis", ".mypy_cache", "build", "secrets"})
SHELLS = ("sh", "bash", "dash", "ksh")


def tool(name: str) -> str:
    """The linter NAME from the venv's bin folder, else whatever PATH has."""
    candidate = TOOLS_BIN / name
    return str(candidate) if candidate.is_file() else name


def repo_files(root: Path = ROOT) -> list[Path]:
    """Every file of the work tree under ROOT, relative to it, sorted; SKIP_DIRS and virtualenvs left out."""
    found = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not (here / d / "pyvenv.cfg").exists()
                   and not (here / d).is_symlink()]
        found += [(here / f).relative_to(root) for f in files if (here / f).is_file() and not (here / f).is_symlink()]
    return sorted(found)


def is_dockerfile(path: Path) -> bool:
    name = path.name
    return name == "Dockerfile" or name.startswith("Dockerfile.") or name.lower().endswith(".dockerfile")


def is_shell_script(path: Path) -> bool:
    """A shell shebang (`#!/bin/sh`, `#!/usr/bin/env bash`, …) or a .sh/.bash name."""
    if path.suffix in (".sh", ".bash"):
        return True
    try:
        with open(ROOT / path, "rb") as f:
            first = f.readline(200)
    except OSError:
        return False
    if not first.startswith(b"#!"):
        return False
    words = first[2:].decode("utf-8", "replace").split()
    if words and words[0].endswith("/env"):
        words = [w for w in words[1:] if not w.startswith("-")]
    return bool(words) and Path(words[0]).name in SHELLS


def dockerfiles() -> list[str]:
    return [str(p) for p in repo_files() if is_dockerfile(p)]


def shell_scripts() -> list[str]:
    return [str(p) for p in repo_files() if is_shell_script(p)]


def workflows() -> list[str]:
    folder = ROOT / WORKFLOWS_DIR
    if not folder.is_dir():
        return []
    return sorted(str(p.relative_to(ROOT)) for p in folder.iterdir() if p.suffix in (".yml", ".yaml"))


def actionlint_args(files: list[str]) -> list[str]:
    # shellcheck: the pinned one checks `run:` scripts too; pyflakes: off (ruff is our Python linter,
    # and it is not installed, which would make the result depend on the machine).
    return [tool("actionlint"), "-no-color", f"-shellcheck={tool('shellcheck')}", "-pyflakes=", *files]


def hadolint_args(files: list[str]) -> list[str]:
    # An explicit config: a user's ~/.config/hadolint.yaml must not change the verdict.
    return [tool("hadolint"), "--config", HADOLINT_CONFIG, "--no-color", *files]


def shellcheck_args(files: list[str]) -> list[str]:
    return [tool("shellcheck"), "--external-sources", *files]


def config_linters() -> list[tuple[str, list[str]]]:
    """(name, argv) of each linter of the CI configuration, with the files it checks (run from ROOT)."""
    plan = [("actionlint", actionlint_args, workflows()), ("hadolint", hadolint_args, dockerfiles()),
            ("shellcheck", shellcheck_args, shell_scripts())]
    return [(name, build(files)) for name, build, files in plan if files]
