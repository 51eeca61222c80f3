"""The one command runner of ops/: every command a task runs (or, with --dry, would run) goes through run().

Why one: six modules had each their own subprocess wrapper, with different echo lines, dry-run rules, error
tails and timeouts, so `--dry` could not be trusted to print what the real run runs. One rule now:

- echo: `$ CMD` before a command runs, `would run: CMD` instead of running it in a dry run; CMD is the same
  shlex-joined text in both (an argument over 200 characters, e.g. a script, is shown shortened).
- dry: commands that change something print and return empty output; reads (read=True: inspect, ls) run
  in a dry run too, since the plan depends on them.
- capture (default) or stream (lines shown, indented, as they come: builds, pushes).
- timeout: the command is killed and the error says `CMD did not finish within N s`.
- failure: CommandError (or the module's subclass) carrying argv, status and the output's last 20 lines.
- heartbeat: `still running: CMD (60 s)` when an echoed command printed nothing for `heartbeat` seconds.
- colour: the echoed command is bold only when stderr is a terminal and NO_COLOR is unset (no-color.org).
- record: with IOT_RECORD_COMMANDS=FILE every echoed command, run or would-run, is appended to FILE as one
  JSON array of its argv per line, so a test can compare what `--dry` prints with what the run runs.
- secrets: the strings given as mask= (a join token) are shown and recorded as `***`.

Short probes whose output is parsed and never shown (`docker info`, `git rev-parse`), pipes and long-lived
daemons stay on plain subprocess where they are, each with a comment saying so.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from re import Pattern
from typing import IO

from ops.errors import OpsError

Progress = Callable[[str], None]

RECORD_ENV = "IOT_RECORD_COMMANDS"
TAIL_LINES = 20
HEARTBEAT = 60.0      # seconds of silence before a "still running" line
LONG_ARGUMENT = 200   # longer arguments (scripts) are shown shortened in the echo


class CommandError(OpsError):
    """A command that failed, did not finish in time, or was not found: str() says which, with its output's end."""

    def __init__(self, message: str, argv: Sequence[str] = (), status: int | None = None, tail: str = ""):
        super().__init__(message)
        self.argv = list(argv)
        self.status = status
        self.tail = tail


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def colour_on(stream: IO | None = None) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set to anything non-empty (no-color.org)."""
    stream = sys.stderr if stream is None else stream
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _short(arg: str) -> str:
    if len(arg) <= LONG_ARGUMENT:
        return arg
    first = arg.strip().splitlines()[0] if arg.strip() else ""
    return first[:60] + f"… ({len(arg)} characters)"


def shown(argv: Sequence[str], env: Mapping[str, str] | None = None, stdin_file: Path | str | None = None,
          stdout_file: Path | str | None = None) -> str:
    """The command as echoed: `K=V … argv` shlex-joined, with `< FILE` / `> FILE` for redirections."""
    text = "".join(f"{k}={shlex.quote(v)} " for k, v in (env or {}).items())
    text += shlex.join(_short(a) for a in argv)
    if stdin_file:
        text += f" < {stdin_file}"
    if stdout_file:
        text += f" > {stdout_file}"
    return text


def brief(argv: Sequence[str]) -> str:
    """The first words of a command, for heartbeat lines: `docker build …`."""
    return shlex.join(_short(a) for a in argv[:3]) + (" …" if len(argv) > 3 else "")


def record(argv: Sequence[str]) -> None:
    """Append argv to $IOT_RECORD_COMMANDS (one JSON array per line), when set."""
    path = os.environ.get(RECORD_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(list(argv)) + "\n")


def read_record(path: Path | str) -> list[list[str]]:
    """The commands an IOT_RECORD_COMMANDS file holds, in order ([] when there is no file)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _masked(arg: str, mask: Sequence[str]) -> str:
    for secret in mask:
        if secret:
            arg = arg.replace(secret, "***")
    return arg


def _echo(progress: Progress, marker: str, text: str) -> None:
    if colour_on():
        text = f"\033[1m{text}\033[0m"
    progress(marker + text)


def run(argv: Sequence[str], progress: Progress = say, *, dry: bool = False, read: bool = False,
        echo: bool = True, stream: bool = False, check: bool = True, timeout: float | None = None,
        env: Mapping[str, str] | None = None, show_env: bool = False, input: str | bytes | None = None,
        stdin_file: Path | str | None = None, stdout_file: Path | str | None = None, interactive: bool = False,
        text: bool = True, merge_stderr: bool = False, hide: Pattern | None = None,
        heartbeat: float | None = HEARTBEAT, mask: Sequence[str] = (),
        error: type[CommandError] = CommandError) -> subprocess.CompletedProcess:
    """Echo ARGV, run it unless this is a dry run of a command that changes something, and return the
    CompletedProcess (stdout/stderr as str, or bytes with text=False; empty in a dry run).

    read: a read-only command (runs in a dry run too; usually echo=False). stream: show output lines as they
    come (stderr merged into them). env: extra environment (shown in the echo with show_env). input: data for
    stdin; stdin_file/stdout_file: redirections; otherwise stdin is /dev/null, or the terminal with
    interactive. hide: streamed lines matching it are not shown (progress bars). mask: secrets shown as ***.
    check: raise `error` (a CommandError subclass) on a non-zero exit."""
    argv = [str(a) for a in argv]
    public = [_masked(a, mask) for a in argv]
    text_shown = shown(public, env if show_env else None, stdin_file, stdout_file)
    empty: str | bytes = "" if text else b""
    if echo:
        _echo(progress, "would run: " if dry and not read else "$ ", text_shown)
        record(public)
    if dry and not read:
        return subprocess.CompletedProcess(argv, 0, empty, empty)
    return _execute(argv, public, progress, text_shown, timeout=timeout, env=env, input=input, stdin_file=stdin_file,
                    stdout_file=stdout_file, interactive=interactive, text=text, merge=stream or merge_stderr,
                    stream=stream, hide=hide, heartbeat=heartbeat if echo else None, check=check, error=error)


def _execute(argv, public, progress, text_shown, *, timeout, env, input, stdin_file, stdout_file, interactive, text,
             merge, stream, hide, heartbeat, check, error) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env} if env else None
    files = []
    try:
        if stdin_file:
            files.append(_open(stdin_file, "rb", public, error))
            stdin = files[-1]
        elif input is not None:
            stdin = subprocess.PIPE
        else:
            stdin = None if interactive else subprocess.DEVNULL
        if stdout_file:
            files.append(_open(stdout_file, "wb", public, error))
            stdout = files[-1]
        else:
            stdout = subprocess.PIPE
        stderr = subprocess.STDOUT if merge and not stdout_file else subprocess.PIPE
        try:
            proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr, env=full_env)
        except FileNotFoundError:
            raise error(f"{argv[0]}: command not found", public) from None
        except OSError as exc:
            raise error(f"{argv[0]}: cannot run it ({exc.strerror})", public) from None
        return _wait(proc, public, progress, text_shown, timeout=timeout, input=input, text=text, stream=stream,
                     hide=hide, heartbeat=heartbeat, check=check, error=error)
    finally:
        for f in files:
            f.close()


def _open(path, mode, public, error):
    try:
        return open(path, mode)  # noqa: SIM115 (closed by _execute)
    except OSError as exc:
        raise error(f"{path}: cannot open it for `{shlex.join(public[:3])} …` ({exc.strerror})", public) from None


class _Reader(threading.Thread):
    """Reads one pipe line by line (as bytes), shows the lines when streaming, notes when it last did."""

    def __init__(self, pipe: IO[bytes], show: bool, hide: Pattern | None):
        super().__init__(daemon=True)
        self.pipe, self.show, self.hide = pipe, show, hide
        self.chunks: list[bytes] = []
        self.last_shown = time.monotonic()

    def run(self) -> None:
        for line in iter(self.pipe.readline, b""):
            self.chunks.append(line)
            if self.show:
                decoded = line.decode(errors="replace").rstrip()
                if decoded and not (self.hide and self.hide.search(decoded)):
                    print(f"  {decoded}", file=sys.stderr, flush=True)
                    self.last_shown = time.monotonic()
        self.pipe.close()

    def data(self) -> bytes:
        return b"".join(self.chunks)


def _wait(proc, argv, progress, text_shown, *, timeout, input, text, stream, hide, heartbeat, check, error):
    readers = [_Reader(p, stream and p is proc.stdout, hide) for p in (proc.stdout, proc.stderr) if p is not None]
    for r in readers:
        r.start()
    if input is not None and proc.stdin is not None:
        threading.Thread(target=_feed, args=(proc.stdin, input), daemon=True).start()
    start = time.monotonic()
    last_beat = start
    timed_out = False
    try:
        while True:
            try:
                proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if timeout is not None and now - start > timeout:
                proc.kill()
                proc.wait()
                timed_out = True
                break
            if heartbeat and now - max([last_beat, *(r.last_shown for r in readers)]) >= heartbeat:
                progress(f"still running: {brief(argv)} ({now - start:.0f} s)")
                last_beat = now
    except BaseException:  # Ctrl-C: the command ends with us
        proc.kill()
        proc.wait()
        raise
    for r in readers:
        r.join(timeout=5)  # a grandchild holding the pipe open must not hang us
    out = readers[0].data() if proc.stdout is not None else b""
    err = readers[-1].data() if proc.stderr is not None else b""
    if timed_out:
        raise error(f"`{text_shown}` did not finish within {timeout:g} s (stopped it)", argv, None,
                    _tail(err or out, hide))
    if check and proc.returncode != 0:
        tail = _tail(err, hide) or _tail(out, hide)
        raise error(f"`{text_shown}` failed (exit {proc.returncode})" + _with_tail(tail), argv, proc.returncode, tail)
    if text:
        return subprocess.CompletedProcess(argv, proc.returncode, out.decode(errors="replace"),
                                           err.decode(errors="replace"))
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _feed(pipe: IO[bytes], data: str | bytes) -> None:
    try:
        pipe.write(data.encode() if isinstance(data, str) else data)
        pipe.close()
    except (BrokenPipeError, OSError):
        pass


def _tail(data: bytes, hide: Pattern | None = None) -> str:
    lines = [ln.rstrip() for ln in data.decode(errors="replace").splitlines()]
    lines = [ln for ln in lines if ln.strip() and not (hide and hide.search(ln))]
    return "\n".join(lines[-TAIL_LINES:])


def _with_tail(tail: str) -> str:
    if not tail:
        return ""
    if "\n" not in tail:
        return f": {tail}"
    return ":\n" + "\n".join(f"  {ln}" for ln in tail.splitlines())
