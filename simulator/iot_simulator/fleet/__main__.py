"""`python -m iot_simulator.fleet`: parse, run, print the one-line JSON summary on stdout, exit.

Exit status: 0 when it ran (the summary says how many readings were acked), 2 on bad usage (flags,
environment, secret file, credentials the broker refuses): one line on stderr, never a traceback.
"""
from __future__ import annotations

import json
import sys

from .settings import EXIT_USAGE, PROG, UsageError, parse


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse(sys.argv[1:] if argv is None else argv)
        from .run import Fleet, load_stations  # paho imported only once the settings are good
        fleet = Fleet(cfg, load_stations(cfg.stations))
        summary = fleet.run()
    except UsageError as exc:
        print(f"{PROG}: error: {exc} (see --help)", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # a Ctrl-C before the signal handlers are in place
        print(f"{PROG}: interrupted before start", file=sys.stderr)
        return 0
    sys.stdout.write(json.dumps(summary) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
