"""Broker connection settings (12-factor: MQTT_* from the environment, the password from a file) and
the paho client every service of this package makes: MQTT 3.1.1, a fixed client id and a persistent
session (clean_session False), so QoS 1 messages wait in the broker while the service is away."""
from __future__ import annotations

import os
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class SettingsError(Exception):
    """A bad MQTT_* setting; str() is the one line to print before exiting non-zero."""


@dataclass(frozen=True)
class BrokerSettings:
    host: str
    port: int
    username: str | None
    password: str | None
    client_id: str
    keepalive: int = 30


def _read_secret(path: str, name: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().strip()
    except OSError as exc:
        raise SettingsError(f"{name}={path}: cannot read it ({exc.strerror})") from None
    if not value:
        raise SettingsError(f"{name}={path}: the file is empty")
    return value


def broker_settings(default_client_id: str, environ=os.environ) -> BrokerSettings:
    """MQTT_HOST (default localhost), MQTT_PORT (1883), MQTT_USERNAME, MQTT_PASSWORD_FILE (or
    MQTT_PASSWORD), MQTT_CLIENT_ID (DEFAULT_CLIENT_ID: fixed, so the session persists)."""
    host = environ.get("MQTT_HOST", "localhost").strip()
    if not host:
        raise SettingsError("MQTT_HOST is empty: give the broker's host name")
    raw_port = environ.get("MQTT_PORT", "1883")
    try:
        port = int(raw_port)
        if not 1 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise SettingsError(f"MQTT_PORT={raw_port!r}: must be a port number (1-65535)") from None
    username = environ.get("MQTT_USERNAME") or None
    password = environ.get("MQTT_PASSWORD") or None
    if environ.get("MQTT_PASSWORD_FILE"):
        password = _read_secret(environ["MQTT_PASSWORD_FILE"], "MQTT_PASSWORD_FILE")
    if password and not username:
        raise SettingsError("MQTT_PASSWORD_FILE is set but MQTT_USERNAME is not")
    client_id = environ.get("MQTT_CLIENT_ID", default_client_id).strip()
    if not client_id or len(client_id) > 23 * 4:
        raise SettingsError(f"MQTT_CLIENT_ID={client_id!r}: must be 1-92 characters")
    return BrokerSettings(host=host, port=port, username=username, password=password, client_id=client_id)


def make_client(settings: BrokerSettings, *, clean_session: bool = False) -> mqtt.Client:
    """A paho client for SETTINGS (not yet connected): persistent session unless CLEAN_SESSION."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=settings.client_id,
                         protocol=mqtt.MQTTv311, clean_session=clean_session)
    if settings.username:
        client.username_pw_set(settings.username, settings.password)
    client.reconnect_delay_set(min_delay=1, max_delay=10)
    return client
