"""The data of a running stack, in the terminal or a PNG, from the Grafana dashboards' queries (ops/show.py)."""
import sys

from invoke import task

from ._common import ENV_HELP, SET_HELP, clear_errors, env_of


@task(help={
    "env": ENV_HELP,
    "set": SET_HELP,
    "since": "how far back: an InfluxQL duration, 15m, 1h, 6h, 2d, 1w (default 1h, the dashboards' range)",
    "top": "how many sensors in each type's top list (default 5; the dashboard's table shows 10)",
    "type": "only this reading type (repeatable, or comma-separated: --type temp,humidity); default all",
    "sensor": "only this sensor id, or a glob such as 'tls-*' (repeatable, or comma-separated); lists every "
              "match instead of summarising large groups",
    "png": "also write a PNG plot of the overview's '<type> per sensor' panels to this file (matplotlib)",
    "influxdb_url": "query this InfluxDB 1.x directly (http://HOST:PORT) instead of the env's Compose stack "
                    "through its api container",
}, iterable=["set", "type", "sensor"])
def show(c, env=None, set=None, since="1h", top="5", type=None, sensor=None, png=None,  # noqa: A002 - --set, --type
         influxdb_url=None):
    """Show the stack's data: sensors, latest values, top N, readings per minute; --png plots it.

    Runs the provisioned Grafana dashboards' own InfluxQL (grafana-provisioning/dashboards/) with
    Grafana's macros expanded, as the read-only InfluxDB reader user: through the running Compose
    stack's api container (InfluxDB is not published), or --influxdb-url. Made for where Grafana
    cannot run; the PNG says it is not Grafana's."""
    from pathlib import Path

    from ops import devtools, render
    from ops import show as view

    dry = c.config.run.dry
    with clear_errors():
        env = env_of(c, env)
        options = view.Options(since=since, top=view.parse_top(top), types=tuple(view.split_names(type, "type")),
                               sensors=tuple(view.split_names(sensor, "sensor"))).check()
        path = view.check_png_path(Path(png)) if png else None
        if path:
            devtools.ensure("./iot show --png", dry=dry)  # matplotlib
        source = view.source_for(env, render.parse_overrides(set or []), influxdb_url, c.config.iot["env"])
        if dry:
            print("\n".join(view.dry_run(source, options, path)))
            return
        snap = view.collect(source, options, view.now_utc())
        print(view.render_screen(snap, view.Style(view.use_colour(sys.stdout)), view.terminal_width(),
                                 list_all=bool(options.sensors)), end="", flush=True)
        if path:
            made = view.plot(source, options, snap, path)
            print(f"wrote {path} ({made['bytes'] // 1024} KiB): {', '.join(snap.types)} per sensor, "
                  f"last {options.since}, mean per {made['interval']}")
