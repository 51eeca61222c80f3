"""Prometheus metrics of the api, served on GET /metrics.

With several workers (API_WORKERS > 1) each process writes its samples to PROMETHEUS_MULTIPROC_DIR,
which __main__ sets up before the workers start, and /metrics aggregates them.
"""
from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REQUESTS = Counter("iot_api_requests_total", "HTTP requests answered", ["method", "route", "status"])
REQUEST_SECONDS = Histogram("iot_api_request_duration_seconds", "Time to answer a request", ["route"],
                            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
READINGS_STORED = Counter("iot_api_readings_stored_total", "Readings acknowledged by InfluxDB")
READINGS_REJECTED = Counter("iot_api_readings_rejected_total", "Readings refused", ["reason"])
FLUSHES = Histogram("iot_api_flush_batch_size", "Readings per InfluxDB write (group commit)",
                    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000))
FLUSH_SECONDS = Histogram("iot_api_flush_duration_seconds", "Duration of one InfluxDB write",
                          buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5))
WRITE_ERRORS = Counter("iot_api_write_errors_total", "InfluxDB writes that failed", ["kind"])
QUEUE_DEPTH = Gauge("iot_api_queue_depth", "Readings waiting for an InfluxDB write",
                    multiprocess_mode="livesum")
READY = Gauge("iot_api_ready", "1 when InfluxDB is set up and reachable", multiprocess_mode="livemin")

# Labelled children looked up once: `.labels()` takes a lock and builds a key on every call, which
# showed up in the hot path's profile.
_request_children: dict = {}


_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}


def request_done(method: str, route: str, status: int, seconds: float) -> None:
    if method not in _METHODS:  # client-chosen text: never let it grow the label set
        method = "OTHER"
    key = (method, route, status)
    children = _request_children.get(key)
    if children is None:
        children = _request_children[key] = (REQUESTS.labels(method, route, status),
                                              REQUEST_SECONDS.labels(route))
    children[0].inc()
    children[1].observe(seconds)


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
