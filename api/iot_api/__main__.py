"""`python -m iot_api`: check the settings, then serve with uvicorn (uvloop + httptools).

Settings are checked here, before any worker starts, so that a bad value ends with one line naming
the variable and exit status 2 rather than a traceback per worker.
"""
from __future__ import annotations

import os
import signal
import sys
import tempfile


def main() -> int:
    from . import config, logs, worker_slot
    from .auth import Tokens, TokensError

    try:
        settings = config.load()
        if settings.tokens_file:
            Tokens.load(settings.tokens_file)
    except (config.ConfigError, TokensError) as exc:
        print(f"iot-api: configuration error: {exc}", file=sys.stderr)
        return 2

    from .protocol import check_uvicorn

    problem = check_uvicorn()
    if problem:
        print(f"iot-api: {problem}", file=sys.stderr)
        return 2

    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Workers are separate processes: prometheus-client aggregates their samples through files.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="iot-api-metrics-")

    if settings.workers > 1 and not os.environ.get(worker_slot.SLOTS_DIR_ENV):
        # Each worker claims a slot here: its id for server timestamps (worker_slot.py).
        os.environ[worker_slot.SLOTS_DIR_ENV] = tempfile.mkdtemp(prefix="iot-api-workers-")

    import uvicorn

    from .protocol import ApiProtocol

    # uvicorn re-raises SIGTERM once its graceful shutdown is over (requests answered, queue flushed);
    # at that point stopping is a success, so exit 0 rather than die by the signal (Docker's 143).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        "iot_api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        # uvicorn's httptools protocol with a header deadline (API_HEADER_TIMEOUT) and a JSON 503 with
        # Retry-After above API_MAX_CONNECTIONS (protocol.py: ApiProtocol); the body deadline is in post_data.
        http=ApiProtocol,
        lifespan="on",
        log_config=logs.config(settings.log_level),
        access_log=settings.access_log,
        server_header=False,
        proxy_headers=False,  # the api does not use the client address; skip the middleware
        limit_concurrency=None,  # ApiProtocol enforces API_MAX_CONNECTIONS
        backlog=2048,
        timeout_keep_alive=settings.keepalive_timeout_s,  # API_KEEPALIVE_TIMEOUT: idle connections closed
        # On SIGTERM uvicorn stops accepting, waits for in-flight requests, then the lifespan
        # shutdown flushes what is still queued for InfluxDB (app.py).
        timeout_graceful_shutdown=max(10, int(settings.influxdb_timeout_s * 3)),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
