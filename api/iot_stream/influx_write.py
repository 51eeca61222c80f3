"""A blocking InfluxDB 1.x /write client for the MQTT services: one kept-alive connection, basic auth.

The historian writes from one thread and must know, for every batch, whether InfluxDB took it: so the
answer is classified here, with the api's own rules (iot_api.influx): 204 stored; a 400 that is the
points' fault (a partial write: some lines refused) returned to the caller, which finds the refused
lines; everything a retry may fix (no answer, 5xx, a 400 caused by InfluxDB's disk, database or
retention policy not found, 401/403) raised as Unavailable.
"""
from __future__ import annotations

import base64
import http.client
from urllib.parse import urlencode, urlsplit

from iot_api.influx import _error_text, server_side


class Unavailable(Exception):
    """InfluxDB did not store the batch and a retry may: nothing of it may be acknowledged."""


class InfluxWriter:
    def __init__(self, url: str, db: str, rp: str, user: str | None, password: str | None, timeout_s: float):
        parts = urlsplit(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if self._https else 80)
        self._path = f"{parts.path.rstrip('/')}/write?{urlencode({'db': db, 'rp': rp, 'precision': 'ns'})}"
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if user:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._timeout = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout)
        return self._conn

    def _post(self, body: bytes) -> tuple[int, bytes]:
        conn = self._connection()
        conn.request("POST", self._path, body, self._headers)
        resp = conn.getresponse()
        answer = resp.read()
        if resp.will_close:
            self.close()
        return resp.status, answer

    def write(self, body: bytes) -> tuple[int, str]:
        """(204, "") when stored, (400, InfluxDB's error) when some lines were refused as such;
        raises Unavailable otherwise. A kept-alive connection that InfluxDB closed while idle is
        retried once on a new one (writing a batch twice is harmless: a point overwrites itself)."""
        for attempt in (1, 2):
            reused = self._conn is not None
            try:
                status, answer = self._post(body)
                break
            except (TimeoutError, http.client.HTTPException, OSError) as exc:
                self.close()
                if attempt == 1 and reused and not isinstance(exc, TimeoutError):
                    continue
                raise Unavailable(f"InfluxDB write failed: {exc.__class__.__name__}: {exc or 'no answer'}") from None
        if status == 204:
            return 204, ""
        error = _error_text(answer.decode(errors="replace"))
        if status == 400 and not server_side(error):
            return 400, error
        raise Unavailable(f"InfluxDB write answered {status}: {error}")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
