"""Reading the docs as data: fenced shell blocks with their markers, and the `./iot` tasks they mention.

Used by tests/unit/test_docs_tasks.py (the docs agree with the real tasks and options) and
tests/e2e/test_docs_runnable.py (the runnable blocks run). The marking convention, also described in
docs/labs/README.md, is the fenced block's info string:

    ```sh runnable              executed by the docs test, in document order
    ```sh runnable timeout=600  the same, with its own time limit in seconds (default 300)
    ```sh teardown              executed after every document, failures included (clean-up)
    ```sh skip: REASON          not executed here; the test prints the reason
    ```sh / ```text / ```json   illustrative: never executed (output, placeholders, examples)

Only sh/bash/shell blocks may carry a marker, and any other word after the language is an error
(a typo such as `runable` must not silently turn a block into an illustration).
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHELLS = ("sh", "bash", "shell")
DEFAULT_TIMEOUT = 300.0

# Where tasks may be mentioned: every Markdown page of the repository that a person reads.
DOC_GLOBS = ("README.md", "SECURITY.md", "docs/**/*.md", "ci/README.md", "device/README.md")


@dataclass
class Block:
    path: Path
    line: int            # line of the opening fence, 1-based
    info: str            # the whole info string
    lang: str
    text: str
    marker: str = ""     # "", "runnable", "teardown" or "skip"
    reason: str = ""     # for skip
    timeout: float = DEFAULT_TIMEOUT
    problems: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        try:
            rel = self.path.relative_to(ROOT)
        except ValueError:
            rel = self.path
        return f"{rel}:{self.line}"


_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")


def parse_blocks(text: str, path: Path = Path("<doc>")) -> list[Block]:
    """Every fenced code block of a Markdown text, with its marker parsed from the info string."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m.group(1), m.group(2), m.group(3).strip()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines):
            close = _FENCE.match(lines[i])
            if close and close.group(2).startswith(fence[0] * len(fence)) and not close.group(3).strip():
                break
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        blocks.append(_with_marker(Block(path, start + 1, info, info.split(" ", 1)[0] if info else "",
                                         "\n".join(body) + "\n")))
    return blocks


def _with_marker(block: Block) -> Block:
    rest = block.info[len(block.lang):].strip()
    if not rest:
        return block
    if block.lang not in SHELLS:
        block.problems.append(f"{block.where}: marker {rest!r} on a {block.lang or 'plain'} block "
                              f"(only {', '.join(SHELLS)} blocks run)")
        return block
    if rest.startswith("skip:") or rest == "skip":
        block.marker, block.reason = "skip", rest[len("skip:"):].strip()
        if not block.reason:
            block.problems.append(f"{block.where}: `skip:` needs a reason (```sh skip: needs a real Raspberry Pi)")
        return block
    words = rest.split()
    if words[0] not in ("runnable", "teardown"):
        block.problems.append(f"{block.where}: unknown marker {words[0]!r} (use runnable, teardown or skip: REASON)")
        return block
    block.marker = words[0]
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if key == "timeout" and sep and value.isdigit():
            block.timeout = float(value)
        else:
            block.problems.append(f"{block.where}: unknown option {word!r} after {words[0]} (only timeout=SECONDS)")
    return block


def doc_paths(root: Path = ROOT) -> list[Path]:
    """The Markdown pages that may mention tasks, each once, sorted."""
    found = {p for pattern in DOC_GLOBS for p in root.glob(pattern) if p.is_file()}
    return sorted(found)


# The reference pages the README links, in the order a learner opens them after it. Each page whose
# blocks need the dev stack brings it up first (`./iot up`, idempotent) and brings it down at its end or
# in a teardown block, so it runs alone (`-k`) as well as in this order.
REFERENCE_ORDER = ("api.md", "show.md", "configuration.md", "operations.md", "swarm.md", "grafana.md",
                   "troubleshooting.md", "development.md")


def runnable_docs(root: Path = ROOT) -> list[Path]:
    """The documents whose runnable blocks the docs test executes, in the order a learner reads them:
    the README (the front door), then the reference pages of docs/ that hold runnable or teardown blocks
    (REFERENCE_ORDER first, any other by name), then the labs' index and the labs by number."""
    docs, labs = root / "docs", root / "docs" / "labs"
    named = [docs / name for name in REFERENCE_ORDER]
    reference = [p for p in named + sorted(set(docs.glob("*.md")) - set(named)) if p.is_file()
                 and any(b.marker in ("runnable", "teardown") for b in parse_blocks(p.read_text(), p))]
    ordered = [root / "README.md", *reference, labs / "README.md"]
    ordered += sorted(p for p in labs.glob("[0-9][0-9]-*.md"))
    return [p for p in ordered if p.is_file()]


# -- task mentions ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mention:
    where: str
    words: tuple[str, ...]   # what follows `./iot` / `invoke`, up to the end of the command


_INLINE = re.compile(r"(`+)(.+?)\1")
_COMMAND = re.compile(r"(?:^|(?<=[\s(`=$\"']))(?:\./iot|(?:\.venv/bin/)?invoke)(?=\s|$)(.*)")
_END = re.compile(r"\s(?:\||\|\||&&|;|&|>|2>|>>|#)(?:\s|$)|[`)]|\s#")


def code_fragments(text: str, path: Path = Path("<doc>")) -> list[tuple[int, str]]:
    """(line, code) for every line of a fenced block and every inline code span of the prose."""
    fragments: list[tuple[int, str]] = []
    for block in parse_blocks(text, path):
        command, first = "", None
        for offset, line in enumerate(block.text.splitlines(), 1):
            first = first or block.line + offset
            if line.endswith("\\"):  # a continued line: one command with the next
                command += line[:-1] + " "
                continue
            fragments.append((first, command + line))
            command, first = "", None
    in_fence = False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            fragments += [(number, m.group(2)) for m in _INLINE.finditer(line)]
    return fragments


def mentions(text: str, path: Path = Path("<doc>")) -> list[Mention]:
    """Every `./iot ...` / `invoke ...` command in the code of a Markdown text."""
    found = []
    name = str(path.relative_to(ROOT)) if ROOT in path.parents else str(path)
    for line, code in code_fragments(text, path):
        for m in _COMMAND.finditer(code):
            rest = m.group(1)
            end = _END.search(rest)
            rest = rest[:end.start()] if end else rest
            try:
                words = shlex.split(rest.replace("[", " ").replace("]", " "), comments=False)
            except ValueError:  # an unbalanced quote in prose: take the words as they are
                words = rest.replace("[", " ").replace("]", " ").split()
            found.append(Mention(f"{name}:{line}", tuple(words)))
    return found


def is_placeholder(word: str) -> bool:
    """TASK, <task>, ENV, …: a name the reader replaces, not a task."""
    return word.startswith("<") or (word.isupper() and len(word) > 1) or word in ("…", "...")


@dataclass
class TaskSpec:
    """A task's flags as invoke's parser knows them: {flag: takes a value}."""
    name: str
    flags: dict[str, bool]


def real_tasks() -> tuple[dict[str, TaskSpec], dict[str, bool]]:
    """The tasks of tasks/ and invoke's own (core) flags, read through invoke's parser objects: what
    `./iot --list` and `./iot --help TASK` show."""

    from invoke import Program

    import tasks as tasks_module

    specs = {}
    for ctx in tasks_module.ns.to_contexts():
        flags = {("-" if len(n) == 1 else "--") + n.replace("_", "-"): arg.takes_value
                 for arg in ctx.args.values() for n in arg.names}
        flags.update({flag: False for flag in ctx.inverse_flags})
        for name in (ctx.name, *ctx.aliases):
            specs[name] = TaskSpec(ctx.name, flags)
    core: dict[str, bool] = {}
    for arg in Program().core_args() + Program().task_args():
        for n in arg.names:
            core[("-" if len(n) == 1 else "--") + n.replace("_", "-")] = arg.takes_value or arg.optional
    return specs, core


def check_mention(mention: Mention, specs: dict[str, TaskSpec], core: dict[str, bool]) -> list[str]:
    """Problems of one mention: an unknown task, an option its task does not have."""
    problems = []
    words = list(mention.words)
    current: TaskSpec | None = None
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if is_placeholder(word):
            if current is None and not word.startswith("-"):  # `./iot TASK --option`: any task's options
                break
            continue
        if word.startswith("-") and word != "-":
            flag, has_value = word.split("=", 1)[0], "=" in word
            if current is not None and flag in ("--help", "-h"):  # `./iot TASK --help`
                continue
            table = current.flags if current else core
            if flag not in table:
                owner = f"task {current.name}" if current else "invoke (before the task name)"
                problems.append(f"{mention.where}: {flag} is not an option of {owner}: {' '.join(mention.words)}")
                continue
            if table[flag] and not has_value and i < len(words):
                value = words[i]
                if current is None and flag in ("--help", "-h"):  # `./iot --help TASK`: check TASK
                    if not is_placeholder(value) and value not in specs:
                        problems.append(f"{mention.where}: no task {value!r}: {' '.join(mention.words)}")
                i += 1
            continue
        if word in specs:
            current = specs[word]
            continue
        if current is not None:  # a word that is neither an option, its value, nor a task: prose
            break
        if re.fullmatch(r"[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)?", word):
            problems.append(f"{mention.where}: no task {word!r}: {' '.join(mention.words)}")
        break
    return problems


def mentioned_tasks(mention: Mention, specs: dict[str, TaskSpec]) -> set[str]:
    return {specs[w].name for w in mention.words if w in specs}


# -- Markdown tables ---------------------------------------------------------------------------------------
def table_rows(text: str, heading: str) -> list[list[str]]:
    """The cells of the first Markdown table under the heading (a line starting with #… heading)."""
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.lstrip("#").strip() == heading and line.startswith("#"))
    except StopIteration:
        return []
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
        elif rows:
            break
    return rows[1:]  # without the header row


def backticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]*)`", cell)


# -- links -----------------------------------------------------------------------------------------------
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def anchors(text: str) -> set[str]:
    """The anchors GitHub makes of a Markdown text's headings: lower case, punctuation dropped, spaces as
    hyphens, a repeated heading numbered (-1, -2…)."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    in_fence = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        if in_fence or not re.match(r"#{1,6} ", line):
            continue
        slug = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        found.add(slug if slug not in counts else f"{slug}-{counts[slug]}")
        counts[slug] = counts.get(slug, 0) + 1
    return found


def broken_links(path: Path) -> list[str]:
    """Relative links of a page (outside code) whose file, or whose #anchor in a Markdown file, is missing."""
    text = path.read_text()
    problems = []
    in_fence = False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        for target in _LINK.findall(_INLINE.sub("", line)):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            where = f"{_shown(path)}:{number}: {target}"
            if not dest.exists():
                problems.append(f"{where}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
                problems.append(f"{where}: no heading makes #{anchor} in {_shown(dest)}")
    return problems


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if ROOT in path.parents else str(path)
