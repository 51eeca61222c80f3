"""The development tools (requirements-dev.txt: pytest, ruff and the linters, matplotlib, selenium, ...),
installed into the running venv by the tasks that use them, when they first run or when the file changed.

`./iot` itself installs only requirements.txt, what running the stack needs: a learner's `./iot up`
does not download a few hundred MB of test and plot tools. A stamp beside the venv (the sha256 of the
requirements files, as ./iot does for its own) makes the check instant after the first time.
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from ops.errors import OpsError

ROOT = Path(__file__).resolve().parent.parent
DEV = "requirements-dev.txt"
# requirements-dev.txt includes these (-r): a change of any of them is a change of what it installs.
INPUTS = (DEV, "requirements.txt", "api/requirements.txt", "simulator/requirements.txt")
STAMP = ".requirements-dev.sha256"

Progress = Callable[[str], None]


class DevToolsError(OpsError):
    """requirements-dev.txt could not be installed: one line, exit 1."""


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
    return [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(ROOT / DEV)]


def ensure(why: str, dry: bool = False, progress: Progress = say, root: Path = ROOT) -> bool:
    """Install requirements-dev.txt into this venv unless its stamp says it is there. True when it installed
    (or, dry, would). Outside a venv it installs nothing: it says what to run instead."""
    want = digest(root)
    stamp = stamp_path()
    if stamp.exists() and stamp.read_text().strip() == want:
        return False
    cmd = install_command()
    if not _in_venv():
        raise DevToolsError(f"{why} needs the tools of {DEV}, and this Python is not a venv: run it through ./iot "
                            f"(which makes .venv), or install them yourself: {' '.join(cmd[:2])} -m pip install -r {DEV}")
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
