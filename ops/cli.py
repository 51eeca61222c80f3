"""`./iot`'s entry point: invoke's own program under the name iot (the wrapper runs `python -m ops.cli`).

The same as the `invoke` script (tasks found in tasks/, invoke.yaml, --list, --dry, --help TASK), except
that its usage line says `iot` and `--print-completion-script bash` prints a script that completes
`iot` and `./iot`: source it from ~/.bashrc with `eval "$(/path/to/iot --print-completion-script bash)"`.
"""
import os
import shlex
import sys

import invoke
from invoke import Config, Exit, Local, Program

from ops import run as ops_run

NAMES = ["iot", "./iot"]

# invoke's own bash script calls `iot --complete`, which fails where iot is not on PATH (`./iot`, the
# usual case): this one calls the word the user typed, and hands invoke the name it strips ("iot").
BASH_COMPLETION = """\
# ./iot tab completion for bash (printed by ./iot --print-completion-script bash)
_complete_iot() {
    local candidates
    candidates=$("${COMP_WORDS[0]}" --complete -- iot "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null)
    mapfile -t COMPREPLY < <(compgen -W "${candidates}" -- "$2")
}
complete -F _complete_iot -o default iot ./iot"""


def echo_format(stream=None) -> str:
    """invoke's echo of `c.run`: its bold white only on a terminal without NO_COLOR (ops.run's colour rule)."""
    stream = sys.stdout if stream is None else stream
    return "\033[1;37m{command}\033[0m" if ops_run.colour_on(stream) else "{command}"


class RecordingLocal(Local):
    """invoke's runner, plus ops.run's `would run:` marker in a dry run and its IOT_RECORD_COMMANDS record of
    every echoed `c.run` (dry or real)."""

    def echo(self, command: str) -> None:
        # --dry: the same `would run: CMD` line as ops.run's, so every task's dry output reads alike
        print(("would run: " if self.opts.get("dry") else "") + self.opts["echo_format"].format(command=command),
              flush=True)
        if os.environ.get(ops_run.RECORD_ENV):
            try:
                argv = shlex.split(command)
            except ValueError:
                argv = [command]
            ops_run.record(argv)


class IotConfig(Config):
    @staticmethod
    def global_defaults() -> dict:
        defaults = Config.global_defaults()
        defaults["run"]["echo_format"] = echo_format()
        defaults["runners"]["local"] = RecordingLocal
        return defaults


class IotProgram(Program):
    def parse_core_args(self) -> None:
        super().parse_core_args()
        if self.args["print-completion-script"].value == "bash":
            print(BASH_COMPLETION)
            raise Exit


def make_program() -> Program:
    # Named Invoke with invoke's version, as before: `./iot --version` still says which invoke runs.
    return IotProgram(name="Invoke", binary="iot", binary_names=NAMES, version=invoke.__version__,
                      config_class=IotConfig)


def main(argv: list[str] | None = None) -> None:
    make_program().run(["iot", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
