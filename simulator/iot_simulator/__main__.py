"""`python -m iot_simulator` / `iot-simulator`: parse, run, print the summary, exit with its status."""
from __future__ import annotations

import asyncio
import logging
import sys

import orjson

from .cli import PROG, UsageError, parse_args
from .runner import run
from .stats import EXIT_NOT_STORED, EXIT_USAGE

log = logging.getLogger("iot_simulator")


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_args(argv)
    except UsageError as exc:
        print(f"{PROG}: error: {exc} (see --help)", file=sys.stderr)
        return EXIT_USAGE
    # Progress and warnings go to stderr; stdout carries only the --json summary, for tools.
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        summary = asyncio.run(run(cfg))
    except KeyboardInterrupt:  # only before the loop's own signal handling is in place
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_NOT_STORED
    for line in summary.text().splitlines():
        log.info(line)
    if cfg.json:
        sys.stdout.buffer.write(orjson.dumps(summary.as_dict()) + b"\n")
        sys.stdout.flush()
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
