"""`./iot show`: the data of a running stack in the terminal (or a PNG), from the dashboards' own queries.

Grafana cannot run on every machine (not on this project's: no package, no registry). What it would
draw is still here: the panels' InfluxQL, in grafana-provisioning/dashboards/*.json. This module runs
those queries with Grafana's macros expanded (ops/dashboards.py, the expansion the dashboard tests use)
and draws the answers as text: the IoT overview's "Active sensors", "Readings in range", "Readings per
minute" (a sparkline per type), "Latest value per sensor" (small groups of sensors listed, large ones
such as the 77 stations of the MQTT fleet summarised), "Top 10 sensors: highest $type" (N = --top),
and the districts dashboard's "Stations reporting (latest)" / "Latest per district". `--png` plots the
overview's "$type per sensor" panels with matplotlib (Agg), captioned as what it is: not Grafana.

Where the data comes from:
- a Compose stack (default): InfluxDB is not published, so the statements go through the stack's api
  container (`docker exec … python3`, ops/db.py's query script) as the InfluxDB **reader** user
  (Grafana's: read-only), its password read from secrets/ENV/influxdb_reader_password and sent on stdin;
- `--influxdb-url URL`: that InfluxDB directly (no Docker), as the reader when influxdb.auth is on and
  the env's reader secret exists.
Statements go in batches (`;`-separated, one request each): one `docker exec` for the screen, one more
for the per-type panels, one for the plot.

query   options, sources (a stack's api container or an InfluxDB URL), the dashboards' queries, a snapshot
screen  the text: sparklines, latest values, top N
plot    the PNG
"""
from ops import dashboards as dash  # noqa: F401 - the task catches dash.DashboardError

# What the task and the tests use, as ops.show.NAME.
from .plot import check_png_path, plot  # noqa: F401
from .query import (  # noqa: F401
    TOP,
    Options,
    Queries,
    ShowError,
    Snapshot,
    collect,
    dry_run,
    now_utc,
    parse_since,
    parse_time,
    parse_top,
    source_for,
    split_names,
)
from .screen import (  # noqa: F401
    Style,
    format_age,
    format_value,
    group_of,
    render_screen,
    resample,
    sparkline,
    terminal_width,
    use_colour,
)
