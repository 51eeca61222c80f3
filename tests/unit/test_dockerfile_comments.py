"""The Dockerfiles' comments say how the tasks really build them (api/Dockerfile once named
ops.images.build_image, which no task calls: `./iot build` builds the api with Compose):

- every task a comment names is a real task, named the way a user runs it (`./iot TASK`, not `invoke`);
- every ops.images function a comment names is one the tasks' code calls (not only the tests);
- the stages named (`# ---- NAME:` headers, "the last stage, `NAME`") are the FROM … AS stages;
- a Dockerfile the rendered compose.yaml builds says `./iot build` builds it with Compose, and a
  target the compose file asks for is one of its stages.

Which files: every Dockerfile of the repository (ops.commands.dockerfiles(), as `./iot lint` finds them)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

import tasks
from ops import commands, images, render

ROOT = Path(__file__).resolve().parents[2]

DOCKERFILES = [ROOT / p for p in commands.dockerfiles()]
TASK = re.compile(r"(\./iot|\binvoke)\s+([a-z][\w.-]*)")
IMAGES_FN = re.compile(r"\bops\.images\.(\w+)|\bimages\.(\w+)\(")
STAGE_HEADER = re.compile(r"^# ---- ([\w-]+):")
LAST_STAGE = re.compile(r"the last stage, `([\w-]+)`")
FROM = re.compile(r"^FROM\s+\S+(?:\s+AS\s+([\w-]+))?", re.IGNORECASE)


def comments(path: Path) -> str:
    return "\n".join(line for line in path.read_text().splitlines() if line.lstrip().startswith("#"))


def stages(path: Path) -> list[str | None]:
    return [m.group(1) for line in path.read_text().splitlines() if (m := FROM.match(line))]


def called_in_code(name: str) -> bool:
    """NAME( appears in tasks/ or ops/ other than on its own `def` line."""
    call = re.compile(rf"(?<!def )\b{name}\(")
    return any(call.search(p.read_text()) for folder in ("tasks", "ops") for p in (ROOT / folder).rglob("*.py"))


@pytest.fixture(scope="module")
def compose_builds(tmp_path_factory) -> dict[Path, dict]:
    """{Dockerfile: its build section} for every service the rendered dev compose.yaml builds."""
    tmp = tmp_path_factory.mktemp("render")
    result = render.render("dev", out_dir=tmp / "out", secrets_dir=tmp / "secrets")
    doc = yaml.safe_load(Path(result.files["compose.yaml"]).read_text())
    out = {}
    for svc in doc["services"].values():
        build = svc.get("build")
        if build:
            context = (Path(result.files["compose.yaml"]).parent / build["context"]).resolve()
            out[context / build.get("dockerfile", "Dockerfile")] = build
    return out


def test_the_dockerfiles_are_found():
    assert {ROOT / "api" / "Dockerfile", ROOT / "device" / "Dockerfile", ROOT / "web" / "Dockerfile"} <= set(DOCKERFILES)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_tasks_exist_and_are_named_as_a_user_runs_them(path):
    for binary, name in TASK.findall(comments(path)):
        assert binary == "./iot", f"{path.relative_to(ROOT)}: `{binary} {name}`: users run ./iot"
        assert name in tasks.ns.task_names, f"{path.relative_to(ROOT)}: ./iot {name} is no task"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_build_functions_are_the_ones_the_tasks_use(path):
    for name in {a or b for a, b in IMAGES_FN.findall(comments(path))}:
        assert hasattr(images, name), f"{path.relative_to(ROOT)}: ops.images.{name} does not exist"
        assert called_in_code(name), f"{path.relative_to(ROOT)}: names ops.images.{name}, which no task calls"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_stages_are_the_dockerfiles_stages(path):
    lines = path.read_text().splitlines()
    names = stages(path)
    for i, line in enumerate(lines):
        m = STAGE_HEADER.match(line)
        if m:  # the header's stage is the next FROM's
            nxt = next((FROM.match(x) for x in lines[i + 1:] if FROM.match(x)), None)
            assert nxt and nxt.group(1) == m.group(1), f"{path.relative_to(ROOT)}: header `{m.group(1)}` heads no such stage"
    for name in LAST_STAGE.findall(comments(path)):
        assert names and names[-1] == name, f"{path.relative_to(ROOT)}: the last stage is {names[-1:]}, not {name}"


def test_what_compose_builds_says_so(compose_builds):
    assert {ROOT / "api" / "Dockerfile", ROOT / "simulator" / "Dockerfile", ROOT / "web" / "Dockerfile"} <= set(compose_builds)
    for path, build in compose_builds.items():
        text = " ".join(comments(path).split())
        assert "./iot build" in text and "Compose" in text, f"{path.relative_to(ROOT)}: does not say ./iot build uses Compose"
        if "target" in build:
            assert build["target"] in stages(path), f"{path.relative_to(ROOT)}: compose asks for target {build['target']}"

