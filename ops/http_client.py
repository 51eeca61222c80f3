"""HTTP calls of ops/ (and the tests) with requests: every answer comes back whatever its status, and a
failure to get one is said in one short line.

requests raises only when no answer came (refused, name unknown, timeout, TLS): a RequestException,
which is an OSError, so `except OSError` keeps catching it. Its text is long (pool, url, retries,
object addresses); `reason()` gives the cause at the bottom of it, as urllib's URLError.reason did.
"""
from __future__ import annotations

import requests

TIMEOUT_S = 10.0


def request(method: str, url: str, *, timeout: float = TIMEOUT_S, **kwargs) -> requests.Response:
    """One request with a timeout (requests has none by default). 4xx/5xx are answers: read
    `.status_code`; a connection failure or timeout raises requests.RequestException (an OSError)."""
    return requests.request(method, url, timeout=timeout, **kwargs)


def reason(exc: BaseException) -> str:
    """The innermost cause of EXC in one line, e.g. '[Errno 111] Connection refused' or 'timed out'."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        nested = (getattr(exc, "reason", None), exc.__cause__, *getattr(exc, "args", ())[:1])
        inner = next((e for e in nested if isinstance(e, BaseException)), None)
        if inner is None:
            break
        exc = inner
    return " ".join(str(exc).split()) or type(exc).__name__
