"""The docs and the code cannot drift apart: every `./iot TASK --option` the Markdown pages mention
exists (the same objects `./iot --list` and `./iot --help TASK` print), every task is documented, every
shell block carries a known marker, the configuration tables of docs/configuration.md and docs/api.md
equal the values files and the code, and the README's samples of `./iot up` are what it prints. The
running of the runnable blocks is tests/e2e/test_docs_runnable.py; the parsing is tests/docs_blocks.py."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import docs_blocks
import pytest
import yaml

ROOT = docs_blocks.ROOT
LABS = ROOT / "docs" / "labs"
CONFIGURATION_PAGE = ROOT / "docs" / "configuration.md"   # the values table


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
    assert [p.name[:2] for p in labs] == [f"{n:02d}" for n in range(1, len(labs) + 1)], "labs numbered 01, 02, … without a gap"
    assert len(labs) >= 12
    index = (LABS / "README.md").read_text()
    for lab in labs:
        text = lab.read_text()
        assert f"]({lab.name})" in index, f"docs/labs/README.md does not link {lab.name}"
        for part in ("**Objective**", "## Commands", "## What to observe", "## What just happened"):
            assert part in text, f"{lab.name}: no {part}"
        markers = [b.marker for b in docs_blocks.parse_blocks(text, lab)]
        assert "runnable" in markers, f"{lab.name}: nothing a learner can run here is tested"


def test_the_readme_runs_up_first_and_tears_down_last():
    """The front door's three commands, in order: up, show, test; its last marked block stops the stack."""
    blocks = [b for b in docs_blocks.parse_blocks((ROOT / "README.md").read_text()) if b.marker]
    assert blocks[0].marker == "runnable" and blocks[0].text.strip() == "./iot up"
    assert blocks[1].marker == "runnable" and blocks[1].text.strip().startswith("./iot show")
    assert blocks[2].marker == "skip" and blocks[2].text.strip() == "./iot test"
    assert blocks[-1].marker == "runnable" and blocks[-1].text.strip() == "./iot down --volumes"


def test_every_runnable_block_is_run():
    """A page with a runnable block that the docs test does not open would pass untested."""
    runnable = {path for path in docs_blocks.doc_paths()
                if any(b.marker == "runnable" for b in docs_blocks.parse_blocks(path.read_text(), path))}
    missing = sorted(str(p.relative_to(ROOT)) for p in runnable - set(docs_blocks.runnable_docs()))
    assert missing == [], f"pages whose runnable blocks tests/e2e/test_docs_runnable.py never runs: {missing}"


def test_each_reference_page_brings_up_and_stops_its_stack():
    """The README stops the dev stack in its last block: a reference page run after it (or alone, with -k)
    must start the stack itself before its examples, and stop it again (a runnable or teardown block),
    so that the labs after it start from a machine without the dev stack."""
    pages = [p for p in docs_blocks.runnable_docs() if p.parent == ROOT / "docs"]
    assert pages, "no reference page with runnable blocks: is runnable_docs() still reading docs/?"
    problems = []
    for page in pages:
        blocks = docs_blocks.parse_blocks(page.read_text(), page)
        runnable = [b for b in blocks if b.marker == "runnable"]
        if runnable and not runnable[0].text.startswith("./iot up"):
            problems.append(f"{runnable[0].where}: the first runnable block of the page does not start with ./iot up")
        if runnable and not any(b.marker in ("runnable", "teardown") and "./iot down" in b.text for b in blocks):
            problems.append(f"{page.relative_to(ROOT)}: no runnable or teardown block runs ./iot down")
    assert problems == [], "\n".join(problems)


def test_no_doc_prints_a_test_count():
    """A sample pytest summary (`634 passed in 33.29s`) goes stale with the next test: the pages name the
    layers and their times instead."""
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}" for path in docs_blocks.doc_paths()
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if re.search(r"\b\d+ (passed|failed|skipped|deselected)(, | in \d)", line)]
    assert found == [], "\n".join(found)


def _readme_up_samples() -> dict[str, list[str]]:
    """{"offline" | "online": the lines of render's summary} shown in the README's ```text samples of
    `./iot up`: a sample with `note: grafana left out` is the offline one, one with `grafana: ` the online."""
    samples = {}
    for block in docs_blocks.parse_blocks((ROOT / "README.md").read_text()):
        lines = [line for line in block.text.splitlines() if block.lang == "text"
                 and line.startswith(("rendered env ", "api: ", "grafana: ", "web: ", "credentials: ", "note: "))]
        if any(line.startswith("note: grafana left out") for line in lines):
            samples["offline"] = lines
        elif any(line.startswith("grafana: ") for line in lines):
            samples["online"] = lines
    return samples


def test_the_readme_shows_what_up_prints_offline_and_online(tmp_path):
    """The README's two samples are what `./iot up` prints for env dev (RenderResult.lines(), the summary
    `up` prints), with the offline bases and with the online ones."""
    from ops import render

    samples = _readme_up_samples()
    assert sorted(samples) == ["offline", "online"], "the README shows no offline or no online sample of ./iot up"
    for mode, shown in samples.items():
        result = render.render("dev", out_dir=tmp_path / mode, secrets_dir=tmp_path / "secrets",
                               overrides={"bases.mode": mode})
        printed = [line.replace(f"{tmp_path / 'secrets'}/", "secrets/dev/") for line in result.lines()
                   if not line.startswith("rendered env ")]
        shown = [line for line in shown if not line.startswith("rendered env ")]
        assert shown == printed, f"README's {mode} sample of ./iot up vs what it prints"


def _scalar(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return '""' if value == "" else str(value)


def test_the_values_table_is_the_values_files():
    from ops import render

    rows = docs_blocks.table_rows(CONFIGURATION_PAGE.read_text(), "Values files")
    assert len(rows) > 10, f"{CONFIGURATION_PAGE.relative_to(ROOT)}: no table under '## Values files'"
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
            problems.append(f"{key}: default {default_cell} in the page, {_scalar(default)} in defaults.yaml")
        for env, cell in (("dev", dev), ("test", test), ("prod", prod)):
            want = _scalar(lookup(envs[env]))
            shown = docs_blocks.backticked(cell)
            if (shown[0] if shown else _scalar(default)) != want:
                problems.append(f"{key}: {env} is {want}, the page says {cell or 'the default'}")
    assert problems == [], "\n".join(problems)


def test_the_docs_links_resolve():
    """Moving a section to another page must not leave links to it behind: every relative link of every
    page reaches a file, and an #anchor into a Markdown page one of its headings."""
    problems = [p for path in docs_blocks.doc_paths() for p in docs_blocks.broken_links(path)]
    assert problems == [], "\n".join(problems)


def test_the_link_check_can_fail(tmp_path):
    page = ROOT / "docs" / "api.md"
    fake = tmp_path / "fake.md"
    fake.write_text(f"[ok]({page}#environment-variables) [gone]({page}#two-commands) [none](nowhere.md)\n"
                    "`[code](ignored.md)` [web](https://example.org/x)\n\n```\n[fenced](ignored.md)\n```\n")
    problems = "\n".join(docs_blocks.broken_links(fake))
    assert "#two-commands" in problems and "nowhere.md: no such file" in problems, problems
    assert "environment-variables" not in problems and "ignored" not in problems and "example" not in problems
