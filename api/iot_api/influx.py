"""InfluxDB 1.x HTTP client: line-protocol writes, InfluxQL queries with bind parameters, and the
database/retention-policy setup the api does itself (Swarm has no start order, nobody runs curl).

`/write` and `/query` are the 1.x API, which InfluxDB 2.x and 3 also serve for compatibility.
"""
from __future__ import annotations

import logging

import aiohttp
import orjson

log = logging.getLogger("iot_api.influx")


class Unavailable(Exception):
    """InfluxDB cannot be reached or failed (5xx, timeout, auth): the client should retry later."""


class QueryError(Exception):
    """InfluxDB refused a query (400): a bug in the query or bad input that slipped through."""


class DatabaseMissing(Unavailable):
    """The database vanished (dropped, fresh volume): the api must run its setup again."""


class Influx:
    def __init__(self, url: str, db: str, rp: str, user: str | None, password: str | None,
                 timeout_s: float):
        self.url = url
        self.db = db
        self.rp = rp
        self._auth = aiohttp.BasicAuth(user, password) if user else None
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._write_url = f"{url}/write"
        self._write_params = {"db": db, "rp": rp, "precision": "ns"}
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        # Keep-alive connections to InfluxDB, more than the writes in flight plus concurrent reads.
        connector = aiohttp.TCPConnector(limit=64, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                              auth=self._auth, json_serialize=lambda o: orjson.dumps(o).decode())

    async def close(self) -> None:
        if self._session:
            await self._session.close()

    async def ping(self, timeout_s: float = 1.0) -> bool:
        try:
            async with self._session.get(self.url + "/ping",
                                         timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
                return resp.status == 204
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def write(self, body: bytes) -> tuple[int, str]:
        """POST /write. Returns (status, error text) for 204 and 400 (a client-side problem that the
        caller splits per reading); raises Unavailable for everything that a retry may fix."""
        try:
            async with self._session.post(self._write_url, params=self._write_params, data=body,
                                          headers={"Content-Type": "text/plain; charset=utf-8"}) as resp:
                if resp.status == 204:
                    return 204, ""
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Unavailable(f"InfluxDB write failed: {exc.__class__.__name__}: {exc}") from None
        error = _error_text(text)
        if resp.status == 400:
            return 400, error
        if resp.status == 404 and "database not found" in error:
            raise DatabaseMissing(f"InfluxDB: {error}")
        raise Unavailable(f"InfluxDB write answered {resp.status}: {error}")

    async def query(self, q: str, params: dict | None = None, db: bool = True) -> list[dict]:
        """Run InfluxQL (one or more statements); returns the per-statement results.

        Every value from a request travels in `params` (bind parameters); `q` is built only from
        constants and validated settings, never from request text."""
        form = {"q": q}
        if db:
            form["db"] = self.db
        if params:
            form["params"] = orjson.dumps(params).decode()
        try:
            async with self._session.post(self.url + "/query", data=form) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Unavailable(f"InfluxDB query failed: {exc.__class__.__name__}: {exc}") from None
        if status >= 500 or status in (401, 403):
            raise Unavailable(f"InfluxDB query answered {status}: {_error_text(raw.decode(errors='replace'))}")
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise Unavailable(f"InfluxDB query answered {status} with a body that is not JSON") from None
        if status != 200 or "error" in doc:
            raise QueryError(doc.get("error", f"status {status}"))
        results = doc.get("results", [])
        for res in results:
            if "error" in res:
                if "database not found" in res["error"]:
                    raise DatabaseMissing(f"InfluxDB: {res['error']}")
                raise QueryError(res["error"])
        return results

    async def setup(self, retention: str, retention_ns: int | None) -> None:
        """Create the database and make our retention policy the default, with the configured
        duration. Idempotent; run at start and whenever the database goes missing.

        The shard-group duration is always given (InfluxDB's own default rule): without it, shortening
        the retention below the shard duration the policy was created with fails forever.
        Identifiers and the duration come from validated settings (config.py), not from requests;
        InfluxQL cannot bind identifiers, hence the quoting here."""
        db, rp = quote_ident(self.db), quote_ident(self.rp)
        shard = shard_duration(retention_ns)
        await self.query(f"CREATE DATABASE {db}", db=False)
        results = await self.query(f"SHOW RETENTION POLICIES ON {db}", db=False)
        existing = {row[0] for s in results[0].get("series", []) for row in s["values"]}
        verb = "ALTER" if self.rp in existing else "CREATE"
        await self.query(f"{verb} RETENTION POLICY {rp} ON {db} DURATION {retention} "
                         f"REPLICATION 1 SHARD DURATION {shard} DEFAULT", db=False)


def shard_duration(retention_ns: int | None) -> str:
    """InfluxDB 1.x's default shard-group duration for a retention duration."""
    day = 86_400 * 10**9
    if retention_ns is None or retention_ns > 182 * day:
        return "7d"
    return "1d" if retention_ns >= 2 * day else "1h"


def quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _error_text(text: str) -> str:
    try:
        return orjson.loads(text).get("error", text.strip())
    except (orjson.JSONDecodeError, AttributeError):
        return text.strip()[:500]
