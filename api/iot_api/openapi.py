"""The OpenAPI 3.1 document of the api, served at GET /openapi.json.

Written by hand (the api has no framework to generate it) and kept honest by the tests: the fuzz test
drives the real server from this document and checks every answer against it. Limits come from the
running settings, so the document says what this instance accepts.
"""
from __future__ import annotations

from . import __version__
from .readings import SENSOR_ID_PATTERN, TYPE_PATTERN

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "What is wrong, in one sentence."},
        "problems": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "field", "message"],
                "properties": {
                    "index": {"type": ["integer", "null"], "description": "Position in a batch; null for a single reading."},
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
        },
    },
}


def _err(description: str, headers: dict | None = None) -> dict:
    out = {"description": description,
           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if headers:
        out["headers"] = headers
    return out


def _ok(description: str, schema: dict) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def document(settings) -> dict:
    retry_after = {"Retry-After": {"description": "Seconds to wait before retrying.",
                                   "schema": {"type": "integer"}}}
    unavailable = _err("InfluxDB is unreachable, failing or not set up yet, or the api is overloaded. "
                       "The readings were not acknowledged; resend them after the given delay (a resent reading "
                       "overwrites itself, so this is safe even if a write went through before a failure).", retry_after)
    auth_errors = {"401": _err("Missing or unknown bearer token (only when API_TOKENS_FILE is set)."),
                   "403": _err("The token lacks the scope this endpoint needs.")}
    sensor_param = {"name": "id", "in": "path", "required": True,
                    "schema": {"type": "string", "pattern": SENSOR_ID_PATTERN}}
    time_params = [
        {"name": "from", "in": "query", "schema": {"type": "string", "format": "date-time"},
         "description": "RFC 3339, inclusive."},
        {"name": "to", "in": "query", "schema": {"type": "string", "format": "date-time"},
         "description": "RFC 3339, inclusive."},
    ]
    type_param = {"name": "type", "in": "query", "schema": {"type": "string", "pattern": TYPE_PATTERN}}
    read_errors = {"400": _err("Unknown or invalid query parameter."), **auth_errors, "503": unavailable}
    security = [{"bearer": []}] if settings.tokens_file else []

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "IoT backend api",
            "version": __version__,
            "description": "Devices post readings; they are stored in InfluxDB (sensor_id and type as tags, "
                           "value as a float field, ts as the timestamp) and served back as JSON. "
                           "A 201 means InfluxDB acknowledged the write.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Reading": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["type", "value", "sensor_id"],
                    "properties": {
                        "ts": {"type": "string", "format": "date-time",
                               "description": "RFC 3339, up to nanoseconds; server time when absent. Must be "
                                              "after API_MIN_TS, at most API_MAX_FUTURE ahead and within "
                                              "the retention policy.",
                               "example": "2017-06-25T09:53:16Z"},
                        "type": {"type": "string", "pattern": TYPE_PATTERN, "example": "temp"},
                        "value": {"type": "number", "description": "Finite; stored as a float.", "example": 34},
                        "sensor_id": {"oneOf": [{"type": "string", "pattern": SENSOR_ID_PATTERN},
                                                {"type": "integer"}],
                                      "description": "Stored as a string tag.", "example": 123},
                    },
                },
                "Error": _ERROR,
                "Stored": {"type": "object", "required": ["stored"],
                           "properties": {"stored": {"type": "integer", "minimum": 1}}},
                "PartlyRejected": {
                    "type": "object", "required": ["error", "stored", "rejected"],
                    "properties": {
                        "error": {"type": "string"},
                        "stored": {"type": "integer", "minimum": 0},
                        "rejected": {"type": "array", "items": {
                            "type": "object", "required": ["index", "message"],
                            "properties": {"index": {"type": ["integer", "null"]}, "message": {"type": "string"}}}},
                    },
                },
                "StoredReading": {
                    "type": "object", "required": ["ts", "sensor_id", "type", "value"],
                    "properties": {"ts": {"type": "string"}, "sensor_id": {"type": "string"},
                                   "type": {"type": "string"}, "value": {"type": "number"}},
                },
            },
        },
        "security": security,
        "paths": {
            "/data": {
                "post": {
                    "summary": "Store one reading or a batch",
                    "operationId": "postData",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"oneOf": [
                            {"$ref": "#/components/schemas/Reading"},
                            {"type": "array", "minItems": 1, "maxItems": settings.max_batch,
                             "items": {"$ref": "#/components/schemas/Reading"}},
                        ]}}},
                        "description": f"At most {settings.max_body_bytes} bytes.",
                    },
                    "responses": {
                        "201": _ok("All readings were stored (InfluxDB acknowledged the write).",
                                   {"$ref": "#/components/schemas/Stored"}),
                        "400": _err("Empty body or malformed JSON."),
                        **auth_errors,
                        "413": _err("Body larger than API_MAX_BODY_BYTES or batch larger than API_MAX_BATCH."),
                        "415": _err("Content-Type is not application/json."),
                        "422": {"description": "Invalid readings (nothing stored; `problems` names each field), "
                                               "or InfluxDB refused some readings (`rejected`; the others were stored).",
                                "content": {"application/json": {"schema": {"anyOf": [  # a PartlyRejected is also an Error
                                    {"$ref": "#/components/schemas/Error"},
                                    {"$ref": "#/components/schemas/PartlyRejected"}]}}}},
                        "503": unavailable,
                    },
                },
                "get": {
                    "summary": "Stored readings, newest first",
                    "operationId": "getData",
                    "parameters": [
                        {"name": "sensor_id", "in": "query", "schema": {"type": "string", "pattern": SENSOR_ID_PATTERN}},
                        type_param, *time_params,
                        {"name": "limit", "in": "query",
                         "schema": {"type": "integer", "minimum": 1, "maximum": settings.read_limit_max, "default": 100}},
                    ],
                    "responses": {"200": _ok("Readings.", {
                        "type": "object", "required": ["count", "readings"],
                        "properties": {"count": {"type": "integer"},
                                       "readings": {"type": "array", "items": {"$ref": "#/components/schemas/StoredReading"}}}}),
                        **read_errors},
                },
            },
            "/sensors": {"get": {
                "summary": "Every sensor with its last reading of each type",
                "operationId": "getSensors",
                "parameters": [type_param],
                "responses": {"200": _ok("Sensors.", {"type": "object", "required": ["count", "sensors"],
                                                      "properties": {"count": {"type": "integer"},
                                                                     "sensors": {"type": "array"}}}),
                              **read_errors},
            }},
            "/sensors/{id}/stats": {"get": {
                "summary": "min, max, mean and count of one sensor's readings, per type",
                "operationId": "getSensorStats",
                "parameters": [sensor_param, type_param, *time_params],
                "responses": {"200": _ok("Statistics.", {"type": "object", "required": ["sensor_id", "stats"]}),
                              "404": _err("No readings for this sensor in the interval."), **read_errors},
            }},
            "/sensors/{id}/histogram": {"get": {
                "summary": "Histogram of one sensor's values of one type",
                "operationId": "getSensorHistogram",
                "parameters": [sensor_param, {**type_param, "schema": {**type_param["schema"], "default": "temp"}},
                               {"name": "bins", "in": "query",
                                "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10}},
                               *time_params],
                "responses": {"200": _ok("Histogram.", {"type": "object", "required": ["bins", "total"]}),
                              "404": _err("No readings for this sensor and type in the interval."), **read_errors},
            }},
            "/top": {"get": {
                "summary": "The N sensors with the highest value of a type: all time, past hour, past minute",
                "operationId": "getTop",
                "parameters": [{**type_param, "schema": {**type_param["schema"], "default": "temp"}},
                               {"name": "n", "in": "query",
                                "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10}}],
                "responses": {"200": _ok("Top sensors.", {"type": "object", "required": ["type", "n", "top"]}),
                              **read_errors},
            }},
            "/healthz": {"get": {"summary": "Liveness: the process answers", "operationId": "healthz",
                                 "security": [],
                                 "responses": {"200": _ok("Alive.", {"type": "object"})}}},
            "/readyz": {"get": {"summary": "Readiness: InfluxDB reachable, the database set up, every worker ready",
                                "operationId": "readyz", "security": [],
                                "responses": {"200": _ok("Ready.", {"type": "object"}),
                                              "503": _ok("Not ready.", {"type": "object"})}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "operationId": "metrics", "security": [],
                                 "responses": {"200": {"description": "Prometheus text format.",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi", "security": [],
                                      "responses": {"200": _ok("OpenAPI 3.1.", {"type": "object"})}}},
        },
    }
