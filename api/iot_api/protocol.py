"""The api's HTTP protocol: uvicorn's httptools protocol, given to uvicorn as `http=ApiProtocol`, plus
slow-client protection, a useful 503 at the connection limit, and one send() per response.

Slow clients: uvicorn closes an idle keep-alive connection (timeout_keep_alive) but has no deadline for
a request's headers: a client that connects and sends nothing, or trickles its headers a byte at a
time, holds its connection (one of API_MAX_CONNECTIONS) forever. This protocol gives every request
API_HEADER_TIMEOUT from its first byte (from the connection's opening for the first request) to its
last header line, then answers 408 and closes. The body has its own deadline (API_BODY_TIMEOUT, in
app.py's post_data), needed only when it did not arrive with the headers (BODY_RECEIVED below).
Above API_MAX_CONNECTIONS it answers 503 with JSON and Retry-After, where uvicorn's own
limit_concurrency answers a bare text 503 without Retry-After.

One send() per response: uvicorn writes a response's head and its body with two transport writes,
so two send() calls and two TCP segments for every small JSON answer. Writes made in one turn of
the event loop are joined and sent at its end (docs/benchmarks.md: ~15% less CPU per single-reading
request, measured under wrk).

Built on internals of the pinned uvicorn (api/requirements.txt): tests/integration/
test_api_slow_client.py and test_api_http_framing.py exercise them; re-run both when uvicorn is bumped.
Worth it: `./iot bench --scenarios floor` alternates uvicorn's own protocol and this one on the same
HTTP floor (docs/benchmarks.md). So that an upgrade cannot break the api silently, the api refuses to
start on another uvicorn than UVICORN_TESTED (check_uvicorn, called by __main__), and a unit test ties
that constant to the pin.
"""
from __future__ import annotations

import asyncio
import logging

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from . import config, metrics

log = logging.getLogger("iot_api")

UVICORN_TESTED = "0.54.0"  # the uvicorn whose HttpToolsProtocol internals ApiProtocol uses (api/requirements.txt)


def check_uvicorn(installed: str | None = None) -> str | None:
    """None when the installed uvicorn is the one ApiProtocol was written and tested against; else why not."""
    if installed is None:
        import uvicorn

        installed = uvicorn.__version__
    if installed == UVICORN_TESTED:
        return None
    return (f"uvicorn {installed} is installed, but the api's HTTP protocol (iot_api/protocol.py) subclasses the "
            f"internals of uvicorn {UVICORN_TESTED}: install the pinned version (pip install -r api/requirements.txt), "
            "or bump UVICORN_TESTED with the pin once tests/integration/test_api_slow_client.py and "
            "test_api_http_framing.py pass on the new one")

# Set in a request's scope once its whole body has arrived before the app asked for it (the usual
# case: a small POST comes in one segment); post_data then skips its API_BODY_TIMEOUT deadline, whose
# asyncio.timeout() cost ~6% of the api's CPU per single-reading request (py-spy).
BODY_RECEIVED = "iot.body_received"

_REQUEST_TIMEOUT_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s")


async def _overloaded(scope, receive, send):
    settings = config.of_process()
    payload = orjson.dumps({"error": f"the api is at its connection limit ({settings.max_connections}, "
                                     "API_MAX_CONNECTIONS); retry later", "retry_after": settings.retry_after_s})
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"retry-after", str(settings.retry_after_s).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})
    metrics.request_done(scope.get("method", "OTHER"), "overloaded", 503, 0.0)


class ApiProtocol(HttpToolsProtocol):
    """uvicorn's HttpToolsProtocol (pinned uvicorn: api/requirements.txt) with a header deadline and
    a JSON 503 + Retry-After above API_MAX_CONNECTIONS. Given to uvicorn as `http=ApiProtocol`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        settings = config.of_process()
        self._max_connections = settings.max_connections
        self._header_timeout = settings.header_timeout_s
        self.limit_concurrency = None  # ours below, with a useful 503
        self._header_timer: asyncio.TimerHandle | None = None
        self._request_bytes = False  # bytes of a request whose headers are not complete yet

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self._header_timeout, self._header_timed_out)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def connection_made(self, transport):
        super().connection_made(CoalescingTransport(transport, self.loop))
        self._arm_header_timer()  # the first request's headers: within API_HEADER_TIMEOUT of connecting

    def connection_lost(self, exc):
        self._disarm_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.cycle is None or self.cycle.response_complete:  # between requests: a new one begins
            self._request_bytes = True
            self._arm_header_timer()
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        self._request_bytes = False
        over = (len(self.connections) > self._max_connections or len(self.tasks) >= self._max_connections)
        if not over:
            super().on_headers_complete()
            return
        log.warning("connection limit reached, answering 503",
                    extra={"connections": len(self.connections), "limit": self._max_connections})
        app, self.app = self.app, _overloaded
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self.cycle is not None and not self.cycle.more_body:  # (uvicorn may have returned early)
            self.cycle.scope[BODY_RECEIVED] = True

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self._request_bytes:  # a request began and its headers did not arrive in time
            payload = orjson.dumps({"error": f"request headers did not arrive within {self._header_timeout:g} s "
                                             "(API_HEADER_TIMEOUT)"})
            self.transport.write(_REQUEST_TIMEOUT_408 % (len(payload), payload))
        self.transport.close()  # an idle new connection that never sent a byte: just closed


class CoalescingTransport:
    """A transport whose writes within one turn of the event loop leave as one write. Everything
    else is the real transport's; close() sends what is pending first, abort() drops it."""

    __slots__ = ("_transport", "_loop", "_pending")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def __getattr__(self, name):  # is_closing, get_extra_info, pause/resume_reading, abort...
        return getattr(self._transport, name)
