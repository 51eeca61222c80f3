"""The CI configuration passes its linters, and the workflow keeps its policy.

- actionlint on every workflow of .github/workflows, hadolint on every Dockerfile of the repository,
  shellcheck on every shell script (found by shebang): the same command lines as `./iot lint`
  (ops/commands.py), one test per file, each showing the tool's findings when it fails. The files are
  found, not listed, so a new Dockerfile or script is covered without touching this file.
- The policy of .github/workflows/*: every `uses:` pinned to a full commit SHA with its version in a
  comment, `timeout-minutes` on every job, read-only default permissions, write access only where a
  job needs it, superseded runs cancelled. The checker is shown to fail on workflows that break each rule.
- ci/image_meta.py: the image names and version the workflow builds come from the values files.

The linters' binaries come from their PyPI wheels (requirements-dev.txt), so this runs offline.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ops import commands

ROOT = commands.ROOT
WORKFLOWS = commands.workflows()
DOCKERFILES = commands.dockerfiles()
SCRIPTS = commands.shell_scripts()

SHA_PIN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(/[^@\s]+)?@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"#\s*v\d+(\.\d+)*\b")
# Jobs that may hold a write permission, and which one (anything else is read-only or none).
ALLOWED_WRITES = {"images": {"packages"}}


def run_linter(argv: list[str]) -> subprocess.CompletedProcess:
    binary = argv[0]
    if not Path(binary).is_file():
        pytest.fail(f"{Path(binary).name} is not installed next to {sys.executable}: install requirements-dev.txt "
                    "(./iot does it)")
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def assert_clean(result: subprocess.CompletedProcess, what: str) -> None:
    findings = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, f"{what}: exit {result.returncode}\n{findings}"


# -- the files are found --------------------------------------------------------------------------
def test_the_files_to_lint_are_found():
    """A discovery that quietly finds nothing would make every test below vacuous."""
    assert ".github/workflows/ci.yml" in WORKFLOWS
    assert {"api/Dockerfile", "simulator/Dockerfile", "device/Dockerfile", "images/python/Dockerfile",
            "images/influxdb/Dockerfile"} <= set(DOCKERFILES)
    assert {"iot", ".ci/run", "images/debian/rootfs/usr/sbin/policy-rc.d"} <= set(SCRIPTS)
    assert not any(p.startswith((".venv/", ".git/", "build/")) for p in DOCKERFILES + SCRIPTS)


def test_shell_scripts_are_recognised_by_shebang(tmp_path, monkeypatch):
    monkeypatch.setattr(commands, "ROOT", tmp_path)
    samples = {"a": "#!/bin/sh\n", "b": "#!/usr/bin/env bash\n", "c": "#!/usr/bin/env -S bash -e\n",
               "d": "#!/usr/bin/env python3\n", "e": "#!/bin/dash\n", "f": "no shebang\n", "g.sh": "echo\n",
               "h": "#!/usr/bin/bash -eu\n"}
    for name, text in samples.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "bin").write_bytes(b"\x7fELF\x00\x01")
    found = {p.name for p in commands.repo_files(tmp_path) if commands.is_shell_script(p)}
    assert found == {"a", "b", "c", "e", "g.sh", "h"}


def test_dockerfiles_are_recognised_by_name():
    names = ["Dockerfile", "Dockerfile.dev", "api.Dockerfile", "Dockerfile-notes.md", "dockerfile.txt"]
    assert [n for n in names if commands.is_dockerfile(Path(n))] == ["Dockerfile", "Dockerfile.dev", "api.Dockerfile"]


# -- the linters pass -----------------------------------------------------------------------------
@pytest.mark.parametrize("workflow", WORKFLOWS)
def test_actionlint(workflow):
    assert_clean(run_linter(commands.actionlint_args([workflow])), f"actionlint {workflow}")


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint(dockerfile):
    assert_clean(run_linter(commands.hadolint_args([dockerfile])), f"hadolint {dockerfile}")


@pytest.mark.parametrize("script", SCRIPTS)
def test_shellcheck(script):
    assert_clean(run_linter(commands.shellcheck_args([script])), f"shellcheck {script}")


def test_the_linters_can_fail(tmp_path):
    """Each linter, as invoked, reports a real mistake (else a green run would prove nothing)."""
    bad_dockerfile = tmp_path / "Dockerfile"
    bad_dockerfile.write_text("FROM debian:bookworm\nRUN apt-get update && apt-get install -y curl\n")
    bad_script = tmp_path / "script"
    bad_script.write_text("#!/bin/sh\nrm -rf $1/*\n")
    bad_workflow = tmp_path / "bad.yml"
    bad_workflow.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n"
                            "      - run: echo ${{ github.nope }}\n")
    for argv, expect in ((commands.hadolint_args([str(bad_dockerfile)]), "DL3008"),
                         (commands.shellcheck_args([str(bad_script)]), "SC2115"),
                         (commands.actionlint_args([str(bad_workflow)]), "nope")):
        result = run_linter(argv)
        assert result.returncode != 0, f"{Path(argv[0]).name} passed a bad file"
        assert expect in result.stdout + result.stderr


# -- the workflow's policy ------------------------------------------------------------------------
def _uses_lines(text: str) -> list[tuple[int, str, str]]:
    """(line number, reference, the rest of the line) of every `uses:` in TEXT."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        m = re.match(r"^\s*(?:-\s+)?uses:\s*(['\"]?)([^\s'\"#]+)\1\s*(.*)$", line)
        if m:
            out.append((number, m.group(2), m.group(3)))
    return out


def policy_violations(text: str) -> list[str]:
    """What breaks the workflow policy in workflow TEXT (empty: nothing)."""
    problems = []
    doc = yaml.safe_load(text) or {}
    jobs = doc.get("jobs") or {}

    for number, ref, rest in _uses_lines(text):
        if ref.startswith("./"):
            continue  # an action or workflow of this repository: pinned by the checkout itself
        if ref.startswith("docker://"):
            if not re.search(r"@sha256:[0-9a-f]{64}$", ref):
                problems.append(f"line {number}: {ref} is not pinned by digest")
            continue
        if not SHA_PIN.match(ref):
            problems.append(f"line {number}: {ref} is not pinned to a full commit SHA")
        elif not VERSION_COMMENT.search(rest):
            problems.append(f"line {number}: {ref} has no `# vX.Y.Z` comment naming its version")
    in_yaml = sorted([job["uses"] for job in jobs.values() if "uses" in job]
                     + [step["uses"] for job in jobs.values() for step in job.get("steps") or [] if "uses" in step])
    if in_yaml != sorted(ref for _, ref, _ in _uses_lines(text)):
        problems.append("some `uses:` are not written one per line (`uses: owner/repo@sha # vX.Y.Z`): "
                        "they cannot be checked")

    permissions = doc.get("permissions")
    if not isinstance(permissions, dict) and permissions not in ("read-all", {}):
        problems.append("top-level permissions must be set, read-only (e.g. `contents: read`)")
    elif isinstance(permissions, dict):
        for scope, level in permissions.items():
            if level not in ("read", "none"):
                problems.append(f"top-level permissions: {scope}: {level} (the default must be read-only)")

    if not (doc.get("concurrency") or {}).get("cancel-in-progress"):
        problems.append("no top-level concurrency with cancel-in-progress: superseded runs keep running")

    for name, job in jobs.items():
        if "uses" in job:
            continue  # a reusable workflow's jobs carry their own timeouts
        if "timeout-minutes" not in job:
            problems.append(f"job {name}: no timeout-minutes")
        job_permissions = job.get("permissions", {})
        if isinstance(job_permissions, str):
            if job_permissions != "read-all":
                problems.append(f"job {name}: permissions {job_permissions}")
            continue
        for scope, level in (job_permissions or {}).items():
            if level == "write" and scope not in ALLOWED_WRITES.get(name, set()):
                problems.append(f"job {name}: {scope}: write is not allowed for this job")
    return problems


@pytest.mark.parametrize("workflow", WORKFLOWS)
def test_workflow_policy(workflow):
    problems = policy_violations((ROOT / workflow).read_text())
    assert not problems, f"{workflow}:\n" + "\n".join(problems)


GOOD = """\
name: x
on: push
permissions:
  contents: read
concurrency:
  group: x
  cancel-in-progress: true
jobs:
  images:
    runs-on: ubuntu-24.04
    timeout-minutes: 5
    permissions:
      contents: read
      packages: write
    steps:
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
      - uses: ./.github/actions/local
"""


@pytest.mark.parametrize("change, expect", [
    (("@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2", "@v4"), "not pinned to a full commit SHA"),
    (("@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2", "@11bd71901bbe5b1630ceea73d27597364c9af68 # v4.2.2"),
     "not pinned to a full commit SHA"),
    (("@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2", "@11bd71901bbe5b1630ceea73d27597364c9af683"),
     "no `# vX.Y.Z` comment"),
    (("    timeout-minutes: 5\n", ""), "job images: no timeout-minutes"),
    (("permissions:\n  contents: read\nconcurrency", "permissions:\n  contents: write\nconcurrency"),
     "top-level permissions: contents: write"),
    (("permissions:\n  contents: read\nconcurrency", "permissions: write-all\nconcurrency"),
     "top-level permissions must be set"),
    (("permissions:\n  contents: read\nconcurrency", "concurrency"), "top-level permissions must be set"),
    (("  images:\n", "  build:\n"), "job build: packages: write is not allowed"),
    (("  cancel-in-progress: true\n", ""), "no top-level concurrency"),
    (("      - uses: ./.github/actions/local\n", "      - {uses: actions/cache@v4}\n"), "not written one per line"),
])
def test_the_policy_check_can_fail(change, expect):
    assert policy_violations(GOOD) == []
    old, new = change
    assert old in GOOD
    problems = policy_violations(GOOD.replace(old, new))
    assert any(expect in p for p in problems), problems


# -- image coordinates from the values ------------------------------------------------------------
def _image_meta(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "ci/image_meta.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)


def test_image_meta_reads_the_values():
    from ops import images, render

    values = render.load_values("prod", {})
    result = _image_meta("--env", "prod", "--registry", "ghcr.io/Some-Owner")
    assert result.returncode == 0, result.stderr
    out = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert out["version"] == values["version"]
    assert out["registry"] == "ghcr.io/some-owner/"
    assert out["python_base"] == values["bases"]["online"]["python"]
    matrix = {row["service"]: row for row in json.loads(out["matrix"])["include"]}
    assert set(matrix) == {"api", "simulator", "device"}
    for name, row in matrix.items():
        assert row["image"] == f"ghcr.io/some-owner/{values['images'][name]}"
        assert (ROOT / row["context"] / "Dockerfile").is_file()
        assert {"linux/amd64", "linux/arm64"} <= set(row["platforms"].split(","))
    assert matrix["device"]["platforms"].split(",") == list(images.DEVICE_PLATFORMS)


def test_image_meta_refuses_a_tag_that_is_not_the_version():
    from ops import render

    version = render.load_values("prod", {})["version"]
    assert _image_meta("--registry", "ghcr.io/o", "--tag", f"v{version}").returncode == 0
    result = _image_meta("--registry", "ghcr.io/o", "--tag", "v999.0.0")
    assert result.returncode == 1
    assert "does not match the version" in result.stderr
