"""A lean HTTP/1.1 client for InfluxDB's /write: the one request on the api's hot path to storage.

aiohttp spends ~170 us of CPU on each request here, which every flush pays in full: for batches of
100 readings that was a third of the api's CPU. This client keeps connections alive, sends a
request head built once plus the body in one write, and parses the answer with httptools (the parser
uvicorn already uses): ~50 us (docs/benchmarks.md). Queries, pings and the setup stay on aiohttp
(influx.py), off the hot path.

A write may be sent twice (a kept-alive connection that InfluxDB closed while idle is retried once
on a new one): harmless, a point written again overwrites itself.
"""
from __future__ import annotations

import asyncio
import base64
import ssl
import time
from urllib.parse import urlencode, urlsplit

import httptools


class WriteFailed(ConnectionError):
    """No answer from InfluxDB: connection refused, closed or reset, or an answer that is not HTTP."""


class _Stale(WriteFailed):
    """A kept-alive connection was closed before any answer arrived: retried once on a new one."""


class _Connection(asyncio.Protocol):
    """One connection to InfluxDB, one request at a time."""

    __slots__ = ("transport", "parser", "future", "chunks", "closed", "answered", "keep_alive", "idle_since")

    def __init__(self):
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.future: asyncio.Future | None = None
        self.chunks: list[bytes] = []
        self.closed = False
        self.answered = False  # a byte of the current answer arrived
        self.keep_alive = True
        self.idle_since = 0.0

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.future is None:  # nothing asked: InfluxDB never talks first
            self.close()
            return
        self.answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(WriteFailed(f"InfluxDB's answer is not valid HTTP: {exc}"))
            self.close()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        future, self.future = self.future, None
        self.keep_alive = self.parser.should_keep_alive()
        body, self.chunks = b"".join(self.chunks), []
        if future is not None and not future.done():
            future.set_result((self.parser.get_status_code(), body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.answered:
            self._fail(WriteFailed(f"InfluxDB closed the connection in the middle of its answer ({exc or 'EOF'})"))
        else:
            self._fail(_Stale(f"InfluxDB closed the connection without answering ({exc or 'EOF'})"))

    def _fail(self, exc: Exception) -> None:
        future, self.future = self.future, None
        if future is not None and not future.done():
            future.set_exception(exc)

    def send(self, data: bytes) -> asyncio.Future:
        self.future = future = asyncio.get_running_loop().create_future()
        self.answered = False
        self.transport.write(data)
        return future

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()  # nothing worth flushing: the request failed or was answered


class WriteClient:
    """POST line protocol to `{url}/write?{params}`; at most `max_connections` at once, the rest wait."""

    def __init__(self, url: str, params: dict[str, str], auth: tuple[str, str] | None, timeout_s: float,
                 max_connections: int = 64, idle_timeout_s: float = 30.0, ssl_context: ssl.SSLContext | None = None):
        parts = urlsplit(url)
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
        host_header = parts.netloc.rsplit("@", 1)[-1]
        head = (f"POST {parts.path.rstrip('/')}/write?{urlencode(params)} HTTP/1.1\r\n"
                f"Host: {host_header}\r\nContent-Type: text/plain; charset=utf-8\r\n")
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            head += f"Authorization: Basic {token}\r\n"
        self._head = head.encode() + b"Content-Length: "
        self._timeout_s = timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """(status, body) of InfluxDB's answer. Raises WriteFailed (no usable answer), OSError (cannot
        connect) or TimeoutError (no answer within timeout_s, connecting included)."""
        request = b"%s%d\r\n\r\n%s" % (self._head, len(body), body)
        async with self._slots, asyncio.timeout(self._timeout_s):
            conn = self._take_idle()
            if conn is not None:
                try:
                    return await self._exchange(conn, request)
                except _Stale:
                    pass  # closed by InfluxDB while idle (restart, its idle timeout): once more, anew
            return await self._exchange(await self._connect(), request)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Connection, self._host, self._port, ssl=self._ssl)
        return conn

    async def _exchange(self, conn: _Connection, request: bytes) -> tuple[int, bytes]:
        self._busy.add(conn)
        try:
            answer = await conn.send(request)
        except BaseException:  # failed, timed out or cancelled: the connection's state is unknown
            conn.close()
            raise
        finally:
            self._busy.discard(conn)
        if conn.keep_alive and not conn.closed:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()
        return answer

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()  # the most recently used: the least likely to be stale
            if not conn.closed and time.monotonic() - conn.idle_since < self._idle_timeout_s:
                return conn
            conn.close()
        return None

    async def close(self) -> None:
        for conn in self._idle + list(self._busy):
            conn.close()
        self._idle.clear()
