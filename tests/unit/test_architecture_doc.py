"""docs/architecture.md stays the map of the code: every folder and ops module its tables name exists, every
module of ops/ (ops/*.py and the ops/*/ packages, __init__ and __main__ aside) has its line in the table, and
every folder git tracks at the top level has its line too."""
from __future__ import annotations

import subprocess
from pathlib import Path

import docs_blocks
import pytest

ROOT = docs_blocks.ROOT
PAGE = ROOT / "docs" / "architecture.md"
FOLDERS = "Folders"      # the headings of the page's two tables
MODULES = "ops modules"


def named(heading: str, text: str) -> list[str]:
    """The backticked names in the first column of the table under HEADING (a folder keeps its trailing /)."""
    return [name for row in docs_blocks.table_rows(text, heading) for name in docs_blocks.backticked(row[0])]


def ops_modules(root: Path) -> set[str]:
    ops = root / "ops"
    modules = {f"ops/{p.name}" for p in ops.glob("*.py") if p.stem not in ("__init__", "__main__")}
    return modules | {f"ops/{p.parent.name}/" for p in ops.glob("*/__init__.py")}


def problems(text: str, root: Path = ROOT) -> list[str]:
    folders, modules = named(FOLDERS, text), named(MODULES, text)
    if not folders or not modules:
        return [f"no table under '## {FOLDERS}' or '## {MODULES}'"]
    out = [f"folder {f} is listed but does not exist" for f in folders if not (root / f).is_dir()]
    out += [f"{m} is listed but does not exist" for m in modules
            if not ((root / m).is_dir() if m.endswith("/") else (root / m).is_file())]
    out += [f"{m} exists but the table '{MODULES}' does not name it" for m in sorted(ops_modules(root) - set(modules))]
    return out


def test_the_page_names_what_exists_and_every_ops_module():
    assert problems(PAGE.read_text()) == []


def test_every_tracked_top_level_folder_is_on_the_page():
    try:
        files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: which folders are the project's is unknown")
    tracked = {line.split("/", 1)[0] + "/" for line in files.splitlines() if "/" in line}
    assert tracked - set(named(FOLDERS, PAGE.read_text())) == set()


def test_the_check_can_fail(tmp_path):
    for name in ("__init__.py", "__main__.py", "kept.py", "new.py", "pkg/__init__.py", "data/x.txt"):
        (tmp_path / "ops" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "ops" / name).write_text("")
    (tmp_path / "api").mkdir()
    page = (f"## {FOLDERS}\n\n| folder | what |\n|---|---|\n| `api/` | x |\n| `gone/` | x |\n\n"
            f"## {MODULES}\n\n| module | job |\n|---|---|\n| `ops/kept.py` | x |\n| `ops/old.py` | x |\n")
    assert problems(page, tmp_path) == [
        "folder gone/ is listed but does not exist", "ops/old.py is listed but does not exist",
        "ops/new.py exists but the table 'ops modules' does not name it",
        "ops/pkg/ exists but the table 'ops modules' does not name it"]
    assert problems("# nothing here\n", tmp_path) == [f"no table under '## {FOLDERS}' or '## {MODULES}'"]
