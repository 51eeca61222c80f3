"""ops.run, the one command runner: echo, dry runs, capture and stream, tails, timeouts, heartbeats, colour,
the record of commands. Real subprocesses (true, false, sleep, sh -c)."""
import io
import json
import sys

import pytest

from ops import run as ops_run
from ops.errors import OpsError


@pytest.fixture(autouse=True)
def no_colour_no_record(monkeypatch):
    monkeypatch.delenv(ops_run.RECORD_ENV, raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)


def test_echo_then_run_and_capture():
    said = []
    proc = ops_run.run(["sh", "-c", "echo out; echo err >&2", "x y"], said.append)
    assert said == ["$ sh -c 'echo out; echo err >&2' 'x y'"]
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "out\n", "err\n")


def test_dry_prints_the_same_command_text_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    said = []
    proc = ops_run.run(["touch", str(marker)], said.append, dry=True)
    assert said == [f"would run: touch {marker}"] and not marker.exists() and proc.stdout == ""
    ops_run.run(["touch", str(marker)], said.append)
    assert said[1] == f"$ touch {marker}" and marker.exists()
    assert said[0].removeprefix("would run: ") == said[1].removeprefix("$ ")


def test_reads_run_in_a_dry_run_too():
    assert ops_run.run(["echo", "hi"], lambda m: None, dry=True, read=True, echo=False).stdout == "hi\n"


def test_environment_redirections_and_long_arguments_in_the_echo(tmp_path):
    said = []
    src, dst = tmp_path / "in", tmp_path / "out"
    src.write_bytes(b"abc")
    ops_run.run(["cat"], said.append, env={"A": "1 2"}, show_env=True, stdin_file=src, stdout_file=dst)
    assert said == [f"$ A='1 2' cat < {src} > {dst}"] and dst.read_bytes() == b"abc"
    ops_run.run(["echo", "x" * 500], said.append, dry=True)
    assert said[-1].startswith("would run: echo 'xxx") and "(500 characters)" in said[-1] and len(said[-1]) < 120


def test_input_bytes_and_text():
    assert ops_run.run(["cat"], lambda m: None, input=b"\x00\x01", text=False).stdout == b"\x00\x01"
    assert ops_run.run(["cat"], lambda m: None, input="h\u00e9").stdout == "h\u00e9"


def test_a_failure_carries_argv_status_and_the_last_20_lines():
    script = "for i in $(seq 1 50); do echo line $i; done; exit 4"
    with pytest.raises(ops_run.CommandError) as exc:
        ops_run.run(["sh", "-c", script], lambda m: None, merge_stderr=True)
    err = exc.value
    assert isinstance(err, OpsError) and err.status == 4 and err.argv == ["sh", "-c", script]
    assert err.tail.splitlines() == [f"line {i}" for i in range(31, 51)]
    assert str(err).startswith(f"`sh -c '{script}'` failed (exit 4):\n  line 31\n")


def test_the_error_prefers_stderr_and_check_false_returns():
    with pytest.raises(ops_run.CommandError, match=r"failed \(exit 1\): why$"):
        ops_run.run(["sh", "-c", "echo noise; echo why >&2; exit 1"], lambda m: None)
    assert ops_run.run(["false"], lambda m: None, check=False).returncode == 1


def test_a_module_error_class_is_raised_and_still_caught_as_itself():
    class ModuleError(OpsError):
        pass

    class ModuleCommandError(ops_run.CommandError, ModuleError):
        pass

    with pytest.raises(ModuleError):
        ops_run.run(["false"], lambda m: None, error=ModuleCommandError)
    with pytest.raises(ModuleError, match="no-such-command-here: command not found"):
        ops_run.run(["no-such-command-here"], lambda m: None, error=ModuleCommandError)


def test_timeout_kills_and_says_so():
    with pytest.raises(ops_run.CommandError, match=r"^`sleep 30` did not finish within 0.5 s \(stopped it\)$") as exc:
        ops_run.run(["sleep", "30"], lambda m: None, timeout=0.5)
    assert exc.value.status is None


def test_stream_shows_lines_as_they_come_and_hides_chatter(capfd):
    import re

    proc = ops_run.run(["sh", "-c", "echo one; echo 'x: Waiting'; echo two >&2"], lambda m: None, stream=True,
                       hide=re.compile(r": Waiting$"))
    err = capfd.readouterr().err
    assert err == "  one\n  two\n" and proc.stdout == "one\nx: Waiting\ntwo\n"


def test_heartbeat_while_a_command_is_silent():
    said = []
    ops_run.run(["sleep", "1.3"], said.append, heartbeat=0.4)
    beats = [m for m in said if m.startswith("still running: ")]
    assert said[0] == "$ sleep 1.3" and 2 <= len(beats) <= 3
    assert beats[0].startswith("still running: sleep 1.3 (") and beats[0].endswith(" s)")


def test_no_heartbeat_while_a_stream_prints_nor_for_silent_probes():
    said = []
    ops_run.run(["sh", "-c", "for i in 1 2 3 4 5 6; do echo $i; sleep 0.2; done"], said.append, stream=True, heartbeat=0.5)
    ops_run.run(["sleep", "0.7"], said.append, echo=False, heartbeat=0.2)
    assert not [m for m in said if m.startswith("still running")]


class FakeTty(io.StringIO):
    def isatty(self):
        return True


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch):
    assert not ops_run.colour_on(io.StringIO())
    assert ops_run.colour_on(FakeTty())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not ops_run.colour_on(FakeTty())
    monkeypatch.setenv("NO_COLOR", "")  # no-color.org: only a non-empty value counts
    assert ops_run.colour_on(FakeTty())


def test_the_echo_is_bold_on_a_terminal_only(monkeypatch):
    said = []
    monkeypatch.setattr(sys, "stderr", FakeTty())
    ops_run.run(["true"], said.append)
    monkeypatch.setenv("NO_COLOR", "1")
    ops_run.run(["true"], said.append)
    assert said == ["$ \033[1mtrue\033[0m", "$ true"]


def test_record_holds_every_echoed_command_dry_or_real(tmp_path, monkeypatch):
    record = tmp_path / "commands.jsonl"
    monkeypatch.setenv(ops_run.RECORD_ENV, str(record))
    ops_run.run(["echo", "a b"], lambda m: None, dry=True)
    ops_run.run(["echo", "a b"], lambda m: None)
    ops_run.run(["echo", "probe"], lambda m: None, echo=False)  # silent reads are not what --dry prints
    with pytest.raises(ops_run.CommandError):
        ops_run.run(["false"], lambda m: None)
    assert [json.loads(line) for line in record.read_text().splitlines()] == [["echo", "a b"], ["echo", "a b"], ["false"]]
    assert ops_run.read_record(record) == [["echo", "a b"], ["echo", "a b"], ["false"]]
    assert ops_run.read_record(tmp_path / "none") == []


def test_invoke_echo_is_plain_without_a_terminal_and_recorded(tmp_path):
    """`./iot --dry api | cat` once printed invoke's bold escape codes into the pipe; `c.run` is recorded too."""
    import subprocess
    from pathlib import Path

    from ops import cli

    record = tmp_path / "commands.jsonl"
    env = {**__import__("os").environ, ops_run.RECORD_ENV: str(record)}
    env.pop("NO_COLOR", None)
    proc = subprocess.run([sys.executable, "-m", "ops.cli", "--dry", "api", "--port", "9999"], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).resolve().parents[2], env=env, check=True)
    assert "\033" not in proc.stdout and "API_PORT=9999" in proc.stdout
    assert json.loads(record.read_text().splitlines()[-1])[:2] == ["env", "API_PORT=9999"]
    assert cli.echo_format(io.StringIO()) == "{command}" and cli.echo_format(FakeTty()).startswith("\033[1;37m")


def test_a_masked_secret_is_neither_shown_nor_recorded(tmp_path, monkeypatch):
    record = tmp_path / "commands.jsonl"
    monkeypatch.setenv(ops_run.RECORD_ENV, str(record))
    said = []
    proc = ops_run.run(["echo", "--token", "SECRET-1", "x"], said.append, mask=["SECRET-1"])
    assert proc.stdout == "--token SECRET-1 x\n"  # it ran with the secret
    with pytest.raises(ops_run.CommandError) as exc:
        ops_run.run(["sh", "-c", "exit 2", "SECRET-1"], said.append, mask=["SECRET-1"])
    assert said == ["$ echo --token '***' x", "$ sh -c 'exit 2' '***'"] and "SECRET" not in str(exc.value)
    assert "SECRET" not in record.read_text() and exc.value.argv[-1] == "***"


def test_a_missing_input_file_is_one_line(tmp_path):
    with pytest.raises(ops_run.CommandError, match=r"/absent: cannot open it .*No such file"):
        ops_run.run(["cat"], lambda m: None, stdin_file=tmp_path / "absent")


# -- the record: what `--dry TASK` prints is what TASK runs ---------------------------------------------------
RECORDING_DOCKER = """\
#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["REC_LOG"], "a") as log:
    log.write(json.dumps(["docker", *args]) + "\\n")
if args[:1] == ["info"]:
    print("active true")
elif args[:2] == ["volume", "ls"]:
    print("iot-test_influxdb-data\\niot-test_mosquitto-data")
elif args[:2] == ["service", "ls"]:
    print("s1")
elif args[:2] == ["service", "inspect"]:
    print(json.dumps([{{"Spec": {{"Name": "iot-test_api"}}, "PreviousSpec": {{"Name": "iot-test_api"}}}}]))
"""  # anything else (the changes, and ps/network ls of the wait): no output, exit 0


@pytest.mark.parametrize("task", [["undeploy", "--env", "test", "--volumes"], ["rollback", "--env", "test"]])
def test_dry_and_real_record_the_same_commands(stand_ins, tmp_path, task):
    """IOT_RECORD_COMMANDS holds the same commands for `./iot --dry TASK` and `./iot TASK` (against a stand-in
    docker), and they are the commands the real run made that are not reads."""
    import os
    import subprocess
    from pathlib import Path

    calls = stand_ins(RECORDING_DOCKER, "docker")
    records = {}
    for mode in ("dry", "real"):
        record = tmp_path / f"{mode}.jsonl"
        proc = subprocess.run([sys.executable, "-m", "ops.cli", *(["--dry"] if mode == "dry" else []), *task],
                              cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=120,
                              env={**os.environ, ops_run.RECORD_ENV: str(record)})
        assert proc.returncode == 0, proc.stderr
        records[mode] = ops_run.read_record(record)
    assert records["dry"] == records["real"] != []
    assert records["real"][0][:3] == (["docker", "stack", "rm"] if task[0] == "undeploy" else ["docker", "service", "rollback"])
    made = calls()
    assert all(c in made for c in records["real"])
