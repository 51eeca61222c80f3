"""The one error type of the ops layer: tasks catch OpsError alone, so no module's error shows a traceback."""


class OpsError(Exception):
    """What stops an ops step: str() is the one line shown to the user, and the task exits non-zero.

    exit_code follows the tasks' convention: 1 for a failure, 2 for bad input (an option or value the
    user gave, e.g. ops.bench's OptionError)."""

    exit_code = 1
