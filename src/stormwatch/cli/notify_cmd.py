"""``stormwatch notify``: subscriptions, the notifier's run loop and its outbox
(docs/notifications.md; :mod:`stormwatch.notify`)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from stormwatch.analytics import DuckDBEngine
from stormwatch.cli.options import db_option, format_option, open_store
from stormwatch.cli.output import render
from stormwatch.errors import StormwatchError
from stormwatch.notify import dispatch, outbox, subscriptions
from stormwatch.notify.config import load_config
from stormwatch.notify.model import CHANNELS, DEFAULT_RATE_LIMIT, FACT_KINDS, Subscription
from stormwatch.notify.subscriptions import SMTP_TLS, SYSLOG_FACILITIES
from stormwatch.threat.level import parse_level


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _level(ctx: click.Context, param: click.Parameter, value: str) -> int:
    try:
        return parse_level(value)
    except StormwatchError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group("notify")
def notify() -> None:
    """Notifications: subscribe a webhook, an e-mail address or a syslog receiver to threat-level
    changes, surges, newly exploited vulnerabilities and new campaigns."""


@notify.command("subscribe")
@click.option("--channel", type=click.Choice(CHANNELS), required=True, help="How to deliver.")
@click.option("--target", required=True,
              help="webhook: http(s) URL; email: address[,address...]; syslog: udp://HOST:PORT or tcp://HOST:PORT.")
@click.option("--min-level", default="1", callback=_level, show_default=True,
              help="Only facts filed under this threat level or higher (1-4 or a name/colour).")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(FACT_KINDS), help="Only these kinds of fact.")
@click.option("--port", "ports", multiple=True, type=click.IntRange(0, 65535), help="Only facts about this port.")
@click.option("--vuln", "vulns", multiple=True, help="Only facts about this bulletin or CVE.")
@click.option("--campaign", "campaigns", multiple=True, help="Only facts about this campaign (name, id or family).")
@click.option("--sensor", "sensors", multiple=True, help="Only facts seen by this sensor.")
@click.option("--rate-limit", type=click.IntRange(min=1), default=DEFAULT_RATE_LIMIT, show_default=True,
              help="At most this many messages an hour; the excess is folded into a digest.")
@click.option("--label", default=None, help="A name for the subscription.")
@click.option("--secret", envvar="STORMWATCH_WEBHOOK_SECRET", default=None,
              help="Webhook HMAC key (or $STORMWATCH_WEBHOOK_SECRET) [default: a random one, shown once].")
@click.option("--cafile", default=None, type=click.Path(dir_okay=False), help="Webhook: CA file for https.")
@click.option("--smtp-host", default=None, help="E-mail: SMTP server [default: the notify config file's].")
@click.option("--smtp-port", type=click.IntRange(1, 65535), default=None, help="E-mail: SMTP port.")
@click.option("--smtp-user", default=None, help="E-mail: SMTP user name.")
@click.option("--smtp-password-env", default=None, metavar="NAME",
              help="E-mail: NAME of the environment variable holding the SMTP password (never the password).")
@click.option("--smtp-from", default=None, help="E-mail: sender address.")
@click.option("--smtp-tls", type=click.Choice(SMTP_TLS), default=None, help="E-mail: TLS mode [default: starttls].")
@click.option("--smtp-cafile", default=None, type=click.Path(dir_okay=False), help="E-mail: CA file.")
@click.option("--facility", type=click.Choice(sorted(SYSLOG_FACILITIES)), default=None,
              help="Syslog facility [default: local0].")
@db_option
def subscribe(channel: str, target: str, min_level: int, kinds: tuple[str, ...], ports: tuple[int, ...],
              vulns: tuple[str, ...], campaigns: tuple[str, ...], sensors: tuple[str, ...], rate_limit: int,
              label: str | None, secret: str | None, cafile: str | None, smtp_host: str | None,
              smtp_port: int | None, smtp_user: str | None, smtp_password_env: str | None, smtp_from: str | None,
              smtp_tls: str | None, smtp_cafile: str | None, facility: str | None, db_path: str | None) -> None:
    """Add a subscription; prints its id (and a generated webhook secret, once)."""
    given: dict[str, Any] = {
        "cafile": cafile, "smtp_host": smtp_host, "smtp_port": smtp_port, "smtp_user": smtp_user,
        "smtp_password_env": smtp_password_env, "smtp_from": smtp_from, "smtp_tls": smtp_tls,
        "smtp_cafile": smtp_cafile, "facility": facility}
    options = {k: v for k, v in given.items() if v is not None}
    wrong = sorted(k for k in options if k not in subscriptions.OPTION_KEYS[channel])
    if wrong:
        raise click.UsageError(f"--{wrong[0].replace('_', '-')} does not apply to the {channel} channel")
    sub = Subscription(channel=channel, target=target, min_level=min_level, kinds=kinds, ports=ports, vulns=vulns,
                       campaigns=campaigns, sensors=sensors, secret=secret if channel == "webhook" else None,
                       options=options, rate_limit=rate_limit, label=label)
    with open_store(db_path) as store:
        try:
            sub_id = subscriptions.add(store, sub)
            kept = subscriptions.get(store, sub_id)
        except StormwatchError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(sub_id)
    if channel == "webhook" and secret is None and kept is not None:
        click.echo(f"webhook secret (shown once; give it to the receiver): {kept.secret}", err=True)


@notify.command("list")
@format_option
@db_option
def list_cmd(fmt: str, db_path: str | None) -> None:
    """List the subscriptions (secrets masked)."""
    with open_store(db_path, read_only=True) as store:
        rows = [s.public_dict() for s in subscriptions.list_all(store)]
    if fmt != "json":
        for r in rows:
            r["options"] = json.dumps(r["options"], sort_keys=True) if r["options"] else ""
    click.echo(render(rows, fmt, ["id", "channel", "target", "min_level", "kinds", "ports", "vulns", "campaigns",
                                  "sensors", "rate_limit", "secret", "options", "label", "created_at"]))


@notify.command("remove")
@click.argument("sub_id")
@db_option
def remove(sub_id: str, db_path: str | None) -> None:
    """Remove a subscription (its undelivered messages are cancelled)."""
    with open_store(db_path) as store:
        try:
            gone = subscriptions.remove(store, sub_id)
        except StormwatchError as exc:
            raise click.ClickException(str(exc)) from exc
    if not gone:
        raise click.ClickException(f"no subscription {sub_id!r} (see `stormwatch notify list`)")
    click.echo(f"removed {sub_id}")


def _run_once(store: Any, config: Any, lookback: timedelta, payloads: str | None, fmt: str) -> None:
    now = _now()
    found = dispatch.notify_changes(store, DuckDBEngine(store), now=now, lookback=lookback, payloads=payloads)
    sent = dispatch.deliver_pending(store, now=_now(), config=config)
    if fmt == "json":
        click.echo(json.dumps({"dispatch": found.as_dict(), "delivery": sent.as_dict()}, indent=1))
        return
    data = f"{found.data_at:%Y-%m-%d %H:%M}" if found.data_at else "-"
    click.echo(f"{now:%Y-%m-%d %H:%M:%S} data to {data}: facts={found.facts} new={found.new_facts} "
               f"queued={found.enqueued} held={found.held} digests={found.digests + sent.digests} "
               f"delivered={sent.delivered} retrying={sent.retrying} gave_up={sent.gave_up} "
               f"deferred={sent.deferred}")
    for note in found.notes:
        click.echo(f"note: {note}")
    for err in sent.errors:
        click.echo(f"error: {err}", err=True)


@notify.command("run")
@click.option("--once", is_flag=True, help="Detect and deliver once, then exit [default].")
@click.option("--interval", type=click.FloatRange(min=1), default=None, metavar="SECONDS",
              help="Detect and deliver every SECONDS until interrupted.")
@click.option("--lookback-days", type=click.FloatRange(min=0, min_open=True), default=7.0, show_default=True,
              help="Facts older than this (before the newest data) are not notified.")
@click.option("--payloads", default=None, type=click.Path(file_okay=False),
              help="The sensor's payload directory (names campaigns by YARA rules).")
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
              help="Notify config file [default: $STORMWATCH_NOTIFY_CONFIG or ~/.config/stormwatch/notify.toml].")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@db_option
def run(once: bool, interval: float | None, lookback_days: float, payloads: str | None, config_path: str | None,
        fmt: str, db_path: str | None) -> None:
    """Detect what is new, queue it for the matching subscriptions and deliver the outbox."""
    if once and interval is not None:
        raise click.UsageError("--once and --interval exclude each other")
    try:
        config = load_config(config_path)
    except StormwatchError as exc:
        raise click.ClickException(str(exc)) from exc
    lookback = timedelta(days=lookback_days)
    with open_store(db_path) as store:
        while True:
            try:
                _run_once(store, config, lookback, payloads, fmt)
            except StormwatchError as exc:
                if interval is None:
                    raise click.ClickException(str(exc)) from exc
                click.echo(f"error: {exc}", err=True)  # a loop keeps going: the next round may succeed
            if interval is None:
                return
            time.sleep(interval)


@notify.command("outbox")
@click.option("--status", type=click.Choice(outbox.STATUSES), default=None, help="Only messages in this state.")
@click.option("--subscription", "sub_id", default=None, help="Only this subscription's messages.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--retry", "retry_id", default=None, metavar="ID|all",
              help="Give a failed message (or all of them) a new round of attempts.")
@format_option
@db_option
def outbox_cmd(status: str | None, sub_id: str | None, limit: int, retry_id: str | None, fmt: str,
               db_path: str | None) -> None:
    """Show the outbox: what is waiting, delivered, held for a digest or failed (with the error)."""
    if retry_id is not None:
        if retry_id != "all" and not retry_id.isdigit():
            raise click.BadParameter("a message id or 'all'", param_hint="--retry")
        with open_store(db_path) as store:
            try:
                n = dispatch.retry(store, None if retry_id == "all" else int(retry_id), now=_now())
            except StormwatchError as exc:
                raise click.ClickException(str(exc)) from exc
        click.echo(f"{n} message(s) queued again")
        return
    with open_store(db_path, read_only=True) as store:
        rows = [m.as_dict() for m in outbox.messages(store, status=status, sub_id=sub_id, limit=limit)]
        totals = outbox.counts(store)
    click.echo(render(rows, fmt, ["msg_id", "sub_id", "kind", "status", "attempts", "level", "title", "created_at",
                                  "next_attempt_at", "delivered_at", "last_error"]))
    if fmt == "table":
        click.echo("totals: " + (", ".join(f"{k}={v}" for k, v in sorted(totals.items())) or "empty"))
