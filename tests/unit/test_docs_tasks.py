"""The docs and the code cannot drift apart: every `./iot TASK --option` the Markdown pages mention
exists (the same objects `./iot --list` and `./iot --help TASK` print), every task is documented, every
shell block carries a known marker, and the README's configuration tables equal the code and the values
files. The running of the runnable blocks is tests/e2e/test_docs_runnable.py; the parsing is
tests/docs_blocks.py."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import docs_blocks  # noqa: E402

ROOT = docs_blocks.ROOT
LABS = ROOT / "docs" / "labs"


@pytest.fixture(scope="module")
def real():
    return docs_blocks.real_tasks()


def all_mentions():
    return [m for path in docs_blocks.doc_paths() for m in docs_blocks.mentions(path.read_text(), path)]


def test_the_task_list_is_the_one_invoke_prints(real):
    specs, _ = real
    out = subprocess.run([sys.executable, "-m", "invoke", "--list", "--list-format=json"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    listed = json.loads(out)

    def names(coll, prefix=""):
        found = {prefix + t["name"] for t in coll["tasks"]}
        for sub in coll["collections"]:
            found |= names(sub, prefix + sub["name"] + ".")
        return found

    assert names(listed) == {spec.name for spec in specs.values()}


def test_the_docs_mention_only_real_tasks_and_options(real):
    specs, core = real
    mentions = all_mentions()
    assert len(mentions) > 50, "the parser found almost no task in the docs: is it still reading them?"
    problems = [p for m in mentions for p in docs_blocks.check_mention(m, specs, core)]
    assert problems == [], "\n".join(problems)


def test_every_task_is_documented(real):
    specs, _ = real
    documented = set().union(*(docs_blocks.mentioned_tasks(m, specs) for m in all_mentions()))
    missing = sorted({s.name for s in specs.values()} - documented)
    assert missing == [], f"tasks in `./iot --list` that no doc mentions as ./iot TASK: {missing}"


def test_the_check_can_fail(real):
    """A fake page with a task and options that do not exist: each one is reported, with its line."""
    specs, core = real
    fake = ("# Fake\n\nRun `./iot deploi --env test` first.\n\n```sh\n./iot up --envv dev\n"
            "./iot --dryy up\n./iot cluster.create --drivr local | tee x\n./iot --help nosuchtask\n"
            "./iot test -l unit   # fine\n./iot up --no-simulator --set a=b   # fine\n```\n")
    problems = [p for m in docs_blocks.mentions(fake) for p in docs_blocks.check_mention(m, specs, core)]
    text = "\n".join(problems)
    assert len(problems) == 5, text
    for needle in ("<doc>:3: no task 'deploi'", "<doc>:6: --envv is not an option of task up",
                   "<doc>:7: --dryy is not an option of invoke", "--drivr is not an option of task cluster.create",
                   "no task 'nosuchtask'"):
        assert needle in text, text


def test_every_block_marker_is_known():
    problems = [p for path in docs_blocks.doc_paths()
                for b in docs_blocks.parse_blocks(path.read_text(), path) for p in b.problems]
    assert problems == [], "\n".join(problems)


def test_the_marker_check_can_fail():
    fake = ("```sh runable\nls\n```\n\n```sh skip:\nls\n```\n\n```text runnable\nls\n```\n\n"
            "```sh runnable timeout=soon\nls\n```\n\n```sh runnable timeout=60\nls\n```\n\n"
            "```sh skip: needs a real Raspberry Pi\nls\n```\n")
    blocks = docs_blocks.parse_blocks(fake)
    assert [bool(b.problems) for b in blocks] == [True, True, True, True, False, False]
    assert blocks[4].marker == "runnable" and blocks[4].timeout == 60
    assert blocks[5].marker == "skip" and blocks[5].reason == "needs a real Raspberry Pi"


def test_the_labs_follow_their_template():
    labs = sorted(LABS.glob("[0-9][0-9]-*.md"))
    assert [p.name[:2] for p in labs] == [f"{n:02d}" for n in range(1, 13)]
    index = (LABS / "README.md").read_text()
    for lab in labs:
        text = lab.read_text()
        assert f"]({lab.name})" in index, f"docs/labs/README.md does not link {lab.name}"
        for part in ("**Objective**", "## Commands", "## What to observe", "## What just happened"):
            assert part in text, f"{lab.name}: no {part}"
        markers = [b.marker for b in docs_blocks.parse_blocks(text, lab)]
        assert "runnable" in markers, f"{lab.name}: nothing a learner can run here is tested"


def test_the_readme_runs_up_first_and_tears_down_last():
    blocks = [b for b in docs_blocks.parse_blocks((ROOT / "README.md").read_text()) if b.marker]
    assert blocks[0].marker == "runnable" and blocks[0].text.strip() == "./iot up"
    assert blocks[1].marker == "skip" and blocks[1].text.strip() == "./iot test"
    assert blocks[-1].marker == "runnable" and blocks[-1].text.strip() == "./iot down --volumes"


def test_the_readme_api_variables_are_the_code_s():
    code = docs_blocks.api_variables(docs_blocks.CONFIG_PY.read_text())
    documented: dict[str, str | None] = {}
    for name_cell, default_cell, *_ in docs_blocks.table_rows((ROOT / "README.md").read_text(),
                                                              "The api's environment variables"):
        names = [n for n in docs_blocks.backticked(name_cell) if n != "_FILE"]
        defaults = docs_blocks.backticked(default_cell)
        for i, name in enumerate(names):
            documented[name] = defaults[i] if len(defaults) == len(names) else None
    assert sorted(documented) == sorted(code), "README table vs api/iot_api/config.py"
    wrong = {n: (documented[n], d) for n, d in code.items() if d is not None and documented[n] != d}
    assert wrong == {}, f"README default vs code default: {wrong}"


def test_the_api_variable_reader_sees_defaults():
    code = docs_blocks.api_variables(docs_blocks.CONFIG_PY.read_text())
    assert code["API_PORT"] == "1337" and code["API_GROUP_COMMIT"] == "true"
    assert code["INFLUXDB_URL"] == "http://influxdb:8086" and code["API_FLUSH_MAX_DELAY"] == "0ms"


def _scalar(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return '""' if value == "" else str(value)


def test_the_readme_values_table_is_the_values_files():
    from ops import render

    rows = docs_blocks.table_rows((ROOT / "README.md").read_text(), "Values files")
    assert len(rows) > 10
    defaults = yaml.safe_load((ROOT / "stacks" / "values" / "defaults.yaml").read_text())
    envs = {env: render.load_values(env) for env in ("dev", "test", "prod")}
    problems = []
    for key_cell, default_cell, dev, test, prod, *_ in rows:
        key = docs_blocks.backticked(key_cell)[0]

        def lookup(values, key=key):
            for part in key.split("."):
                values = values[part]
            return values

        try:
            default = lookup(defaults)
        except KeyError:
            problems.append(f"{key}: not in stacks/values/defaults.yaml")
            continue
        if docs_blocks.backticked(default_cell) != [_scalar(default)]:
            problems.append(f"{key}: default {default_cell} in the README, {_scalar(default)} in defaults.yaml")
        for env, cell in (("dev", dev), ("test", test), ("prod", prod)):
            want = _scalar(lookup(envs[env]))
            shown = docs_blocks.backticked(cell)
            if (shown[0] if shown else _scalar(default)) != want:
                problems.append(f"{key}: {env} is {want}, the README says {cell or 'the default'}")
    assert problems == [], "\n".join(problems)
