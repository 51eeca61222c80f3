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
import sys
from collections.abc import Callable
from pathlib import Path

from ops import run as runner
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


class DevToolsCommandError(runner.CommandError, DevToolsError):
    """pip failed: its command, status and last lines."""


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
    if not dry:
        progress("installing them (pip; a minute or two the first time)")
    # ops.run: `$ CMD` (or `would run: CMD`, recorded); a failure shows pip's last lines
    runner.run(cmd, progress, dry=dry, timeout=1800, merge_stderr=True, error=DevToolsCommandError)
    if dry:
        return True
    stamp.write_text(want + "\n")
    return True
