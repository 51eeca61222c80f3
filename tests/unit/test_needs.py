"""What `./iot test` installs and how it splits the run (ops/needs.py, tests/worker_groups.py).

The programs the tests need are named once, with the test files that use them: every pattern must still
name a test file, a run installs only what its files need, a missing program is an apt-get line under
--dry and an error naming it in CI where it cannot be installed. The grouping keeps any e2e module it
does not know in the serial chain.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from worker_groups import E2E_OWN_RESOURCES, E2E_SERIAL, group_of, rank

from ops import commands, engine, needs

ROOT = Path(__file__).resolve().parents[2]
ALL_TESTS = needs.test_files(["tests"])


def absent(need: needs.Need) -> needs.Need:
    """The same need under a command name no machine has."""
    return dataclasses.replace(need, command=f"{need.command}-absent-{id(need)}", paths=())


@pytest.mark.parametrize("need", needs.NEEDS, ids=lambda n: n.command)
def test_every_pattern_names_a_test_file(need):
    def files(patterns):
        return {f for f in ALL_TESTS if any(fnmatch.fnmatchcase(f, p) for p in patterns)}

    for pattern in {*need.used_by, *need.skipped}:
        assert files([pattern]), f"{need.command}: {pattern} names no test file"
    assert files(need.skipped) <= files(need.used_by)  # a test it skips is one that installs it


def test_a_run_installs_what_its_files_need_and_only_that():
    assert [n.command for n in needs.needed(["tests/unit"])] == ["nginx"]
    quick = [n.command for n in needs.needed(["tests/unit", "tests/integration/test_simulator_api.py"])]
    assert quick == ["influxd", "nginx"]
    assert {n.command for n in needs.needed(["tests/integration"])} == {n.command for n in needs.NEEDS}
    assert needs.docker_needed(["tests/e2e"]) and not needs.docker_needed(["tests/unit", "tests/integration"])


def test_the_page_test_cannot_run_without_the_browser_and_the_broker():
    page = [n.command for n in needs.for_test(ROOT / "tests" / "integration" / "test_web_page.py")]
    assert page == ["mosquitto", "nginx", "chromium", "chromedriver"]
    assert needs.for_test(ROOT / "tests" / "unit" / "test_web_entrypoint.py") == []  # it skips its one test itself


def test_dry_names_the_missing_program_and_the_apt_get_line(monkeypatch):
    monkeypatch.setattr(needs, "NEEDS", tuple(absent(n) if n.command == "wrk" else n for n in needs.NEEDS))
    lines: list[str] = []
    left = needs.ensure(["tests/integration/test_bench.py"], dry=True, require=True, progress=lines.append)
    assert [n.package for n in left] == ["wrk"]
    assert any(line.startswith("wrk-absent-") and "(Debian's wrk)" in line for line in lines), lines
    from ops import engine

    prefix = engine.privilege_prefix() or []
    assert lines[-2:] == [f"would run: {shlex.join(cmd)}" for cmd in engine.apt_commands(["wrk"], prefix)], lines


def test_what_cannot_be_installed_is_an_error_in_ci_and_skipped_tests_elsewhere(monkeypatch):
    monkeypatch.setattr(needs, "NEEDS", tuple(absent(n) if n.command == "wrk" else n for n in needs.NEEDS))
    monkeypatch.setattr(engine, "is_debian_like", lambda os_release=None: False)
    with pytest.raises(engine.EngineError, match=r"the tests need wrk-absent-\d+ \(wrk\), which could not be installed"):
        needs.ensure(["tests/integration/test_bench.py"], require=True, progress=lambda _m: None)
    lines: list[str] = []
    left = needs.ensure(["tests/integration/test_bench.py"], require=False, progress=lines.append)
    assert [n.package for n in left] == ["wrk"] and lines[-1].startswith("skipping the tests that need wrk-absent-")


@pytest.mark.parametrize(("environ", "expected"), [({}, False), ({"IOT_REQUIRE_DOCKER": "1"}, True),
                                                    ({"CI": "true"}, True), ({"CI": "false"}, False)])
def test_ci_makes_a_missing_program_a_failure(environ, expected):
    assert needs.required(environ) is expected


def test_unknown_e2e_modules_join_the_serial_chain():
    assert group_of("tests/e2e/test_stack.py::test_autotest_passes") == E2E_SERIAL
    assert group_of("tests/e2e/test_new_module_nobody_checked.py::test_x[a::b]") == E2E_SERIAL
    for name in E2E_OWN_RESOURCES:
        assert (ROOT / "tests" / "e2e" / name).is_file(), name
        assert group_of(f"tests/e2e/{name}::test_x") == f"tests/e2e/{name}"
    assert group_of("tests/unit/test_render.py::test_y[dev]") == "tests/unit/test_render.py"
    assert group_of("tests/unit/test_dry_vs_run.py::test_x") == E2E_SERIAL  # it writes build/dev with overrides
    ids = ["tests/unit/test_a.py::t", "tests/e2e/test_images.py::t", "tests/e2e/test_zz_new.py::t"]
    assert sorted(ids, key=rank) == ["tests/e2e/test_zz_new.py::t", "tests/e2e/test_images.py::t", "tests/unit/test_a.py::t"]


def test_one_job_is_plain_pytest_and_two_are_grouped():
    assert "-n" not in commands.pytest(["tests/unit"], jobs=1).split()
    assert commands.pytest(["tests/e2e"], jobs=2).endswith("tests/e2e -n 2 --dist loadgroup --no-loadscope-reorder")


def test_dry_test_task_prints_what_it_would_run_and_runs_nothing():
    proc = subprocess.run([sys.executable, "-m", "invoke", "--dry", "test", "--layer", "quick", "--jobs", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    command = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout).strip()  # invoke's echo is in bold
    assert command == f"{sys.executable} -m pytest tests/unit tests/integration/test_simulator_api.py"
    assert "present: " in proc.stderr or "would run: apt-get" in proc.stderr
    bad = subprocess.run([sys.executable, "-m", "invoke", "test", "--layer", "nope"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip() == "unknown layer 'nope': use one of quick, unit, integration, e2e"
