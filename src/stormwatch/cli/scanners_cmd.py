"""``stormwatch scanners``: sources decided to be scanning (TRW on connection outcomes, a
distinct-targets threshold on bare attempts); method and defaults in
:mod:`stormwatch.analytics.scanners`."""

from __future__ import annotations

import click

from stormwatch.analytics.scanners import DEFAULT_LOCAL_NETS, METHODS, detect_scanners, parse_local_nets
from stormwatch.cli.options import db_option, engine_options, format_option, open_engine, parse_time
from stormwatch.cli.output import render

COLUMNS = ["src", "direction", "pattern", "method", "first_seen", "decided_at", "attempts_to_decision", "targets",
           "ports", "failures", "successes", "sensors", "score"]


@click.command("scanners")
@click.option("--since", default=None, help="From this date or ISO time (UTC) [default: all].")
@click.option("--until", default=None, help="Before this date or ISO time (UTC) [default: all].")
@click.option("--local-net", "local_nets", multiple=True, metavar="CIDR",
              help="A network of your own (repeatable); sources inside are outbound "
                   f"[default: {', '.join(DEFAULT_LOCAL_NETS)}].")
@click.option("--method", type=click.Choice(METHODS), default="auto", show_default=True,
              help="trw: sequential test on connection outcomes; threshold: distinct targets per 15 min; "
                   "auto: TRW where outcomes exist, threshold otherwise.")
@click.option("--direction", type=click.Choice(["inbound", "outbound"]), default=None,
              help="Only sources outside (inbound) or inside (outbound) your networks.")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Judge sources by their contacts to this destination port only (e.g. 445).")
@click.option("--limit", type=click.IntRange(1), default=None, help="Show at most this many (earliest first).")
@format_option
@engine_options
@db_option
def scanners_cmd(since: str | None, until: str | None, local_nets: tuple[str, ...], method: str,
                 direction: str | None, port: int | None, limit: int | None, fmt: str, db_path: str | None,
                 engine: str, lake: str | None) -> None:
    """Sources scanning (inbound) or local hosts scanning out (outbound): which hosts are infected
    and probing, e.g. `stormwatch scanners --direction outbound --port 445`."""
    nets = list(local_nets) if local_nets else None
    try:
        parse_local_nets(nets)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--local-net") from None
    start, end = parse_time(since), parse_time(until)
    if start is not None and end is not None and end <= start:
        raise click.BadParameter("--until must be after --since", param_hint="--until")
    with open_engine(db_path, engine, lake) as eng:
        found = detect_scanners(eng, since=start, until=end, local_nets=nets, method=method,
                                direction=direction, port=port)
    shown = found[:limit] if limit else found
    rows = [s.as_dict() for s in shown]
    if fmt == "table":
        what = f"{direction} " if direction else ""
        on = f" on port {port}" if port is not None else ""
        more = f" (showing {len(shown)})" if len(shown) < len(found) else ""
        click.echo(f"{len(found)} {what}scanner(s){on}, method {method}{more}; score = log likelihood ratio "
                   f"(trw) or distinct targets in 15 min (threshold)")
        if not rows:
            return
    click.echo(render(rows, fmt, COLUMNS))
