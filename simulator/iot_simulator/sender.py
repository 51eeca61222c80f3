"""HTTP to the api: one POST per batch, what its answer means, and how long to wait before a retry.

The api's contract: 201 means every reading of the request is stored. 503 (with Retry-After), any other
5xx, 408, 429, a timeout or a connection error mean nothing is claimed stored: send the same readings
again later (safe, a point is identified by sensor, type and time). Any other 4xx is final for those
readings: count them as rejected and never resend them; a 422 may say that part of a batch was stored.
"""
from __future__ import annotations

import email.utils
import math
import random
import time
from dataclasses import dataclass
from typing import Self

import aiohttp
import orjson

from . import __version__

STORED, RETRY, REJECTED = "stored", "retry", "rejected"
RETRY_STATUSES = frozenset({408, 429})


@dataclass(frozen=True)
class Outcome:
    kind: str  # STORED, RETRY or REJECTED (REJECTED may still carry stored > 0: a partial 422)
    stored: int = 0
    rejected: int = 0
    reason: str = ""  # short key for counting errors: "503", "timeout", "connection", "422"…
    message: str = ""  # what the server or the network said, for the log
    retry_after: float | None = None


def classify(status: int, headers, body: bytes, n: int) -> Outcome:
    """What an api answer to a request of `n` readings means (pure: unit-tested without a server)."""
    if status == 201:
        return Outcome(STORED, stored=n, reason="201")
    doc = _json(body)
    error = _error_text(doc, body)
    if status >= 500 or status in RETRY_STATUSES:
        return Outcome(RETRY, reason=str(status), message=error,
                       retry_after=parse_retry_after(headers.get("Retry-After") if headers else None))
    if 400 <= status < 500:
        if status == 422 and isinstance(doc, dict) and _is_count(doc.get("stored")) and doc["stored"] <= n:
            # Partial batch: the api stored the valid readings and lists the others; resending any of
            # them would be pointless (stored ones are stored, rejected ones would fail again).
            stored = doc["stored"]
            return Outcome(REJECTED, stored=stored, rejected=n - stored, reason="422", message=error)
        return Outcome(REJECTED, rejected=n, reason=str(status), message=error)
    # 1xx/2xx other than 201/3xx: not the api's contract (a proxy, a wrong --url). Not known stored, and
    # resending to the same place will not change that: count as rejected, loudly.
    return Outcome(REJECTED, rejected=n, reason=str(status),
                   message=f"unexpected HTTP {status} (is --url the api?) {error}".rstrip())


def _is_count(v) -> bool:
    return type(v) is int and v >= 0


def _json(body: bytes):
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


def _error_text(doc, body: bytes) -> str:
    """The server's own words: `error`, plus the first listed problem or rejected reading."""
    if isinstance(doc, dict):
        text = str(doc.get("error", "")).strip()
        for key in ("rejected", "problems"):
            items = doc.get(key)
            if isinstance(items, list) and items and isinstance(items[0], dict):
                first = items[0]
                where = f"index {first.get('index')}" if first.get("index") is not None else "body"
                field = f" {first['field']}" if first.get("field") else ""
                more = f" (+{len(items) - 1} more)" if len(items) > 1 else ""
                text += f" [{where}{field}: {first.get('message', '')}{more}]"
                break
        if text:
            return text
    snippet = body[:200].decode(errors="replace").strip()
    return snippet


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        secs = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        secs = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(secs):
        return None
    return max(0.0, secs)


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random,
                  retry_after: float | None = None) -> float:
    """Seconds to wait before retry number `attempt + 1`.

    Exponential (base * 2**attempt, at most `cap`) with "equal jitter": uniform in [d/2, d], so a
    thousand devices that failed together do not come back together, yet none retries much sooner
    than planned. A server's Retry-After is a floor (plus up to 20 % jitter for the same herd reason),
    bounded by `cap` so a bad header cannot park a device for an hour.
    """
    d = min(cap, base * 2 ** min(attempt, 40))
    delay = rng.uniform(d / 2, d)
    if retry_after is not None:
        delay = max(delay, retry_after * rng.uniform(1.0, 1.2))
    return min(delay, cap)


class HttpPoster:
    """One aiohttp session (one connection pool) shared by every simulated device."""

    def __init__(self, url: str, token: str | None, timeout: float, connections: int, batch_mode: bool):
        self.url = url
        self.batch_mode = batch_mode
        self.headers = {"Content-Type": "application/json", "User-Agent": f"iot-simulator/{__version__}"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        # No `total` timeout: it would include waiting for a free connection of the pool, which with a
        # thousand devices on a hundred connections is normal queueing, not a failure of the api.
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        self.connections = connections
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(limit=self.connections, ttl_dns_cache=10)
        # trust_env stays False: the api is on the local network; a proxy meant for the internet must
        # not be used for it.
        self.session = aiohttp.ClientSession(connector=connector, timeout=self.timeout)
        return self

    async def __aexit__(self, *exc) -> None:
        if self.session is not None:
            await self.session.close()

    async def __call__(self, readings: list[dict]) -> Outcome:
        # Batch size 1 sends the bare object, exactly the course's payload; otherwise a JSON array.
        body = orjson.dumps(readings if self.batch_mode else readings[0])
        try:
            async with self.session.post(self.url, data=body, headers=self.headers,
                                         allow_redirects=False) as resp:
                raw = await resp.read()
                return classify(resp.status, resp.headers, raw, len(readings))
        except TimeoutError:  # includes aiohttp's ServerTimeoutError
            return Outcome(RETRY, reason="timeout", message="no answer within --timeout")
        except (aiohttp.ClientError, OSError) as exc:
            return Outcome(RETRY, reason="connection", message=f"{type(exc).__name__}: {exc}")
