"""The docs run: every shell block marked runnable in README.md, the reference pages of docs/ and
docs/labs/*.md is executed, in the order a learner reads them, against the real Docker engine of this
machine.

The marking convention (the info string of a fenced block; details in tests/docs_blocks.py and
docs/labs/README.md):

- ```` ```sh runnable ```` (optionally `timeout=SECONDS`, default 300): executed;
- ```` ```sh teardown ````: executed after every document, also when one failed (clean-up);
- ```` ```sh skip: REASON ````: not executed here, the reason is printed (a cloud driver, a real Pi…);
- anything else (plain ```` ```sh ````, ```` ```text ```` output): illustrative, never executed.

How a block runs: in a **fresh** `bash -euo pipefail` (no state is shared between blocks but files and
Docker: each block sets the variables it needs), from the repository root, with the environment of the
test minus INVOKE_IOT_ENV (so `./iot` defaults to env dev, as the docs say). Its output goes to a file,
not a pipe, so a process it starts in the background (`nohup … &`) does not hold the test; every
process a block started is killed when the test ends. A block that exits non-zero or runs past its time
limit fails the test of its document, naming the file and the line of the block, with its output.
The documents run in order (docs_blocks.runnable_docs(): the README, whose last block stops the dev
stack; the reference pages, each starting the stack it needs and stopping it at its end or in a teardown
block; then the labs by number, each cleaning up after itself), and the teardown blocks of every
document run at the very end whatever happened.

Takes about 5 minutes on the reference machine with the images already built (the first `./iot up`
on a machine without images adds about a minute).
"""
from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import docs_blocks
import pytest
from test_swarm_deploy import STACK, cleanup  # noqa: E402 - the swarm tests' clean-up of env test

ROOT = docs_blocks.ROOT
DOCS = docs_blocks.runnable_docs()
_started_groups: list[int] = []


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "INVOKE_IOT_ENV"}
    env["NO_COLOR"] = "1"
    return env


def run_block(block: docs_blocks.Block) -> None:
    """Run one block in a fresh bash; fail the test with the file, line, block and output if it fails."""
    with tempfile.TemporaryDirectory(prefix="iot-docs-") as tmp:
        script, log = Path(tmp) / "block.sh", Path(tmp) / "output.log"
        script.write_text(block.text)
        print(f"\n=== RUN {block.where} (timeout {block.timeout:.0f} s)\n{block.text.rstrip()}", flush=True)
        started = time.monotonic()
        with open(log, "wb") as out:
            proc = subprocess.Popen(["bash", "-euo", "pipefail", str(script)], cwd=ROOT, env=_env(),
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            _started_groups.append(proc.pid)
            try:
                code = proc.wait(timeout=block.timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid, signal.SIGKILL)
                proc.wait()
                code = None
        took = time.monotonic() - started
        output = log.read_text(errors="replace")
        print(output.rstrip(), flush=True)
        print(f"=== {'ok' if code == 0 else 'FAILED'} {block.where} in {took:.1f} s", flush=True)
        if code != 0:
            tail = "\n".join(output.splitlines()[-80:])
            why = f"timed out after {block.timeout:.0f} s" if code is None else f"exit status {code}"
            pytest.fail(f"{block.where}: runnable block failed ({why}):\n{block.text}\n--- output (tail) ---\n{tail}",
                        pytrace=False)


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture(scope="module")
def docs_session(docker_engine):
    """Removes a stack of env `test` left by an interrupted run (the labs deploy it as new: over an old
    data volume, set up with other secrets, the api would be refused). Runs the teardown blocks after the
    last document, failures included, then ends whatever a block left running in the background (only
    the process groups this test started)."""
    stacks = subprocess.run(["docker", "stack", "ls", "--format", "{{.Name}}"], capture_output=True, text=True,
                            check=False).stdout.split()  # not a swarm manager: no stacks, an error
    if STACK in stacks:
        print(f"removing the stack {STACK} an interrupted run left, with its volume", flush=True)
        cleanup()
    yield
    failures = []
    for path in DOCS:
        for block in docs_blocks.parse_blocks(path.read_text(), path):
            if block.marker == "teardown":
                try:
                    run_block(block)
                except pytest.fail.Exception as exc:
                    failures.append(str(exc))
    for pgid in _started_groups:
        _kill_group(pgid, signal.SIGTERM)
    assert not failures, "teardown failed:\n" + "\n".join(failures)


def _budget(doc: Path) -> float:
    """pytest-timeout for a document: the time limits of its runnable blocks, plus a margin."""
    return sum(b.timeout for b in docs_blocks.parse_blocks(doc.read_text(), doc) if b.marker == "runnable") + 60


@pytest.mark.parametrize("doc", [pytest.param(d, marks=pytest.mark.timeout(_budget(d))) for d in DOCS],
                         ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_runnable_blocks_of(doc: Path, docs_session):
    blocks = docs_blocks.parse_blocks(doc.read_text(), doc)
    problems = [p for b in blocks for p in b.problems]
    assert not problems, "\n".join(problems)
    ran = 0
    for block in blocks:
        if block.marker == "skip":
            print(f"\n=== SKIP {block.where}: {block.reason}", flush=True)
        elif block.marker == "runnable":
            run_block(block)
            ran += 1
    print(f"\n{doc.relative_to(ROOT)}: {ran} runnable block(s) ran", flush=True)
