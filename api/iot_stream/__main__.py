"""`python -m iot_stream historian | processor | check historian`: the MQTT services of the api image.

Each service is imported only when asked for (the processor is its own module, iot_stream.processor),
so one service's dependencies or import errors never stop the other.
"""
from __future__ import annotations

import importlib
import sys

SERVICES = {"historian": "iot_stream.historian", "processor": "iot_stream.processor"}
CHECKS = {"historian": "iot_stream.historian"}  # `check NAME`: the container's healthcheck
USAGE = "usage: python -m iot_stream {historian | processor | check historian}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 1 and args[0] in SERVICES:
        return importlib.import_module(SERVICES[args[0]]).main()
    if len(args) == 2 and args[0] == "check" and args[1] in CHECKS:
        return importlib.import_module(CHECKS[args[1]]).check()
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
