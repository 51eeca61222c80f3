"""What the test suite needs on this machine besides .venv, and installing it (`./iot test`, `.ci/run`).

The tests run real programs: Debian's influxd, mosquitto, nginx, wrk, headless Chromium and a Docker
engine. `NEEDS` says, for each program, its Debian package, why the tests need it, which test files use
it (so that a run installs what its files need) and which of them cannot run at all without it (those
are skipped, or failed in CI, when it is missing; the others check it in a fixture or themselves).

- `needed(paths)`: the programs the test files under PATHS use; `docker_needed(paths)`: the e2e layer.
- `ensure(paths, dry, require, progress)`: install the missing ones with apt-get (as root, or through
  sudo) like `./iot up` installs the Docker engine (ops/engine.py), then the engine for the e2e layer.
  Where that cannot be done (not Debian, no root), `require` (CI: IOT_REQUIRE_DOCKER=1 or CI=true) makes
  it one error line naming the missing commands; otherwise it says which tests will be skipped and why.
- `for_test(path)`, `reason(need)`: what tests/conftest.py skips (or fails), with which line.
"""
from __future__ import annotations

import fnmatch
import os
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ops import engine

Progress = Callable[[str], None]

ROOT = Path(__file__).resolve().parent.parent
E2E = "tests/e2e/*"


@dataclass(frozen=True)
class Need:
    command: str
    package: str  # Debian's
    why: str
    used_by: tuple[str, ...]  # test files (globs from the repository root) that run it
    skips: tuple[str, ...] | None = None  # those that cannot run at all without it (default: used_by)
    paths: tuple[str, ...] = ()  # where Debian puts it when PATH lacks that folder (/usr/sbin for non-root)

    def found(self) -> str | None:
        return shutil.which(self.command) or next((p for p in self.paths if os.access(p, os.X_OK)), None)

    @property
    def skipped(self) -> tuple[str, ...]:
        return self.used_by if self.skips is None else self.skips


BENCH = "tests/integration/test_bench.py"
PAGE = "tests/integration/test_web_page.py"
NEEDS = (
    # the `influxdb` and `private_influxdb` fixtures (tests/conftest.py) check influxd: a test that reads an
    # InfluxDB given by INFLUXDB_URL runs without it
    Need("influxd", "influxdb", "InfluxDB 1.x behind the integration tests (one on a free port per run)",
         ("tests/integration/*.py",), (BENCH,)),
    Need("mosquitto", "mosquitto", "the MQTT broker of the historian, processor, fleet and page tests",
         ("tests/integration/test_mqtt_*.py", PAGE, BENCH), paths=("/usr/sbin/mosquitto",)),
    Need("mosquitto_pub", "mosquitto-clients", "the publisher of ./iot bench's mqtt scenario", (BENCH,)),
    Need("wrk", "wrk", "the load generator of ./iot bench", (BENCH,)),
    Need("node", "nodejs", "the course's Node.js collector, a baseline of ./iot bench", (BENCH,)),
    Need("npm", "npm", "installs that collector's four packages from its lock (npm ci)", (BENCH,)),
    Need("nginx", "nginx-light", "the live page's server (and the syntax check of its configuration)",
         ("tests/unit/test_web_entrypoint.py", PAGE), (PAGE,), ("/usr/sbin/nginx",)),
    Need("chromium", "chromium", "the headless browser that loads the live page", (PAGE,)),
    Need("chromedriver", "chromium-driver", "Selenium's driver for that browser (Debian's: no download)", (PAGE,)),
)
BY_COMMAND = {need.command: need for need in NEEDS}


def say(message: str) -> None:
    print(f"test: {message}", file=sys.stderr, flush=True)


def required(environ: dict | None = None) -> bool:
    """In CI a missing program fails the run instead of skipping tests (IOT_REQUIRE_DOCKER=1, or CI=true)."""
    environ = os.environ if environ is None else environ
    return environ.get("IOT_REQUIRE_DOCKER") == "1" or environ.get("CI", "").lower() in ("1", "true")


def test_files(paths: Iterable[str], root: Path = ROOT) -> list[str]:
    """The test files under PATHS (folders or files, from ROOT), as paths from ROOT."""
    found: list[str] = []
    for path in paths:
        full = root / path
        files = sorted(full.rglob("test_*.py")) if full.is_dir() else [full]
        found += [f.relative_to(root).as_posix() for f in files]
    return found


def _matches(files: Iterable[str], patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(f, p) for f in files for p in patterns)


def needed(paths: Iterable[str], root: Path = ROOT) -> list[Need]:
    files = test_files(paths, root)
    return [n for n in NEEDS if _matches(files, n.used_by)]


def docker_needed(paths: Iterable[str], root: Path = ROOT) -> bool:
    return _matches(test_files(paths, root), (E2E,))


def reason(need: Need) -> str:
    return (f"{need.command} is not installed ({need.why}): `./iot test` installs Debian's {need.package} "
            f"when run as root, or run: apt-get install {need.package}")


def for_test(path: Path, root: Path = ROOT) -> list[Need]:
    """The needs the test file PATH cannot run at all without."""
    try:
        rel = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return []
    return [n for n in NEEDS if _matches([rel], n.skipped)]


def _list(needs: list[Need]) -> str:
    return ", ".join(f"{n.command} ({n.package})" for n in needs)


def ensure(paths: Iterable[str], dry: bool = False, require: bool | None = None, progress: Progress = say,
           root: Path = ROOT) -> list[Need]:
    """Install what the tests under PATHS need and lack; returns what is still missing (skipped tests).

    dry=True only says what it would install. Raises engine.EngineError (one line, the missing commands
    named) when something cannot be installed and `require` (default: `required()`) is set."""
    paths = list(paths)
    require = required() if require is None else require
    lacking = [n for n in needed(paths, root) if not n.found()]
    packages = list(dict.fromkeys(n.package for n in lacking))
    present = [n.command for n in needed(paths, root) if n not in lacking]
    if present:
        progress(f"present: {', '.join(present)}")
    for need in lacking:
        progress(f"{need.command} is missing: {need.why} (Debian's {need.package})")
    if lacking:
        try:  # dry: the same apt-get commands, echoed as `would run:` (and recorded) instead of run
            engine.ensure_debian_packages(packages, progress, what=" ".join(packages), dry=dry)
        except engine.EngineError as exc:
            if dry:
                progress(f"the real run would stop here: {exc}")
            elif require:
                raise engine.EngineError(f"the tests need {_list(lacking)}, which could not be installed: {exc}") \
                    from None
            else:
                progress(f"could not install them: {exc}")
        if not dry:
            lacking = [n for n in lacking if not n.found()]
            for need in lacking:
                progress(f"skipping the tests that need {need.command}")
    if docker_needed(paths, root):
        _ensure_engine(dry, require, progress)
    return lacking


def _ensure_engine(dry: bool, require: bool, progress: Progress) -> None:
    """The e2e layer's Docker engine, as `./iot up` gets it; without one the e2e tests skip (fail in CI)."""
    if dry:
        engine.ensure_engine(dry=True)
        return
    try:
        engine.ensure_engine()
    except engine.EngineError as exc:
        if require:
            raise
        progress(f"no Docker engine ({exc}): the e2e tests will be skipped")
