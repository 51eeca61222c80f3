"""`./iot` tab completion (ops/cli.py): the script `./iot --print-completion-script bash` prints, loaded
into a real bash, completes `./iot` and `iot` with task names and a task's options; the wrapper runs the
same program as before (its --list, usage line, version)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")


def iot(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "iot"), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


CASES = {  # what the user typed, the last word being completed -> what bash offers
    ("./iot", "db."): ["db.backup", "db.restore"],
    ("./iot", "--dry", "undep"): ["undeploy"],
    ("./iot", "autotest", "--e"): ["--env"],
    ("iot", "swarm."): ["swarm.init"],  # `iot`: a symlink on PATH to the repository's wrapper
}


@pytest.fixture(scope="module")
def offered(tmp_path_factory):
    """One bash, set up as the ~/.bashrc line sets it up, asked for each case of CASES (a pipe of what
    `complete -p` says, then one line of offers per case)."""
    bindir = tmp_path_factory.mktemp("bin")
    (bindir / "iot").symlink_to(ROOT / "iot")
    lines = ['eval "$(./iot --print-completion-script bash)"', "complete -p ./iot iot | tr '\\n' '|'", "echo"]
    for words in CASES:
        if words[0] == "iot":  # only now on PATH: `./iot` must complete without it
            lines.append(f"PATH={bindir}:$PATH")
        quoted = " ".join(f"'{w}'" for w in words)
        lines += [f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}",
                  f"_complete_iot '{words[0]}' '{words[-1]}' '{words[-2]}'", 'echo "${COMPREPLY[*]}"']
    out = subprocess.run(["bash", "-c", "\n".join(lines)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    registered, *answers = out.stdout.splitlines()
    return registered, dict(zip(CASES, (a.split() for a in answers), strict=True))


def test_the_script_registers_both_names(offered):
    registered, _ = offered
    assert "-F _complete_iot ./iot|" in registered and "-F _complete_iot iot|" in registered


@pytest.mark.parametrize("words", list(CASES), ids=" ".join)
def test_tab_offers(words, offered):
    _, answers = offered
    assert answers[words] == CASES[words]


def test_invokes_complete_prints_the_task_names_for_a_prefix():
    out = iot("--complete", "--", "iot", "clus")
    names = out.stdout.split()
    assert {"cluster.create", "cluster.ls", "cluster.rm", "deploy"} <= set(names)  # compgen filters the prefix


def test_the_wrapper_behaves_as_the_invoke_script_did_but_says_iot():
    listed = iot("--list")
    assert listed.returncode == 0 and "undeploy" in listed.stdout
    helped = iot("--help", "undeploy")
    assert helped.returncode == 0
    assert helped.stdout.startswith("Usage: iot [--core-opts] undeploy [--options]"), helped.stdout[:200]
    version = iot("--version")
    assert version.stdout.startswith("Invoke "), version.stdout
    bad = iot("no-such-task")
    assert bad.returncode == 1 and "No idea what 'no-such-task' is!" in bad.stderr
    same = subprocess.run([sys.executable, "-m", "invoke", "--list"], cwd=ROOT, capture_output=True, text=True)
    assert same.stdout == listed.stdout
