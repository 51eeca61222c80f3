#!/bin/sh
# The web image's entrypoint (the official nginx image's convention: configuration at container start).
# Validates the settings, renders nginx.conf.template into WEB_RUN_DIR, writes WEB_RUN_DIR/config.json
# (the page's broker user and password), then replaces itself with nginx in the foreground.
#
# Settings (environment):
#   WEB_PORT                port nginx listens on (required; non-privileged in the image: 8080)
#   MQTT_WS_UPSTREAM        host:port of the broker's WebSockets listener, e.g. mosquitto:9001 (required)
#   MQTT_WEB_USERNAME       the broker's read-only web user (required)
#   MQTT_WEB_PASSWORD_FILE  file holding its password (default /run/secrets/mqtt_web_password)
#   WEB_BIND                address to listen on (default: all; the tests use 127.0.0.1)
#   WEB_RESOLVER            DNS server nginx asks for the broker's name (default: /etc/resolv.conf's first
#                           nameserver, Docker's 127.0.0.11 in a container)
#   WEB_ROOT                the site (default /usr/share/iot-web)
#   WEB_TEMPLATE            the template (default /etc/iot-web/nginx.conf.template)
#   WEB_RUN_DIR             where nginx.conf, config.json, the pid and temp files go (default /tmp)
#   WEB_NGINX               the nginx binary (default nginx; not NGINX, which nginx itself reads)
# The same script runs natively in tests/integration/test_web_page.py with these paths overridden.
# A missing or bad setting: one line on stderr, exit 64.
set -eu

die() {
    printf 'web: %s\n' "$*" >&2
    exit 64
}

WEB_ROOT=${WEB_ROOT:-/usr/share/iot-web}
WEB_TEMPLATE=${WEB_TEMPLATE:-/etc/iot-web/nginx.conf.template}
WEB_RUN_DIR=${WEB_RUN_DIR:-/tmp}
WEB_BIND=${WEB_BIND:-}
WEB_NGINX=${WEB_NGINX:-nginx}
MQTT_WEB_PASSWORD_FILE=${MQTT_WEB_PASSWORD_FILE:-/run/secrets/mqtt_web_password}

is_port() {
    case $1 in
        '' | *[!0-9]* | 0*) return 1 ;;
    esac
    [ "${#1}" -le 5 ] && [ "$1" -le 65535 ]
}

# Values go into nginx.conf unquoted (and through sed): only characters that need no quoting.
is_host() {
    case $1 in
        '' | *[!A-Za-z0-9._-]*) return 1 ;;
    esac
}

is_path() {
    case $1 in
        /*) ;;
        *) return 1 ;;
    esac
    case $1 in
        *[!A-Za-z0-9._/-]*) return 1 ;;
    esac
}

[ -n "${WEB_PORT:-}" ] || die "WEB_PORT is not set (the port nginx listens on, e.g. 8080)"
is_port "$WEB_PORT" || die "WEB_PORT='$WEB_PORT' is not a port number (1-65535)"

[ -n "${MQTT_WS_UPSTREAM:-}" ] || die "MQTT_WS_UPSTREAM is not set (host:port of the broker's WebSockets listener, e.g. mosquitto:9001)"
upstream_host=${MQTT_WS_UPSTREAM%:*}
upstream_port=${MQTT_WS_UPSTREAM##*:}
{ [ "$upstream_host" != "$MQTT_WS_UPSTREAM" ] && is_host "$upstream_host" && is_port "$upstream_port"; } \
    || die "MQTT_WS_UPSTREAM='$MQTT_WS_UPSTREAM' is not host:port (e.g. mosquitto:9001)"

if [ -n "$WEB_BIND" ]; then
    is_host "$WEB_BIND" || die "WEB_BIND='$WEB_BIND' is not an address (e.g. 127.0.0.1)"
    WEB_LISTEN=$WEB_BIND:$WEB_PORT
else
    WEB_LISTEN=$WEB_PORT
fi

if [ -z "${WEB_RESOLVER:-}" ]; then
    WEB_RESOLVER=$(sed -n 's/^[[:space:]]*nameserver[[:space:]]\{1,\}\([^[:space:]]*\).*/\1/p' /etc/resolv.conf 2>/dev/null | head -n 1)
    WEB_RESOLVER=${WEB_RESOLVER:-127.0.0.11}
fi
case $WEB_RESOLVER in
    *:*:*) WEB_RESOLVER="[$WEB_RESOLVER]" ;;  # IPv6: nginx wants it in brackets
esac
case $WEB_RESOLVER in
    '' | *[!0-9A-Za-z.:_\[\]-]*) die "WEB_RESOLVER='$WEB_RESOLVER' is not an address (e.g. 127.0.0.11)" ;;
esac

[ -n "${MQTT_WEB_USERNAME:-}" ] || die "MQTT_WEB_USERNAME is not set (the broker's read-only web user)"
[ -r "$MQTT_WEB_PASSWORD_FILE" ] && [ -f "$MQTT_WEB_PASSWORD_FILE" ] \
    || die "MQTT_WEB_PASSWORD_FILE='$MQTT_WEB_PASSWORD_FILE' is not a readable file"
password=$(cat "$MQTT_WEB_PASSWORD_FILE")  # without its trailing newline(s)
[ -n "$password" ] || die "MQTT_WEB_PASSWORD_FILE='$MQTT_WEB_PASSWORD_FILE' is empty"

# Printable characters only (any byte >= 0x80 is allowed for UTF-8): JSON then needs \ and " escaped.
# (The x: command substitution would strip a newline, the very thing looked for.)
printable() {
    [ "$(printf '%s' "$1" | LC_ALL=C tr -d '\040-\176\200-\377'; echo x)" = x ]
}
printable "$MQTT_WEB_USERNAME" || die "MQTT_WEB_USERNAME has a control character"
printable "$password" || die "MQTT_WEB_PASSWORD_FILE='$MQTT_WEB_PASSWORD_FILE' holds more than one line or a control character"
json_string() {
    printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"
}

check_path() {
    is_path "$2" || die "$1='$2' is not an absolute path of letters, digits, '.', '_', '-' and '/'"
}
check_path WEB_ROOT "$WEB_ROOT"
check_path WEB_TEMPLATE "$WEB_TEMPLATE"
check_path WEB_RUN_DIR "$WEB_RUN_DIR"
[ -f "$WEB_ROOT/index.html" ] || die "WEB_ROOT='$WEB_ROOT' has no index.html"
[ -r "$WEB_TEMPLATE" ] || die "WEB_TEMPLATE='$WEB_TEMPLATE' is not readable"
[ -d "$WEB_RUN_DIR" ] && [ -w "$WEB_RUN_DIR" ] || die "WEB_RUN_DIR='$WEB_RUN_DIR' is not a writable folder"
command -v "$WEB_NGINX" >/dev/null 2>&1 || die "WEB_NGINX='$WEB_NGINX' not found"

# Readable by nginx's workers whatever user they run as: the file is served to anyone anyway.
umask 022
printf '{"username": %s, "password": %s}\n' "$(json_string "$MQTT_WEB_USERNAME")" "$(json_string "$password")" \
    >"$WEB_RUN_DIR/config.json.new"
mv -f "$WEB_RUN_DIR/config.json.new" "$WEB_RUN_DIR/config.json"

# envsubst for exactly these names (gettext-base is not in the image); the values were checked above
# to hold no character that sed's replacement (| & \) or nginx's syntax would interpret.
sed -e "s|\${WEB_LISTEN}|$WEB_LISTEN|g" \
    -e "s|\${WEB_ROOT}|$WEB_ROOT|g" \
    -e "s|\${WEB_RUN_DIR}|$WEB_RUN_DIR|g" \
    -e "s|\${WEB_RESOLVER}|$WEB_RESOLVER|g" \
    -e "s|\${MQTT_WS_UPSTREAM}|$MQTT_WS_UPSTREAM|g" \
    "$WEB_TEMPLATE" >"$WEB_RUN_DIR/nginx.conf.new"
mv -f "$WEB_RUN_DIR/nginx.conf.new" "$WEB_RUN_DIR/nginx.conf"

printf 'web: listening on %s, /mqtt -> %s, broker user %s\n' "$WEB_LISTEN" "$MQTT_WS_UPSTREAM" "$MQTT_WEB_USERNAME" >&2
exec "$WEB_NGINX" -e stderr -c "$WEB_RUN_DIR/nginx.conf"
