"""InfluxDB 1.x HTTP client: line-protocol writes, InfluxQL queries with bind parameters, and the
database/retention-policy setup the api does itself (Swarm has no start order, nobody runs curl).

`/write` and `/query` are the 1.x API, which InfluxDB 2.x and 3 also serve for compatibility.
"""
from __future__ import annotations

import logging

import aiohttp
import orjson

from .write_client import WriteClient

log = logging.getLogger("iot_api.influx")


class Unavailable(Exception):
    """InfluxDB cannot be reached or failed (5xx, timeout, auth): the client should retry later."""


class QueryError(Exception):
    """InfluxDB refused a query (400): a bug in the query or bad input that slipped through."""


class StorageFailed(Unavailable):
    """InfluxDB answered but could not store the points: a 5xx, or a 400 "partial write" caused by its
    own disk (full, read-only, failing). Not the readings' fault: the same points succeed later."""


# InfluxDB 1.x answers 400 for every "partial write", including failures on its own side: with a full
# disk a write that creates new series gets `partial write: write /var/lib/influxdb/data/iot/_series/
# 03/0000: no space left on device dropped=100`. Answering that 422 (final, never resent) would lose
# readings; these operating-system errors (Go's strerror texts) mark a 400 as InfluxDB's own failure.
SERVER_SIDE_ERRORS = ("no space left on device", "disk quota exceeded", "read-only file system",
                      "input/output error", "too many open files", "cannot allocate memory")


def server_side(error: str) -> bool:
    """True when InfluxDB's error text says the failure is on its side (disk, memory, files)."""
    lowered = error.lower()
    return any(marker in lowered for marker in SERVER_SIDE_ERRORS)


class DatabaseMissing(Unavailable):
    """The database vanished (dropped, fresh volume): the api must run its setup again."""


class AuthFailed(Unavailable):
    """InfluxDB answered 401/403: wrong credentials or missing privileges (retrying will not help
    until an operator fixes the secrets, but the api keeps retrying: Swarm may be rolling them)."""

    def __init__(self, message: str, status: int, error: str):
        super().__init__(message)
        self.status = status
        self.error = error


class Influx:
    def __init__(self, url: str, db: str, rp: str, user: str | None, password: str | None,
                 timeout_s: float, admin: tuple[str, str] | None = None,
                 reader: tuple[str, str] | None = None):
        self.url = url
        self.db = db
        self.rp = rp
        self._auth = aiohttp.BasicAuth(user, password) if user else None
        # With the admin's credentials, setup() also creates the users (InfluxDB 1.x has no
        # first-start user creation of its own in Debian's package): admin, writer (us), reader.
        self._writer = (user, password) if user else None
        self._admin = admin
        self._admin_auth = aiohttp.BasicAuth(*admin) if admin else None
        self._reader = reader
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        # The hot path, /write, without aiohttp (write_client.py); it connects at its first write.
        self._writes = WriteClient(url, {"db": db, "rp": rp, "precision": "ns"}, self._writer, timeout_s,
                                   max_connections=64)

    async def open(self) -> None:
        # Keep-alive connections to InfluxDB, more than the writes in flight plus concurrent reads.
        connector = aiohttp.TCPConnector(limit=64, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                              auth=self._auth, json_serialize=lambda o: orjson.dumps(o).decode())

    async def close(self) -> None:
        await self._writes.close()
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
        caller splits per reading); raises Unavailable for everything that a retry may fix:
        StorageFailed when InfluxDB itself failed (5xx, or a 400 caused by its disk), with its message."""
        try:
            status, answer = await self._writes.post(body)
        except (TimeoutError, OSError) as exc:  # WriteFailed is a ConnectionError, an OSError
            reason = str(exc) or "no answer within the timeout"
            raise Unavailable(f"InfluxDB write failed: {exc.__class__.__name__}: {reason}") from None
        if status == 204:
            return 204, ""
        error = _error_text(answer.decode(errors="replace"))
        if status == 400:
            if not server_side(error):
                return 400, error
            raise StorageFailed(f"InfluxDB could not store the readings (answered 400, a failure on its "
                                f"side): {error}")
        if status == 404 and "database not found" in error:
            raise DatabaseMissing(f"InfluxDB: {error}")
        if status >= 500:
            raise StorageFailed(f"InfluxDB write answered {status}: {error}")
        raise Unavailable(f"InfluxDB write answered {status}: {error}")

    async def query(self, q: str, params: dict | None = None, db: bool = True,
                    auth: aiohttp.BasicAuth | None = None) -> list[dict]:
        """Run InfluxQL (one or more statements); returns the per-statement results.

        Every value from a request travels in `params` (bind parameters); `q` is built only from
        constants and validated settings, never from request text. `auth` overrides the session's
        credentials (the admin's, during setup)."""
        form = {"q": q}
        if db:
            form["db"] = self.db
        if params:
            form["params"] = orjson.dumps(params).decode()
        try:
            async with self._session.post(self.url + "/query", data=form, auth=auth) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Unavailable(f"InfluxDB query failed: {exc.__class__.__name__}: {exc}") from None
        if status in (401, 403):
            error = _error_text(raw.decode(errors="replace"))
            raise AuthFailed(f"InfluxDB query answered {status}: {error}", status, error)
        if status >= 500:
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
        admin = self._admin_auth  # None: the session's own credentials (or none) do the setup
        if self._admin:
            await self._ensure_admin()
        await self.query(f"CREATE DATABASE {db}", db=False, auth=admin)
        results = await self.query(f"SHOW RETENTION POLICIES ON {db}", db=False, auth=admin)
        existing = {row[0] for s in results[0].get("series", []) for row in s["values"]}
        verb = "ALTER" if self.rp in existing else "CREATE"
        await self.query(f"{verb} RETENTION POLICY {rp} ON {db} DURATION {retention} "
                         f"REPLICATION 1 SHARD DURATION {shard} DEFAULT", db=False, auth=admin)
        if self._admin and self._writer:
            # The api reads as well as writes: ALL on its database (READ + WRITE, not admin).
            await self._ensure_user(*self._writer, privilege="ALL")
        if self._admin and self._reader:
            await self._ensure_user(*self._reader, privilege="READ")

    async def _ensure_admin(self) -> None:
        """Create the admin user if InfluxDB has none yet (1.x accepts exactly that one statement
        without credentials while auth is on and no admin exists); else check our credentials."""
        name, password = self._admin
        try:
            await self.query("SHOW USERS", db=False, auth=self._admin_auth)
            return
        except AuthFailed as exc:
            if exc.status == 403 and "create admin user first" in exc.error:
                pass
            elif exc.status == 401:
                raise AuthFailed(
                    f"InfluxDB rejected the admin user {name!r} ({exc.error}): the admin already "
                    "exists with another password (check INFLUXDB_ADMIN_USER and "
                    "INFLUXDB_ADMIN_PASSWORD; an admin password is changed in InfluxDB with "
                    "SET PASSWORD, not by the api)", exc.status, exc.error) from None
            else:
                raise
        await self._secret_query(f"CREATE USER {quote_ident(name)} WITH PASSWORD "
                                 f"{quote_string(password)} WITH ALL PRIVILEGES", password)
        log.info("InfluxDB admin user created", extra={"user": name})

    async def _ensure_user(self, name: str, password: str, privilege: str) -> None:
        """Create the user, or set its password when it exists (a rotated secret takes effect at the
        next start), then grant it `privilege` on our database. Idempotent, safe when several api
        processes run it at once."""
        user = quote_ident(name)
        try:
            await self._secret_query(f"CREATE USER {user} WITH PASSWORD {quote_string(password)}",
                                     password)
        except QueryError as exc:
            if "user already exists" not in str(exc):
                raise
            await self._secret_query(f"SET PASSWORD FOR {user} = {quote_string(password)}", password)
            log.info("InfluxDB user password set", extra={"user": name})
        await self.query(f"GRANT {privilege} ON {quote_ident(self.db)} TO {user}", db=False,
                         auth=self._admin_auth)

    async def _secret_query(self, q: str, secret: str) -> None:
        """A statement that carries a password (InfluxQL cannot bind it): never let it reach a log,
        not even through an error message that quotes the query."""
        try:
            await self.query(q, db=False, auth=self._admin_auth)
        except AuthFailed as exc:
            raise AuthFailed(_redact(str(exc), secret), exc.status, _redact(exc.error, secret)) from None
        except DatabaseMissing as exc:
            raise DatabaseMissing(_redact(str(exc), secret)) from None
        except Unavailable as exc:
            raise Unavailable(_redact(str(exc), secret)) from None
        except QueryError as exc:
            raise QueryError(_redact(str(exc), secret)) from None


def shard_duration(retention_ns: int | None) -> str:
    """InfluxDB 1.x's default shard-group duration for a retention duration."""
    day = 86_400 * 10**9
    if retention_ns is None or retention_ns > 182 * day:
        return "7d"
    return "1d" if retention_ns >= 2 * day else "1h"


def quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(text: str) -> str:
    """An InfluxQL string literal ('…'): backslash and quote escaped. InfluxQL strings cannot hold
    a newline (config.py refuses control characters in passwords)."""
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValueError("control characters cannot be quoted in an InfluxQL string")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "[REDACTED]") if secret else text


def _error_text(text: str) -> str:
    try:
        return orjson.loads(text).get("error", text.strip())
    except (orjson.JSONDecodeError, AttributeError):
        return text.strip()[:500]
