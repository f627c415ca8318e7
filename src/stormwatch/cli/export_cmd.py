"""``stormwatch export stix|misp|blocklist|firewall``: the library's exports on the command line
(docs/exports.md). The lead registers these commands in the ``export`` group of cli/main.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from stormwatch.analytics import DuckDBEngine, Engine
from stormwatch.cli.options import db_option, open_store, parse_time
from stormwatch.errors import StormwatchError
from stormwatch.export.attackers import EXPIRE_DAYS
from stormwatch.export.blocklist import FORMATS, blocklist
from stormwatch.export.firewall import TARGETS, firewall_rules
from stormwatch.export.misp import misp_event
from stormwatch.export.stix import stix_bundle, validate_bundle
from stormwatch.threat.kb import KnowledgeBase, load_kb

F = TypeVar("F", bound=Callable[..., Any])


def _common(f: F) -> F:
    f = click.option("--out", type=click.Path(dir_okay=False), default=None,
                     help="Write to this file instead of stdout.")(f)
    f = click.option("--since", default=None, help="Only data from this date or ISO time (UTC) on.")(f)
    f = click.option("--until", default=None, help="Only data before this date or ISO time (UTC).")(f)
    return db_option(f)


def _kb_option(f: F) -> F:
    return click.option("--kb", "kb_files", multiple=True, envvar="STORMWATCH_KB", type=click.Path(dir_okay=False),
                        help="Operator knowledge-base file (repeatable) [default: $STORMWATCH_KB].")(f)


def _times(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    s, u = parse_time(since), parse_time(until)
    if s is not None and u is not None and u <= s:
        raise click.BadParameter("--until must be after --since")
    return s, u


def _kb(files: tuple[str, ...]) -> KnowledgeBase:
    try:
        return load_kb(files)
    except StormwatchError as exc:
        raise click.ClickException(str(exc)) from exc


@contextmanager
def _engine(db_path: str | None) -> Iterator[Engine]:
    with open_store(db_path, read_only=True) as store:
        yield DuckDBEngine(store)


def _emit(text: str, out: str | None) -> None:
    if out is None:
        click.echo(text, nl=not text.endswith("\n"))
        return
    Path(out).write_text(text, encoding="utf-8")
    click.echo(f"wrote {out}", err=True)


def _run(fn: Callable[[], str]) -> str:
    try:
        return fn()
    except (StormwatchError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


@click.command("stix")
@_common
@_kb_option
@click.option("--expire-days", type=click.IntRange(1, 3650), default=EXPIRE_DAYS, show_default=True,
              help="Indicators are valid until this many days after their last sighting.")
@click.option("--validate/--no-validate", default=True, show_default=True,
              help="Parse the bundle with the stix2 library before writing it.")
def stix_cmd(since: str | None, until: str | None, out: str | None, db_path: str | None,
             kb_files: tuple[str, ...], expire_days: int, validate: bool) -> None:
    """A STIX 2.1 bundle: indicators for attacking addresses and payload hashes, sightings, the
    exploited vulnerabilities with their courses of action, malware families."""
    s, u = _times(since, until)
    kb = _kb(kb_files)
    with _engine(db_path) as engine:
        bundle = stix_bundle(engine, since=s, until=u, kb=kb, expire_days=expire_days)
    if validate:
        try:
            validate_bundle(bundle)
        except ImportError as exc:
            raise click.ClickException("--validate needs the stix2 library (pip install stix2)") from exc
    _emit(json.dumps(bundle, indent=1, ensure_ascii=False) + "\n", out)


@click.command("misp")
@_common
@_kb_option
@click.option("--expire-days", type=click.IntRange(1, 3650), default=EXPIRE_DAYS, show_default=True,
              help="Expiration sightings this many days after the last sighting.")
@click.option("--tlp", type=click.Choice(["clear", "white", "green", "amber", "amber+strict", "red"]),
              default="amber", show_default=True, help="TLP tag of the event.")
@click.option("--distribution", type=click.IntRange(0, 4), default=0, show_default=True,
              help="MISP distribution: 0 organisation, 1 community, 2 connected, 3 all, 4 sharing group.")
def misp_cmd(since: str | None, until: str | None, out: str | None, db_path: str | None,
             kb_files: tuple[str, ...], expire_days: int, tlp: str, distribution: int) -> None:
    """A MISP event (core format JSON): attacking addresses, payload hashes, exploited CVEs,
    sightings, with the threat level mapped to threat_level_id."""
    s, u = _times(since, until)
    kb = _kb(kb_files)
    with _engine(db_path) as engine:
        event = misp_event(engine, since=s, until=u, kb=kb, expire_days=expire_days, tlp=tlp,
                           distribution=distribution)
    _emit(json.dumps(event, indent=1, ensure_ascii=False) + "\n", out)


@click.command("blocklist")
@_common
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="plain", show_default=True,
              help="plain: one address per line with # comments; csv: a header row and one row per address.")
@click.option("--expire-days", type=click.IntRange(1, 3650), default=EXPIRE_DAYS, show_default=True,
              help="An entry expires this many days after its last sighting.")
@click.option("--min-events", type=click.IntRange(1, None), default=1, show_default=True,
              help="Leave out addresses with fewer events than this.")
@click.option("--local-net", "local_nets", multiple=True,
              help="Own network (CIDR, repeatable), never listed [default: RFC 1918, ULA, link-local].")
def blocklist_cmd(since: str | None, until: str | None, out: str | None, db_path: str | None, fmt: str,
                  expire_days: int, min_events: int, local_nets: tuple[str, ...]) -> None:
    """A blocklist of attacking addresses with first/last seen, count, reasons and expiry."""
    s, u = _times(since, until)
    with _engine(db_path) as engine:
        text = _run(lambda: blocklist(engine, since=s, until=u, fmt=fmt, expire_days=expire_days,
                                      min_events=min_events, local_nets=local_nets or None))
    _emit(text, out)


@click.command("firewall")
@_common
@click.option("--target", type=click.Choice(TARGETS), default="nftables", show_default=True,
              help="Firewall the rules are written for.")
@click.option("--wan-iface", default=None,
              help="Internet-facing interface: inbound rules match traffic arriving on it [default: all].")
@click.option("--expire-days", type=click.IntRange(1, 3650), default=EXPIRE_DAYS, show_default=True,
              help="Addresses not seen for this many days are left out.")
@click.option("--local-net", "local_nets", multiple=True,
              help="Own network (CIDR, repeatable), never blocked [default: RFC 1918, ULA, link-local].")
def firewall_cmd(since: str | None, until: str | None, out: str | None, db_path: str | None, target: str,
                 wan_iface: str | None, expire_days: int, local_nets: tuple[str, ...]) -> None:
    """Perimeter rules that block TCP 135/139/445 and UDP 135/137/138 inbound (the MS06-040
    advice) and the blocklist's addresses, for nftables, iptables, ip6tables, pf or Cisco IOS."""
    s, u = _times(since, until)
    with _engine(db_path) as engine:
        text = _run(lambda: firewall_rules(engine, target=target, since=s, until=u, expire_days=expire_days,
                                           wan_iface=wan_iface, local_nets=local_nets or None))
    _emit(text, out)


EXPORT_COMMANDS = (stix_cmd, misp_cmd, blocklist_cmd, firewall_cmd)
"""Registered by cli/main.py: ``for c in EXPORT_COMMANDS: export.add_command(c)``."""
