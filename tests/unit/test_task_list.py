"""`./iot --list` shows the first line of each task's docstring: that line must be a whole sentence.

(The lint and cluster.rm lines once ended mid-sentence, "… and every", because their docstrings began
with a sentence wrapped over two lines.)"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_READ = """
import tasks
for ctx in tasks.ns.to_contexts():
    body = tasks.ns[ctx.name].__doc__ or ""
    print(ctx.name + "\\t" + (body.strip().splitlines() or [""])[0])
"""


def test_every_task_lists_a_whole_first_sentence():
    out = subprocess.run([sys.executable, "-c", _READ], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    lines = dict(line.split("\t", 1) for line in out.splitlines())
    assert len(lines) > 20, out  # the menu was read, not an empty namespace
    cut = {name: first for name, first in lines.items() if not first.rstrip().endswith((".", ")", "?"))}
    assert not cut, f"first docstring lines that --list would cut mid-sentence: {cut}"
