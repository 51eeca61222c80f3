"""One error type for ops/: every exception class of every module of ops/ is an OpsError, which the tasks
catch alone (tasks/_common.clear_errors), so an ops error is one line and a non-zero exit, never a
traceback. Before, the tasks listed eight classes by hand and a module left off the list showed one."""
from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
from invoke import Exit

import ops
from ops.errors import OpsError
from tasks._common import clear_errors

ROOT = Path(__file__).resolve().parents[2]


def import_every_ops_module() -> list[str]:
    """Import every module and package under ops/; fail naming each one that cannot be imported (a missing
    optional dependency included: a module this test cannot load is a module whose errors it cannot check)."""
    failures: list[str] = []

    def say(name: str, exc: BaseException) -> None:
        if isinstance(exc, ModuleNotFoundError):
            failures.append(f"{name}: needs the module {exc.name!r}, not installed here (install requirements-dev.txt "
                            f"into .venv, as ./iot does on its first run)")
        else:
            failures.append(f"{name}: {type(exc).__name__}: {exc}")

    names = []
    # walk_packages imports each package to look inside it; without onerror it ignores one that fails.
    for info in pkgutil.walk_packages(ops.__path__, "ops.", onerror=lambda name: say(name, sys.exc_info()[1])):
        names.append(info.name)
        try:
            importlib.import_module(info.name)
        except Exception as exc:  # every failure is reported below, not only the first
            say(info.name, exc)
    if failures:
        pytest.fail("cannot import every module of ops/:\n" + "\n".join(sorted(set(failures))), pytrace=False)
    return names


def subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *subclasses(sub)}
    return found


def ops_exceptions() -> set[type]:
    """Every exception class defined in ops/ (at module level or not), once all its modules are imported."""
    return {cls for cls in subclasses(Exception) if cls.__module__ == "ops" or cls.__module__.startswith("ops.")}


def test_every_module_of_ops_is_found_and_imports():
    names = import_every_ops_module()
    # The walk reaches the subpackages, not only ops/*.py (a guard against a walk that finds nothing).
    assert {"ops.render", "ops.bench.common", "ops.show.query", "ops.errors"} <= set(names), names


def test_every_error_class_of_ops_is_an_ops_error():
    import_every_ops_module()
    found = ops_exceptions()
    # The classes the tasks once listed by hand and those they caught apart, at least, are found.
    assert {"RenderError", "SwarmError", "ClusterError", "BenchError", "OptionError", "ShowError",
            "DashboardError"} <= {cls.__name__ for cls in found}, found
    strays = sorted(f"{cls.__module__}.{cls.__qualname__}" for cls in found if not issubclass(cls, OpsError))
    assert not strays, (f"not derived from ops.errors.OpsError, so a task would show a traceback for them: {strays}")


@pytest.mark.parametrize(("error", "code"), [("ops.render.RenderError", 1), ("ops.bench.common.OptionError", 2)])
def test_clear_errors_gives_one_line_with_the_errors_exit_status(error, code):
    module, name = error.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    with pytest.raises(Exit) as caught, clear_errors():
        raise cls("the one line")
    assert (caught.value.message, caught.value.code) == ("error: the one line", code)


def test_a_task_failing_in_ops_prints_one_line_and_no_traceback():
    # render parses --set before it reads anything or asks Docker: it fails here in well under a second.
    proc = subprocess.run([sys.executable, "-m", "ops.cli", "render", "--set", "nokey"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"}, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.splitlines() == ["error: override 'nokey': expected KEY=VALUE, e.g. bases.mode=offline"], \
        proc.stderr
    assert proc.stdout == ""
