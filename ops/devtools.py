"""The development tools (requirements-dev.lock: pytest, ruff and the linters, matplotlib, selenium, ...),
installed into the running venv by the tasks that use them, when they first run or when the lock changed.

`./iot` itself installs only requirements.lock, what running the stack needs: a learner's `./iot up`
does not download a few hundred MB of test and plot tools. Both locks pin every transitive dependency with
its hashes (ops/locks.py makes them from requirements.txt and requirements-dev.txt), so pip runs with
--require-hashes. A stamp beside the venv (the lock's sha256, as ./iot does for its own) makes the check
instant after the first time.
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from ops.errors import OpsError

ROOT = Path(__file__).resolve().parent.parent
DEV = "requirements-dev.lock"
# The lock holds every package it installs (the runtime lock's too, at the same versions): its content is
# what the stamp follows. A change of requirements-dev.txt not yet locked is tests/unit/test_locks.py's to catch.
INPUTS = (DEV,)
STAMP = ".requirements-dev.sha256"

Progress = Callable[[str], None]


class DevToolsError(OpsError):
    """requirements-dev.lock could not be installed: one line, exit 1."""


def say(message: str) -> None:
    print(f"iot: {message}", file=sys.stderr, flush=True)


def digest(root: Path = ROOT) -> str:
    h = hashlib.sha256()
    for name in INPUTS:
        h.update((root / name).read_bytes())
    return h.hexdigest()


def _in_venv() -> bool:
    return sys.prefix != sys.base_prefix


def stamp_path() -> Path:
    return Path(sys.prefix) / STAMP


def install_command() -> list[str]:
    return [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--require-hashes",
            "-r", str(ROOT / DEV)]


def ensure(why: str, dry: bool = False, progress: Progress = say, root: Path = ROOT) -> bool:
    """Install requirements-dev.lock into this venv unless its stamp says it is there. True when it installed
    (or, dry, would). Outside a venv it installs nothing: it says what to run instead."""
    want = digest(root)
    stamp = stamp_path()
    if stamp.exists() and stamp.read_text().strip() == want:
        return False
    cmd = install_command()
    if not _in_venv():
        raise DevToolsError(f"{why} needs the tools of {DEV}, and this Python is not a venv: run it through ./iot "
                            f"(which makes .venv), or install them yourself: "
                            f"{' '.join(cmd[:2])} -m pip install --require-hashes -r {DEV}")
    progress(f"{why} needs the development tools of {DEV}: not in {sys.prefix} yet, or the file changed")
    if dry:
        progress(f"would run: {' '.join(cmd)}")
        return True
    progress(f"installing them (pip; a minute or two the first time): {' '.join(cmd)}")
    proc = subprocess.run(cmd, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=root)
    if proc.returncode != 0:
        tail = " | ".join(proc.stdout.strip().splitlines()[-3:])
        raise DevToolsError(f"pip could not install {DEV} (exit {proc.returncode}): {tail}")
    stamp.write_text(want + "\n")
    return True
