"""Read endpoints: request arguments -> InfluxQL with bind parameters -> JSON documents.

Every value that comes from a request travels in the `params` of the query, never in its text; the
text is made only of constants and of identifiers from validated settings. Arguments are checked
first (unknown ones too, so that a typo like `?sensor=` is an error instead of an unfiltered answer).
"""
from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qsl

from .influx import Influx, quote_ident
from .readings import check_sensor_id, check_type
from .timefmt import MAX_NS, MIN_NS, format_rfc3339, parse_rfc3339

WINDOWS = {"all_time": None, "past_hour": "1h", "past_minute": "1m"}


class BadRequest(Exception):
    def __init__(self, field: str, message: str, status: int = 400):
        super().__init__(f"{field}: {message}")
        self.status = status
        self.body = {"error": f"invalid query parameter '{field}': {message}",
                     "problems": [{"index": None, "field": field, "message": message}]}


class NotFound(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.body = {"error": message}


def _int_in(lo: int, hi: int):
    def check(raw: str) -> int:
        if not (raw.isascii() and raw.isdigit()) or not lo <= int(raw) <= hi:
            raise ValueError(f"must be an integer between {lo} and {hi}")
        return int(raw)
    return check


def _timestamp(raw: str) -> int:
    ns = parse_rfc3339(raw)
    if not MIN_NS <= ns <= MAX_NS:
        raise ValueError(f"must be between {format_rfc3339(MIN_NS)} and {format_rfc3339(MAX_NS)} "
                         "(what InfluxDB can store)")
    return ns


def parse_args(query_string: bytes, spec: dict) -> dict:
    """Validate the query string against {name: (checker, default)}."""
    args: dict = {}
    try:
        pairs = parse_qsl(query_string.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                          max_num_fields=len(spec) + 1)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("", "the query string is malformed or has too many parameters") from None
    for name, raw in pairs:
        if name not in spec:
            raise BadRequest(name, f"unknown parameter (allowed: {', '.join(sorted(spec))})")
        if name in args:
            raise BadRequest(name, "given more than once")
        try:
            args[name] = spec[name][0](raw)
        except ValueError as exc:
            raise BadRequest(name, str(exc)) from None
    for name, (_, default) in spec.items():
        args.setdefault(name, default)
    if args.get("from") is not None and args.get("to") is not None and args["from"] > args["to"]:
        raise BadRequest("from", "must not be later than 'to'")
    return args


class ReadQueries:
    def __init__(self, influx: Influx, measurement: str, read_limit_max: int, top_cache_s: float = 0.0):
        self.influx = influx
        self.src = f"{quote_ident(influx.rp)}.{quote_ident(measurement)}"
        self.read_limit_max = read_limit_max
        self.top_cache_s = top_cache_s
        # (type, n) -> (monotonic time it started, the query's task: in flight, or done with the answer)
        self._top_cache: dict[tuple, tuple[float, asyncio.Task]] = {}

    # -- argument specs --------------------------------------------------------------------------
    def data_spec(self) -> dict:
        return {"sensor_id": (check_sensor_id, None), "type": (check_type, None),
                "from": (_timestamp, None), "to": (_timestamp, None),
                "limit": (_int_in(1, self.read_limit_max), min(100, self.read_limit_max))}

    STATS_SPEC = {"type": (check_type, None), "from": (_timestamp, None), "to": (_timestamp, None)}
    HISTOGRAM_SPEC = {"type": (check_type, "temp"), "bins": (_int_in(1, 100), 10),
                      "from": (_timestamp, None), "to": (_timestamp, None)}
    TOP_SPEC = {"type": (check_type, "temp"), "n": (_int_in(1, 1000), 10)}
    SENSORS_SPEC = {"type": (check_type, None)}

    # -- queries -----------------------------------------------------------------------------------
    @staticmethod
    def _where(args: dict, params: dict, keys=("sensor_id", "type", "from", "to")) -> str:
        fragments = {"sensor_id": '"sensor_id" = $sensor_id', "type": '"type" = $type',
                     "from": "time >= $from", "to": "time <= $to"}
        conds = []
        for key in keys:
            if args.get(key) is not None:
                conds.append(fragments[key])
                params[key] = args[key]
        return (" WHERE " + " AND ".join(conds)) if conds else ""

    async def data(self, args: dict) -> dict:
        params: dict = {"limit": args["limit"]}
        where = self._where(args, params)
        q = f'SELECT "value", "sensor_id", "type" FROM {self.src}{where} ORDER BY time DESC LIMIT $limit'
        rows = _rows(await self.influx.query(q, params))
        readings = [{"ts": r["time"], "sensor_id": r["sensor_id"], "type": r["type"],
                     "value": float(r["value"])} for r in rows]
        return {"count": len(readings), "readings": readings}

    async def sensors(self, args: dict) -> dict:
        params: dict = {}
        where = self._where(args, params, keys=("type",))
        q = f'SELECT last("value") FROM {self.src}{where} GROUP BY "sensor_id", "type"'
        results = await self.influx.query(q, params)
        by_sensor: dict[str, dict] = {}
        for series in results[0].get("series", []):
            ts, value = series["values"][0]
            entry = by_sensor.setdefault(series["tags"]["sensor_id"], {"last_seen": ts, "readings": {}})
            entry["readings"][series["tags"]["type"]] = {"ts": ts, "value": float(value)}
            entry["last_seen"] = max(entry["last_seen"], ts)  # same RFC 3339 UTC format: sorts as text
        sensors = [{"sensor_id": sid, **info} for sid, info in sorted(by_sensor.items())]
        return {"count": len(sensors), "sensors": sensors}

    async def stats(self, sensor_id: str, args: dict) -> dict:
        params: dict = {}
        where = self._where({**args, "sensor_id": sensor_id}, params)
        q = (f'SELECT min("value"), max("value"), mean("value"), count("value") FROM {self.src}{where} '
             'GROUP BY "type"')
        results = await self.influx.query(q, params)
        stats = {}
        for series in results[0].get("series", []):
            _, lo, hi, mean, count = series["values"][0]
            stats[series["tags"]["type"]] = {"min": float(lo), "max": float(hi), "mean": float(mean),
                                             "count": int(count)}
        if not stats:
            raise NotFound(f"no readings for sensor '{sensor_id}' in that interval")
        return {"sensor_id": sensor_id, "from": args["from"] and format_rfc3339(args["from"]),
                "to": args["to"] and format_rfc3339(args["to"]), "stats": stats}

    async def histogram(self, sensor_id: str, args: dict) -> dict:
        params: dict = {}
        where = self._where({**args, "sensor_id": sensor_id}, params)
        q = f'SELECT min("value"), max("value"), count("value") FROM {self.src}{where}'
        rows = _rows(await self.influx.query(q, params))
        if not rows:
            raise NotFound(f"no '{args['type']}' readings for sensor '{sensor_id}' in that interval")
        lo, hi, total = float(rows[0]["min"]), float(rows[0]["max"]), int(rows[0]["count"])
        bins = args["bins"] if hi > lo else 1
        width = (hi - lo) / bins
        edges = [lo + i * width for i in range(bins)] + [hi]
        # One request, one statement per bin; the last bin is closed so that the maximum counts.
        statements = []
        for i in range(bins):
            params[f"lo{i}"], params[f"hi{i}"] = edges[i], edges[i + 1]
            upper = "<=" if i == bins - 1 else "<"
            statements.append(f'SELECT count("value") FROM {self.src}{where} '
                              f'AND "value" >= $lo{i} AND "value" {upper} $hi{i}')
        results = await self.influx.query("; ".join(statements), params)
        counts = [sum(row[1] for s in res.get("series", []) for row in s["values"]) for res in results]
        return {"sensor_id": sensor_id, "type": args["type"], "total": total, "min": lo, "max": hi,
                "bins": [{"lo": edges[i], "hi": edges[i + 1], "count": counts[i]} for i in range(bins)]}

    async def top(self, args: dict) -> dict:
        """The N sensors with the highest value of a type, over all time, the past hour and the past
        minute (the seeds' Flask collector 'dashboard'): one entry per sensor, not per reading.

        The all-time window makes InfluxDB read every point of the type, so answers are shared for
        API_TOP_CACHE (default 1 s): concurrent requests wait for the one query in flight, and later
        ones reuse its answer until it is that old (measured: 8 readers of /top took InfluxDB's CPU
        and cut ingest to 6%; docs/benchmarks.md). A failed query is not kept."""
        if self.top_cache_s <= 0:
            return await self._top(args)
        key = (args["type"], args["n"])
        now = time.monotonic()
        hit = self._top_cache.get(key)
        if hit is not None:
            at, task = hit
            if not task.done():
                return await asyncio.shield(task)  # a waiter that goes away leaves it to the others
            if now - at < self.top_cache_s and not task.cancelled() and task.exception() is None:
                return task.result()
        if len(self._top_cache) >= 1000:  # types x n is small in practice; bound it anyway
            self._top_cache.clear()
        task = asyncio.get_running_loop().create_task(self._top(args))
        task.add_done_callback(_retrieve_exception)
        self._top_cache[key] = (now, task)
        return await asyncio.shield(task)

    async def _top(self, args: dict) -> dict:
        statements = []
        for window in WINDOWS.values():
            recent = f" AND time > now() - {window}" if window else ""  # constants, not input
            statements.append(f'SELECT max("value") FROM {self.src} WHERE "type" = $type{recent} '
                              'GROUP BY "sensor_id"')
        results = await self.influx.query("; ".join(statements), {"type": args["type"]})
        top = {}
        for name, res in zip(WINDOWS, results, strict=True):
            entries = [{"sensor_id": s["tags"]["sensor_id"], "value": float(s["values"][0][1]),
                        "ts": s["values"][0][0]} for s in res.get("series", [])]
            entries.sort(key=lambda e: (-e["value"], e["sensor_id"]))
            top[name] = entries[: args["n"]]
        return {"type": args["type"], "n": args["n"], "top": top}


def _rows(results: list[dict]) -> list[dict]:
    out = []
    for series in results[0].get("series", []) if results else []:
        cols = series["columns"]
        out.extend(dict(zip(cols, values, strict=True)) for values in series["values"])
    return out


def _retrieve_exception(task: asyncio.Task) -> None:
    """A shared query whose waiters all went away: its failure is not an unhandled-task warning."""
    if not task.cancelled():
        task.exception()
