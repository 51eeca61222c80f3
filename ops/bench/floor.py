"""The HTTP floor: uvicorn alone, with the api's server settings (uvloop, httptools, the same workers),
serving an application that reads the body and answers 201 without storing anything.

No api on this server can answer faster on the machine, so the floor over the one-write-per-request
baseline bounds the group-commit ratio that any api could reach here (docs/benchmarks.md).

The same floor also runs with the api's own protocol (iot_api.protocol.ApiProtocol: uvicorn's httptools
protocol subclassed for header deadlines, a JSON 503 and one send() per response): the two, alternated
in one run, show what that subclass of uvicorn's internals is worth on the HTTP path (issue #15).

    python -m ops.bench.floor --protocol httptools|api --port PORT --workers N
"""
from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager

from .common import ROOT, free_port, listening

NAME = "http floor: uvicorn storing nothing"
NAME_API = "http floor, the api's protocol"
PROTOCOLS = {"httptools": NAME, "api": NAME_API}
_ANSWER = b'{"stored":1}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_ANSWER)).encode())]


async def app(scope, receive, send):
    """ASGI: read the whole body, answer 201 as the api does, store nothing."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 201, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _ANSWER})


class Server:
    def __init__(self, proc: subprocess.Popen, url: str):
        self.proc, self.url = proc, url


def main(argv: list[str] | None = None) -> int:
    """uvicorn with the api's server settings (uvloop, workers, no access log), `app`, and the protocol asked."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m ops.bench.floor")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="httptools")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    http = "httptools"
    if args.protocol == "api":
        from iot_api.protocol import ApiProtocol

        http = ApiProtocol
    uvicorn.run("ops.bench.floor:app", host="127.0.0.1", port=args.port, workers=args.workers, loop="uvloop", http=http,
                access_log=False, server_header=False, proxy_headers=False, log_level="warning",
                limit_concurrency=None, backlog=2048)
    return 0


@contextmanager
def server(workers: int, protocol: str = "httptools"):
    """uvicorn serving `app` on a free loopback port for the duration of a `with` block."""
    port = free_port()
    cmd = [sys.executable, "-m", "ops.bench.floor", "--protocol", protocol, "--port", str(port), "--workers", str(workers)]
    with listening(cmd, port, "the floor server", cwd=ROOT) as proc:
        yield Server(proc, f"http://127.0.0.1:{port}")

if __name__ == "__main__":
    sys.exit(main())
