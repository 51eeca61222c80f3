"""The Raspberry Pi install steps create every file they (and the systemd unit they install) rely on,
before they rely on it: a quick install once set DEVICE_TOKEN_FILE=/etc/iot-device/token and never
created that file. The steps cannot run here (a Pi's sudo, useradd and systemd), so their commands are
read in order: what `mkdir`, `install`, `cp` and `tee` create, against every /etc and /opt path of the
agent named by a later command, by the settings file's contents, or by the unit once it is installed.

Checked: device/README.md's install section, and every other page with a block that installs the unit
(README.md, the labs)."""
from __future__ import annotations

import re
import shlex
import stat
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEVICE = ROOT / "device"
UNIT = DEVICE / "iot-device.service"
UNIT_DEST = "/etc/systemd/system/iot-device.service"
PATH = re.compile(r"(?<![\w~.])/(?:etc|opt)/[\w./-]*iot-device[\w./-]*")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
OPTS_WITH_VALUE = {"-m", "-o", "-g", "-t", "--mode", "--owner", "--group"}


def norm(path: str) -> str:
    return str(PurePosixPath(path.rstrip("/") or "/"))


def blocks_of(text: str) -> list[str]:
    return FENCE.findall(text)


def install_section(text: str) -> str:
    start = text.index("## Install on a Raspberry Pi")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def commands(block: str) -> list[tuple[str, str]]:
    """(command line, heredoc body) pairs, continuation lines joined."""
    lines = block.replace("\\\n", " ").splitlines()
    out, i = [], 0
    while i < len(lines):
        line, body = lines[i], ""
        here = re.search(r"<<-?\s*'?(\w+)'?", line)
        if here:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == here.group(1))
            body, i = "\n".join(lines[i + 1:end]), end
        out.append((line, body))
        i += 1
    return out


def effects(line: str) -> tuple[set[str], set[str], dict[str, dict]]:
    """(paths created, paths used, {created file: install options}) of one shell line (sudo, pipes, &&)."""
    created, used, modes = set(), set(), {}
    for part in re.split(r"\|\||&&|\||;", line):
        try:
            words = shlex.split(part)
        except ValueError:
            words = part.split()
        while words and words[0] in ("sudo", "env") or (words and "=" in words[0] and not words[0].startswith("-")):
            words = words[1:]
        if not words:
            continue
        cmd, args = words[0], words[1:]
        positional, opts, skip = [], {}, False
        for k, a in enumerate(args):
            if skip:
                skip = False
                continue
            if a in OPTS_WITH_VALUE:
                opts[a] = args[k + 1] if k + 1 < len(args) else ""
                skip = True
            elif a.startswith("-"):
                opts[a] = ""
            else:
                positional.append(a)
        paths = [p for p in positional if PATH.fullmatch(p.rstrip("/"))]
        if cmd == "mkdir" or (cmd == "install" and "-d" in opts):
            created |= {norm(p) for p in paths}
        elif cmd == "install" and positional:
            dest = norm(positional[-1])
            created.add(dest)
            modes[dest] = opts
            used |= {norm(p) for p in paths[:-1]}
        elif cmd == "cp" and len(positional) >= 2:
            dest = norm(positional[-1])
            used.add(dest)
            created |= {norm(f"{dest}/{PurePosixPath(src.rstrip('/')).name}") for src in positional[:-1]}
        elif cmd == "tee":
            created |= {norm(p) for p in paths}
        elif cmd in ("rm", "userdel"):
            continue
        else:
            used |= {norm(p) for p in paths}
        # paths inside settings (VAR=/path) are used too
        used |= {norm(m) for m in PATH.findall(part) if "=" + m in part}
    return created, used - created, modes


def unit_uses() -> set[str]:
    return {norm(m) for m in PATH.findall(UNIT.read_text()) if m != UNIT_DEST}


def problems(blocks: list[str]) -> tuple[list[str], dict[str, dict]]:
    made: set[str] = set()
    found, modes = [], {}

    def exists(path: str) -> bool:
        return any(path == m or m.startswith(path + "/") or path.startswith(m + "/") for m in made)

    for block in blocks:
        for line, body in commands(block):
            created, used, opts = effects(line)
            modes.update(opts)
            if UNIT_DEST in created:
                used |= unit_uses()
            used |= {norm(m) for m in PATH.findall(body)}
            found += [f"`{line.strip()}` relies on {p}, which no earlier step creates" for p in sorted(used)
                      if not exists(p)]
            made |= created
    return found, modes


def pages() -> dict[str, list[str]]:
    out = {"device/README.md": blocks_of(install_section((DEVICE / "README.md").read_text()))}
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        blocks = blocks_of(path.read_text())
        if any(UNIT_DEST in b for b in blocks):
            out[str(path.relative_to(ROOT))] = blocks
    return out


def test_the_readme_install_is_read():
    blocks = pages()["device/README.md"]
    assert any(UNIT_DEST in b for b in blocks)
    _, modes = problems(blocks)
    assert "/etc/iot-device/token" in modes, "the install steps create no token file"


@pytest.mark.parametrize("page", sorted(pages()))
def test_every_path_is_created_before_it_is_used(page):
    found, _ = problems(pages()[page])
    assert found == [], "\n".join(found)


@pytest.mark.parametrize("page", sorted(pages()))
def test_the_token_file_is_for_the_service_only(page):
    _, modes = problems(pages()[page])
    unit = UNIT.read_text()
    user, group = re.search(r"^User=(\S+)", unit, re.M).group(1), re.search(r"^Group=(\S+)", unit, re.M).group(1)
    opts = modes.get("/etc/iot-device/token")
    if opts is None:  # a page that uses no token (the api without tokens) must not name one either
        assert "/etc/iot-device/token" not in "".join(pages()[page]), f"{page}: names the token file, never creates it"
        return
    mode = int(opts.get("-m", "0755"), 8)
    assert not mode & stat.S_IRWXO, f"{page}: the token file is readable by others ({oct(mode)})"
    readable = (opts.get("-o") == user and mode & stat.S_IRUSR) or (opts.get("-g") == group and mode & stat.S_IRGRP)
    assert readable, f"{page}: the service ({user}:{group}) cannot read the token file ({opts})"


def test_the_check_catches_a_settings_file_naming_a_token_never_created():
    steps = ["sudo mkdir -p /opt/iot-device",
             "printf 'DEVICE_TOKEN_FILE=/etc/iot-device/token\\n' | sudo tee /etc/iot-device.env",
             f"sudo install -m 0644 ~/iot-device.service {UNIT_DEST}"]
    found, _ = problems(["\n".join(steps)])
    assert any("/etc/iot-device/token" in f for f in found), found
