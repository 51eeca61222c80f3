"""The hash-locked requirements: requirements.lock (what ./iot installs) and requirements-dev.lock (what
ops/devtools.py installs), generated from the human-edited requirements.txt and requirements-dev.txt.

Every transitive dependency is pinned and every distribution file of each pinned version carries its
sha256, so `pip install --require-hashes` installs exactly the reviewed files, on any CPU and Python 3.11+.
`./iot deps.lock` regenerates them (uv pip compile, installed at UV_VERSION into a venv of its own beside
.venv's packages, never into the locks); tests/unit/test_locks.py fails when a lock is stale.
"""
from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

from ops.errors import OpsError

ROOT = Path(__file__).resolve().parent.parent
# lock -> its input; the dev lock is constrained by the runtime lock (-c), so the packages both hold have
# one version: installing the dev lock over the runtime lock changes nothing the stack runs.
LOCKS = {"requirements.lock": "requirements.txt", "requirements-dev.lock": "requirements-dev.txt"}
RUNTIME, DEV = LOCKS
UV_VERSION = "0.13.9"
REGENERATE = "./iot deps.lock"

# Written above uv's own header: which tool and why, and what to edit instead of the lock.
HEADER = """\
# Generated from {input} by `{regenerate}`: edit {input} (the human-edited pins), not this file.
# Every transitive dependency pinned, with the sha256 of every distribution file of each pinned version:
# ./iot and ops/devtools.py install it with `pip install --require-hashes`.
# Made with `uv pip compile --universal` (uv {uv}) rather than pip-compile: pip-compile resolves for the
# machine it runs on (one numpy for this Python, no Windows-only packages), uv resolves once for every
# platform and Python {python}+ and writes environment markers where they differ.
"""

Progress = Callable[[str], None]
Run = Callable[[list[str]], None]


class LockError(OpsError):
    """The locks could not be regenerated (no venv, uv not installable, a resolution failed)."""


def say(message: str) -> None:
    print(f"iot: {message}", file=sys.stderr, flush=True)


def python_minimum(root: Path = ROOT) -> str:
    """The oldest Python the project supports, from the root pyproject's requires-python (">=3.11")."""
    spec = tomllib.loads((root / "pyproject.toml").read_text())["project"]["requires-python"]
    match = re.fullmatch(r">=\s*(\d+\.\d+)", spec.strip())
    if not match:
        raise LockError(f"pyproject.toml's requires-python {spec!r} is not '>=X.Y': the locks need a minimum Python")
    return match.group(1)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def input_pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line of a requirements file and the files it includes (-r)."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].split(";", 1)[0].strip()  # a comment, an environment marker
        if line.startswith("-r "):
            pins.update(input_pins(path.parent / line[3:].strip()))
        elif m := re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*(\S+)", line):
            pins[normalize(m.group(1))] = m.group(2)
    return pins


def lock_entries(text: str) -> list[tuple[str, str, int]]:
    """(name, version, number of sha256 hashes) of each entry of a lock; a name pinned per Python version
    (numpy ; python_full_version < '3.12') has one entry per version."""
    entries: list[tuple[str, str, int]] = []
    for line in text.splitlines():
        if m := re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line):
            entries.append((normalize(m.group(1)), m.group(2), 0))
        elif entries and re.match(r"\s+--hash=sha256:[0-9a-f]{64}", line):
            name, version, hashes = entries[-1]
            entries[-1] = (name, version, hashes + 1)
    return entries


def problems(root: Path = ROOT) -> list[str]:
    """What makes a lock stale or unusable, one line each (empty: the locks are current). No network."""
    found: list[str] = []
    versions: dict[str, dict[str, set[str]]] = {}
    for lock, source in LOCKS.items():
        if not (root / lock).is_file():
            found.append(f"{lock} is missing: run {REGENERATE}")
            continue
        text = (root / lock).read_text()
        if f"Generated from {source} by" not in text:
            found.append(f"{lock} does not name its input {source}: run {REGENERATE}")
        entries = lock_entries(text)
        versions[lock] = {}
        for name, version, hashes in entries:
            versions[lock].setdefault(name, set()).add(version)
            if hashes == 0:
                found.append(f"{lock}: {name}=={version} has no --hash: run {REGENERATE}")
        for name, version in input_pins(root / source).items():
            locked = versions[lock].get(name)
            if locked != {version}:
                got = ", ".join(sorted(locked)) if locked else "nothing"
                found.append(f"{source} pins {name}=={version}, {lock} has {got}: run {REGENERATE}")
    if len(versions) == len(LOCKS):
        for name, locked in versions[RUNTIME].items():
            if versions[DEV].get(name) != locked:
                found.append(f"{name}: {RUNTIME} has {', '.join(sorted(locked))}, {DEV} has "
                             f"{', '.join(sorted(versions[DEV].get(name, {'nothing'})))}: run {REGENERATE}")
    return found


def uv_venv() -> Path:
    """Where `./iot deps.lock` installs uv: a venv of its own inside .venv, named by its version."""
    return Path(sys.prefix) / f"uv-{UV_VERSION}"


def uv_install_commands() -> list[list[str]]:
    venv = uv_venv()
    return [[sys.executable, "-m", "venv", str(venv)],
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             f"uv=={UV_VERSION}"]]


def compile_commands(upgrade: bool = False, root: Path = ROOT) -> list[list[str]]:
    """The uv pip compile of each lock, run from the repository's root (relative paths: the locks' `# via`
    lines and header stay the same on every machine). Without --upgrade uv keeps the versions already in the
    lock unless an input's pin changed; with it, every unpinned (transitive) dependency moves to its newest."""
    uv = str(uv_venv() / "bin" / "uv")
    common = ["pip", "compile", "--quiet", "--universal", "--python-version", python_minimum(root), "--generate-hashes",
              "--custom-compile-command", REGENERATE, *(["--upgrade"] if upgrade else [])]
    return [[uv, *common, LOCKS[RUNTIME], "-o", RUNTIME],
            [uv, *common, LOCKS[DEV], "-c", RUNTIME, "-o", DEV]]


def add_header(lock: Path, root: Path = ROOT) -> None:
    """Put HEADER above uv's output (uv rewrites the whole file on each run)."""
    text = lock.read_text()
    uv_part = text[text.index("# This file was autogenerated by uv"):] if "# This file was autogenerated by uv" in text else text
    header = HEADER.format(input=LOCKS[lock.name], regenerate=REGENERATE, uv=UV_VERSION, python=python_minimum(root))
    lock.write_text(header + uv_part)


def regenerate(run: Run, dry: bool = False, upgrade: bool = False, progress: Progress = say, root: Path = ROOT) -> None:
    """Install uv if this venv lacks it, then compile both locks. run executes (or, dry, prints) one command."""
    if sys.prefix == sys.base_prefix:
        raise LockError(f"{REGENERATE} installs uv into a venv of its own inside the running one, and this Python "
                        f"is not a venv: run it through ./iot")
    if not (uv_venv() / "bin" / "uv").is_file():
        progress(f"uv {UV_VERSION} is not in {uv_venv()} yet: {'would install' if dry else 'installing'} it there "
                 f"(the locks' tool, not one of their packages)")
        for cmd in uv_install_commands():
            run(cmd)
    for cmd, lock in zip(compile_commands(upgrade, root), LOCKS, strict=True):
        run(cmd)
        if not dry:
            add_header(root / lock, root)
    if not dry:
        left = problems(root)
        if left:
            raise LockError(f"the new locks are still inconsistent: {left[0]}")
        progress(f"wrote {' and '.join(LOCKS)}; review and commit them with their inputs")
