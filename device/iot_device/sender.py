"""Moving readings from the on-disk queue to the api: POST a batch, then act on the answer.

The api's contract, and what the agent does with each answer:
  201                      all stored: delete them from the queue.
  422 + "rejected"         the others WERE stored: delete those, dead-letter the listed ones.
  400/422 + "problems"     nothing stored: dead-letter the listed readings, resend the rest at once;
                           with no reading named, halve the batch until the bad one is alone.
  413                      batch too large: halve it and resend at once (and remember the limit).
  408, 429, 5xx, timeout,  nothing stored: keep everything, retry with exponential backoff
  connection error         (at least Retry-After, when the server sends one).
  401/403                  bad or missing token: keep everything, log loudly, back off; an operator
                           fixes the token file, which is re-read when it changes (no restart needed).
  anything else            (3xx, 404, 2xx other than 201…) a misconfiguration, not the readings'
                           fault: keep everything, log loudly, back off.
Resending is safe: the api identifies a point by sensor_id + type + ts, so a reading stored twice is
the same point overwritten, never a duplicate.
"""
from __future__ import annotations

import email.utils
import json
import logging
import math
import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import NamedTuple

from . import __version__
from .config import ConfigError, read_token_file
from .queue import Queue, Row

log = logging.getLogger("iot_device")

# Outcome kinds
STORED = "stored"        # 201
PARTIAL = "partial"      # 422 with "rejected": the others stored
REFUSED = "refused"      # 400/422 with "problems": nothing stored; `rejected` names the culprits
TOO_LARGE = "too_large"  # 413
AUTH = "auth"            # 401/403
RETRY = "retry"          # transient: 408, 429, 5xx, network
UNEXPECTED = "unexpected"  # anything else

MAX_RESPONSE_BYTES = 1 << 20


class Outcome(NamedTuple):
    kind: str
    status: int | None = None                   # HTTP status; None for a network error
    message: str = ""                           # for the log and `status`
    rejected: tuple[tuple[int, str], ...] = ()  # (index in the batch, server's message)
    retry_after: float | None = None


def backoff_delay(failures: int, base: float, cap: float, rnd: Callable[[], float] = random.random) -> float:
    """Seconds to wait after `failures` consecutive failures (1, 2, …): base·2^(failures-1), capped,
    then scaled by a random factor in [0.5, 1] so that many devices coming back after a shared outage
    do not all knock at the same second. Always within [base/2, cap]."""
    exp = min(max(failures, 1) - 1, 64)  # 2**64·base is past any cap; avoids float overflow
    return min(cap, base * (2 ** exp)) * (0.5 + 0.5 * rnd())


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def classify(status: int, headers: dict[str, str], body: bytes, n: int) -> Outcome:
    """What the api's answer to a batch of `n` readings means. Pure, so it is unit-tested directly."""
    if status == 201:
        return Outcome(STORED, status)
    doc = _json(body)
    error = _error_text(doc, body, status)
    if status in (408, 429) or 500 <= status <= 599:
        return Outcome(RETRY, status, error, retry_after=parse_retry_after(_header(headers, "Retry-After")))
    if status in (401, 403):
        return Outcome(AUTH, status, error)
    if status == 413:
        return Outcome(TOO_LARGE, status, error)
    if status in (400, 422) and isinstance(doc, dict):
        if isinstance(doc.get("rejected"), list):
            listed = _by_index(doc["rejected"], n)
            if listed is not None:
                return Outcome(PARTIAL, status, error, listed)
        elif isinstance(doc.get("problems"), list) or "error" in doc:
            listed = _by_index(doc.get("problems") or [], n)
            if listed is not None:
                return Outcome(REFUSED, status, error, listed)
    return Outcome(UNEXPECTED, status, error)


def _header(headers: dict[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def _json(body: bytes):
    try:
        return json.loads(body.decode("utf-8")) if body else None
    except ValueError:
        return None


def _error_text(doc, body: bytes, status: int) -> str:
    if isinstance(doc, dict) and doc.get("error"):
        return f"HTTP {status}: {doc['error']}"
    text = body[:200].decode("utf-8", "replace").strip().replace("\n", " ")
    return f"HTTP {status}" + (f": {text}" if text else "")


def _by_index(items: list, n: int) -> tuple[tuple[int, str], ...] | None:
    """(index, message) per reading named in a `rejected`/`problems` list, several problems of one
    reading joined. Entries with index null (the body as a whole) are skipped. None when the list is
    malformed or names an index outside the batch: then we trust nothing in it."""
    messages: dict[int, list[str]] = {}
    for item in items:
        if not isinstance(item, dict):
            return None
        index = item.get("index")
        if index is None:
            continue
        if type(index) is not int or not 0 <= index < n:
            return None
        field = item.get("field")
        text = str(item.get("message", "")).strip() or "refused"
        messages.setdefault(index, []).append(f"{field}: {text}" if field else text)
    return tuple((i, "; ".join(m)) for i, m in sorted(messages.items()))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would turn a redirected POST into a GET without the body; a redirect here means a wrong
    # DEVICE_API_URL (http vs https, a captive portal): report it instead of following it.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class Client:
    """POSTs batches to {api}/data. The token comes from a file when one is set, re-read when the
    file changes, so an operator who fixes it after a 401 needs no restart."""

    def __init__(self, data_url: str, timeout: float, token: str | None = None,
                 token_file: str | None = None):
        self.data_url = data_url
        self.timeout = timeout
        self._token = token
        self._token_file = token_file
        self._token_stamp = _stamp(token_file) if token_file else None
        self._opener = urllib.request.build_opener(_NoRedirect)

    def token(self) -> str | None:
        if self._token_file:
            stamp = _stamp(self._token_file)
            if stamp != self._token_stamp:
                try:
                    self._token = read_token_file(self._token_file)
                    log.info("token file %s changed: using the new token", self._token_file)
                except ConfigError as exc:
                    log.error("%s; keeping the previous token", exc)
                self._token_stamp = stamp
        return self._token

    def post(self, readings: Sequence[dict]) -> Outcome:
        body = json.dumps(list(readings), separators=(",", ":"), allow_nan=False).encode()
        headers = {"Content-Type": "application/json", "User-Agent": f"iot-device/{__version__}"}
        token = self.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # S310: the scheme is checked to be http or https when the settings are loaded.
        req = urllib.request.Request(self.data_url, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                status, resp_headers, resp_body = resp.status, dict(resp.headers), resp.read(MAX_RESPONSE_BYTES)
        except urllib.error.HTTPError as err:
            try:
                resp_body = err.read(MAX_RESPONSE_BYTES)
            except OSError:
                resp_body = b""
            status, resp_headers = err.code, dict(err.headers or {})
        except (OSError, ValueError) as exc:  # URLError, timeouts, resets; ValueError: http.client oddities
            reason = getattr(exc, "reason", exc)
            return Outcome(RETRY, None, f"cannot reach {self.data_url}: {reason}")
        return classify(status, resp_headers, resp_body, len(readings))


def _stamp(path: str):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class Step(NamedTuple):
    """What one delivery attempt did: `progress` (the queue moved: go on at once), `outcome`."""
    progress: bool
    outcome: Outcome | None
    sent: int = 0
    rejected: int = 0


class Sender:
    """Delivers the queue, oldest first, one batch per `step()`. Holds the adaptive batch size."""

    def __init__(self, queue: Queue, client: Client, batch: int):
        self.queue = queue
        self.client = client
        self.max_batch = batch   # configured; lowered for good by a 413
        self.size = batch        # current; lowered while isolating a bad reading, grows back on success

    def step(self) -> Step:
        rows = self.queue.peek(self.size)
        if not rows:
            return Step(False, None)
        # A value that JSON cannot carry (NaN, inf) would fail every time: refuse it here.
        bad = [(r.id, None, "value is not a finite number") for r in rows if not math.isfinite(r.value)]
        if bad:
            self.queue.settle((), bad)
            log.error("dead-lettered %d queued reading(s) whose value is not finite", len(bad))
            return Step(True, None, rejected=len(bad))

        outcome = self.client.post([r.reading() for r in rows])
        ids = [r.id for r in rows]
        if outcome.kind == STORED:
            self.queue.ack(ids)
            self.size = min(self.max_batch, self.size * 2)
            return Step(True, outcome, sent=len(rows))
        if outcome.kind == PARTIAL:
            return self._dead_letter(rows, outcome, stored=True)
        if outcome.kind == REFUSED:
            if outcome.rejected:
                return self._dead_letter(rows, outcome, stored=False)
            if len(rows) > 1:  # refused without naming a reading: narrow it down by halving
                self.size = len(rows) // 2
                log.warning("%s; no reading named: retrying with batches of %d", outcome.message, self.size)
                return Step(True, outcome)
            return self._dead_letter(rows, outcome._replace(rejected=((0, outcome.message),)), stored=False)
        if outcome.kind == TOO_LARGE and len(rows) > 1:
            self.max_batch = self.size = max(1, len(rows) // 2)
            log.warning("%s; sending batches of %d from now on", outcome.message, self.size)
            return Step(True, outcome)
        return Step(False, outcome)  # keep everything; the caller backs off

    def _dead_letter(self, rows: list[Row], outcome: Outcome, stored: bool) -> Step:
        bad = {i: msg for i, msg in outcome.rejected}
        dead = [(rows[i].id, outcome.status, msg) for i, msg in bad.items()]
        # PARTIAL: every reading not listed was stored. REFUSED: nothing was; the rest stay queued.
        acked = [r.id for i, r in enumerate(rows) if i not in bad] if stored else []
        self.queue.settle(acked, dead)
        for i, msg in sorted(bad.items()):
            r = rows[i]
            log.error("api refused reading ts=%s type=%s value=%r for good (HTTP %s): %s; kept in the "
                      "dead-letter table `rejected`", r.ts, r.type, r.value, outcome.status, msg)
        return Step(True, outcome, sent=len(acked), rejected=len(dead))
