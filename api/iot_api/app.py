"""The api as a plain ASGI application (served by uvicorn with uvloop and httptools).

No web framework on purpose: POST /data is the hot path and every microsecond of per-request Python
is throughput (docs/benchmarks.md). The router below is a dict and two path patterns; the OpenAPI
document (openapi.py) is the contract, and the tests fuzz the api against it.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import time

import orjson

from . import metrics, worker_slot
from .auth import Tokens
from .config import Settings
from .influx import AuthFailed, Influx, QueryError, Unavailable
from .openapi import document as openapi_document
from .protocol import BODY_RECEIVED
from .queries import BadRequest, NotFound, ReadQueries, parse_args
from .readings import InvalidBody, Limits, check_sensor_id, parse_body, set_writer_id
from .writer import GroupCommitWriter, Overloaded

log = logging.getLogger("iot_api")

JSON = [(b"content-type", b"application/json")]


class Api:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.tokens = Tokens.load(settings.tokens_file) if settings.tokens_file else None
        self.limits = Limits(max_batch=settings.max_batch, min_ts_ns=settings.min_ts_ns,
                             max_future_ns=settings.max_future_ns, retention_ns=settings.retention_ns,
                             measurement=settings.measurement)
        self.influx = Influx(settings.influxdb_url, settings.influxdb_db, settings.influxdb_rp,
                             settings.influxdb_user, settings.influxdb_password, settings.influxdb_timeout_s,
                             admin=settings.influxdb_admin, reader=settings.influxdb_reader)
        self.reads = ReadQueries(self.influx, settings.measurement, settings.read_limit_max, settings.top_cache_s)
        self.writer: GroupCommitWriter | None = None
        self.ready = False
        self._setup_task: asyncio.Task | None = None
        self._ping_cache = (0.0, False)
        self._openapi = orjson.dumps(openapi_document(settings))
        self._retry_after = str(settings.retry_after_s).encode()
        self._routes = {
            "/data": {"POST": self.post_data, "GET": self.get_data},
            "/sensors": {"GET": self.get_sensors},
            "/top": {"GET": self.get_top},
            "/healthz": {"GET": self.healthz},
            "/readyz": {"GET": self.readyz},
            "/metrics": {"GET": self.get_metrics},
            "/openapi.json": {"GET": self.get_openapi},
        }
        self._sensor_routes = {"stats": {"GET": self.get_stats}, "histogram": {"GET": self.get_histogram}}

    # -- ASGI entry points ---------------------------------------------------------------------------
    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope, receive, send):
        started = time.perf_counter()
        path, method = scope["path"], scope["method"]
        route, methods, arg = path, self._routes.get(path), None
        if methods is None:
            parts = path.split("/")
            # /sensors/{id}/stats and /sensors/{id}/histogram
            if len(parts) == 4 and parts[1] == "sensors" and parts[3] in self._sensor_routes:
                route, methods, arg = f"/sensors/{{id}}/{parts[3]}", self._sensor_routes[parts[3]], parts[2]
        if methods is None:
            status, body, headers = 404, {"error": f"no such endpoint: {path} (see /openapi.json)"}, []
            route = "unmatched"
        elif method not in methods:
            allow = ", ".join(sorted(methods)).encode()
            status, body, headers = 405, {"error": f"{method} is not allowed on {route}"}, [(b"allow", allow)]
        else:
            try:
                handler = methods[method]
                status, body, headers = await (handler(scope, receive, arg) if arg is not None
                                               else handler(scope, receive))
            except Unavailable as exc:
                status, body, headers = self._unavailable(str(exc))
            except (BadRequest, InvalidBody) as exc:
                status, body, headers = exc.status, exc.body() if isinstance(exc, InvalidBody) else exc.body, []
            except NotFound as exc:
                status, body, headers = 404, exc.body, []
            except QueryError as exc:
                log.error("InfluxDB refused a read query", extra={"error": str(exc), "path": path})
                status, body, headers = 502, {"error": "InfluxDB refused the query"}, []
            except Exception:
                log.exception("unexpected error", extra={"path": path, "method": method})
                status, body, headers = 500, {"error": "internal error (logged)"}, []
        if isinstance(body, tuple):  # pre-encoded (content type, bytes)
            ctype, payload = body
            out_headers = [(b"content-type", ctype)]
        else:
            payload, out_headers = orjson.dumps(body), JSON
        out_headers = out_headers + [(b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status,
                    "headers": out_headers + headers if headers else out_headers})
        await send({"type": "http.response.body", "body": payload})
        metrics.request_done(method, route, status, time.perf_counter() - started)

    def _unavailable(self, reason: str):
        return (503, {"error": f"storage unavailable, the readings were not acknowledged "
                               f"(resending them is safe: a resent reading overwrites itself): {reason}",
                      "retry_after": self.settings.retry_after_s},
                [(b"retry-after", self._retry_after)])

    def _authorize(self, scope, scope_needed: str):
        """None when allowed, else the (status, body, headers) to answer."""
        if self.tokens is None:
            return None
        header = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value
                break
        scopes = self.tokens.scopes_of(header)
        if scopes is None:
            return (401, {"error": "missing or unknown bearer token (Authorization: Bearer <token>)"},
                    [(b"www-authenticate", b'Bearer realm="iot"')])
        if scope_needed not in scopes:
            return 403, {"error": f"this token may not {scope_needed}"}, []
        return None

    # -- POST /data -------------------------------------------------------------------------------
    async def post_data(self, scope, receive):
        denied = self._authorize(scope, "write")
        if denied:
            return denied
        ctype = length = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                ctype = value
            elif name == b"content-length":
                length = value
        if ctype is None or ctype.split(b";", 1)[0].strip().lower() != b"application/json":
            return 415, {"error": "Content-Type must be application/json"}, []
        limit = self.settings.max_body_bytes
        if length is not None and (not length.isdigit() or int(length) > limit):
            if length.isdigit():
                return 413, {"error": f"body of {int(length)} bytes exceeds the maximum of {limit} "
                                      "(API_MAX_BODY_BYTES)"}, []
            return 400, {"error": "invalid Content-Length"}, []
        chunks: list[bytes] = []
        if scope.get(BODY_RECEIVED):  # ApiProtocol: the whole body is already in, nothing to wait for
            answer = await _receive_body(receive, limit, chunks)
        else:
            try:
                # The whole body within API_BODY_TIMEOUT: a client that trickles it holds no slot forever.
                async with asyncio.timeout(self.settings.body_timeout_s):
                    answer = await _receive_body(receive, limit, chunks)
            except TimeoutError:
                metrics.READINGS_REJECTED.labels("body_timeout").inc()
                return 408, {"error": f"the request body did not arrive within {self.settings.body_timeout_s:g} s "
                                      f"(API_BODY_TIMEOUT); {sum(map(len, chunks))} bytes received"}, \
                    [(b"connection", b"close")]
        if answer is not None:
            return answer
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        try:
            lines, count = parse_body(body, self.limits)
        except InvalidBody as exc:
            metrics.READINGS_REJECTED.labels("invalid").inc()
            raise exc
        if not self.ready:
            return self._unavailable("InfluxDB is not ready yet (database setup pending)")
        try:
            outcome = await self.writer.submit(lines)
        except Overloaded as exc:
            return self._unavailable(f"the api is overloaded ({exc})")
        metrics.READINGS_STORED.inc(outcome.stored)
        if not outcome.rejected:
            return 201, {"stored": outcome.stored}, []
        single = body.lstrip()[:1] == b"{"
        rejected = [{"index": None if single else i, "message": msg} for i, msg in outcome.rejected]
        log.warning("InfluxDB refused readings", extra={"rejected": len(rejected), "stored": outcome.stored,
                                                        "first_error": rejected[0]["message"]})
        return 422, {"error": f"InfluxDB refused {len(rejected)} of {count} readings; "
                              f"the other {outcome.stored} were stored",
                     "stored": outcome.stored, "rejected": rejected}, []

    # -- read endpoints ------------------------------------------------------------------------------
    async def get_data(self, scope, receive):
        return await self._read(scope, self.reads.data_spec(), self.reads.data)

    async def get_sensors(self, scope, receive):
        return await self._read(scope, ReadQueries.SENSORS_SPEC, self.reads.sensors)

    async def get_top(self, scope, receive):
        return await self._read(scope, ReadQueries.TOP_SPEC, self.reads.top)

    async def get_stats(self, scope, receive, sensor_id):
        return await self._read(scope, ReadQueries.STATS_SPEC, self.reads.stats, sensor_id)

    async def get_histogram(self, scope, receive, sensor_id):
        return await self._read(scope, ReadQueries.HISTOGRAM_SPEC, self.reads.histogram, sensor_id)

    async def _read(self, scope, spec, query, sensor_id=None):
        denied = self._authorize(scope, "read")
        if denied:
            return denied
        args = parse_args(scope["query_string"], spec)
        if sensor_id is None:
            return 200, await query(args), []
        try:
            sensor_id = check_sensor_id(sensor_id)  # ASGI paths arrive percent-decoded
        except ValueError as exc:
            raise BadRequest("sensor_id", str(exc)) from None
        return 200, await query(sensor_id, args), []

    # -- operations --------------------------------------------------------------------------------
    async def healthz(self, scope, receive):
        return 200, {"status": "alive"}, []

    async def readyz(self, scope, receive):
        if not self.ready:
            return 503, {"ready": False, "reason": "InfluxDB database setup pending"}, []
        if not worker_slot.all_ready(self.settings.workers, os.environ.get(worker_slot.SLOTS_DIR_ENV)):
            return 503, {"ready": False, "reason": "another worker of this api is still starting"}, []
        at, ok = self._ping_cache
        if time.monotonic() - at > 1.0:  # /readyz may be polled hard; ping InfluxDB at most 1/s
            ok = await self.influx.ping()
            self._ping_cache = (time.monotonic(), ok)
            metrics.READY.set(1 if ok else 0)
        if not ok:
            return 503, {"ready": False, "reason": "InfluxDB does not answer /ping"}, []
        return 200, {"ready": True}, []

    async def get_metrics(self, scope, receive):
        payload, ctype = metrics.render()
        return 200, (ctype.encode(), payload), []

    async def get_openapi(self, scope, receive):
        return 200, (b"application/json", self._openapi), []

    # -- lifespan: set up InfluxDB in the background, drain on stop ----------------------------------
    async def _lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                slot = worker_slot.claim(self.settings.workers, os.environ.get(worker_slot.SLOTS_DIR_ENV))
                set_writer_id(self.settings.instance * self.settings.workers + slot)
                await self.influx.open()
                self.writer = GroupCommitWriter(
                    self.influx, self.settings.flush_max_points, self.settings.flush_max_delay_s,
                    self.settings.flush_in_flight, self.settings.max_pending_points,
                    enabled=self.settings.group_commit, on_database_missing=self._database_missing)
                if self.tokens is None:
                    log.warning("API_TOKENS_FILE is not set: the api runs OPEN, anyone who reaches it "
                                "can write and read readings")
                self._start_setup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # uvicorn has stopped accepting and waited for in-flight requests; flush the rest.
                drained = await self.writer.drain(timeout_s=self.settings.influxdb_timeout_s * 2)
                log.info("stopped", extra={"drained": drained, "pending": self.writer.pending_points})
                if self._setup_task:
                    self._setup_task.cancel()
                await self.influx.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _start_setup(self):
        if self._setup_task is None or self._setup_task.done():
            self._setup_task = asyncio.get_running_loop().create_task(self._setup_loop())

    def _database_missing(self):
        if self.ready:
            log.error("InfluxDB database is missing; setting it up again")
        self.ready = False
        worker_slot.mark_ready(False)
        metrics.READY.set(0)
        self._start_setup()

    async def _setup_loop(self):
        """Retry with capped exponential backoff and jitter until the database and retention policy
        exist: the api must start before InfluxDB does (Swarm ignores depends_on)."""
        delay, attempt = 0.25, 0
        while True:
            attempt += 1
            try:
                await self.influx.setup(self.settings.retention, self.settings.retention_ns)
            except (Unavailable, QueryError) as exc:
                if isinstance(exc, AuthFailed):
                    message, level = "InfluxDB refused the api's credentials, retrying", logging.ERROR
                else:
                    message = "InfluxDB not ready, retrying"
                    level = logging.ERROR if isinstance(exc, QueryError) else logging.WARNING
                log.log(level, message, extra={
                    "attempt": attempt, "error": str(exc), "retry_in_s": round(delay, 2)})
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self.settings.startup_backoff_max_s)
                continue
            self.ready = True
            worker_slot.mark_ready(True)
            self._ping_cache = (time.monotonic(), True)
            metrics.READY.set(1)
            log.info("InfluxDB ready", extra={"url": self.settings.influxdb_url, "db": self.settings.influxdb_db,
                                              "user": self.settings.influxdb_user,
                                              "users_managed": self.settings.influxdb_admin is not None,
                                              "retention_policy": self.settings.influxdb_rp,
                                              "retention": self.settings.retention, "attempts": attempt})
            return


async def _receive_body(receive, limit: int, chunks: list[bytes]):
    """Receive a request's body into CHUNKS. None when it is all in, else the answer to give."""
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return 400, {"error": "client disconnected"}, []
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return 413, {"error": f"body exceeds the maximum of {limit} bytes (API_MAX_BODY_BYTES)"}, \
                [(b"connection", b"close")]
        chunks.append(chunk)
        if not message.get("more_body", False):
            return None


def create_app() -> Api:
    """uvicorn factory (one Api per worker process)."""
    from . import config

    return Api(config.of_process())
