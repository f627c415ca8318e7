"""Subscriptions, fact detection, de-duplication, rate limits with digests, retries with back-off
and the persisted outbox (stormwatch.notify), with an injected clock and recording senders.
The real receivers are in test_notify_receivers.py."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import pytest

from stormwatch.analytics import DuckDBEngine
from stormwatch.analytics.campaigns import Campaign
from stormwatch.events.batch import EventBatchBuilder
from stormwatch.notify import dispatch, facts, outbox, subscriptions
from stormwatch.notify.dispatch import RetryPolicy, deliver_pending, notify_changes
from stormwatch.notify.model import DeliveryError, Fact, Message, NotifyError, Subscription
from stormwatch.store import Store
from stormwatch.threat import state
from stormwatch.threat.kb import load_kb

T0 = datetime(2006, 8, 14, 12)
NOW = datetime(2026, 3, 1, 9, 0)  # the wall clock: unrelated to the data's time on purpose
HOOK = "http://127.0.0.1:9/hook"


def seed(store: Store, attacks: int = 3) -> None:
    """MS06-040 exploited from ``attacks`` sources on the honeypot, and the level raised to 2."""
    b = EventBatchBuilder("honeypot")
    for i in range(attacks):
        ts = T0 + timedelta(minutes=i)
        b.add("session.connect", ts, f"c{i}", src_ip=f"198.51.100.{i}", session=f"s{i}", dst_ip="192.0.2.1",
              dst_port=445, proto="tcp")
        b.add("exploit.attempt", ts + timedelta(seconds=1), f"x{i}", src_ip=f"198.51.100.{i}", session=f"s{i}",
              dst_ip="192.0.2.1", dst_port=445, proto="tcp", vuln="MS06-040", kind="exploit", cve="CVE-2006-3439",
              detector="srvsvc.path_overflow", confidence=0.9)
    store.write_events(b.take())
    change(store, T0 + timedelta(minutes=30), 2, 1, "raised to 2: MS06-040 exploited by 3 sources; port 139 up")


def change(store: Store, ts: datetime, level: int, previous: int, reason: str) -> None:
    state.record_change(store, state.Change(ts, level, previous, "rules", (reason,)))


class Recorder:
    """A sender that records what it got and fails while ``down`` is true."""

    def __init__(self) -> None:
        self.got: list[tuple[Subscription, Message, datetime]] = []
        self.down = False
        self.tries = 0

    def __call__(self, sub: Subscription, msg: Message, now: datetime) -> None:
        self.tries += 1
        if self.down:
            raise DeliveryError("connection refused")
        self.got.append((sub, msg, now))


def senders(rec: Recorder) -> dict[str, Any]:
    return {"webhook": rec, "email": rec, "syslog": rec}


# -- subscriptions --------------------------------------------------------------------------------

def test_add_list_get_remove(store: Store) -> None:
    a = subscriptions.add(store, Subscription("webhook", HOOK, ports=(445, 139, 139), vulns=("ms06-040",)))
    b = subscriptions.add(store, Subscription("email", "ops@example.org, soc@example.org", min_level=3,
                                              options={"smtp_host": "127.0.0.1", "smtp_password_env": "SMTP_PW"}))
    subs = subscriptions.list_all(store)
    assert [s.id for s in subs] == [a, b]
    hook = subscriptions.get(store, a)
    assert hook is not None and hook.ports == (139, 445) and hook.vulns == ("MS06-040",)
    assert hook.secret is not None and len(hook.secret) == 64  # generated: 256 bits
    assert hook.public_dict()["secret"] == "(set)"
    assert subs[1].target == "ops@example.org, soc@example.org" and subs[1].min_level == 3
    assert subscriptions.remove(store, a) is True
    assert subscriptions.remove(store, a) is False
    assert [s.id for s in subscriptions.list_all(store)] == [b]


@pytest.mark.parametrize(("sub", "message"), [
    (Subscription("pager", "x"), "unknown channel"),
    (Subscription("webhook", "ftp://example.org/"), "not an http"),
    (Subscription("email", "not-an-address"), "comma-separated list"),
    (Subscription("syslog", "127.0.0.1:514"), "udp://HOST:PORT"),
    (Subscription("webhook", HOOK, min_level=5), "not a threat level"),
    (Subscription("webhook", HOOK, rate_limit=0), "at least 1"),
    (Subscription("webhook", HOOK, kinds=("weather",)), "unknown kind"),
    (Subscription("webhook", HOOK, ports=(70000,)), "out of range"),
    (Subscription("webhook", HOOK, secret="short"), "at least 16"),
    (Subscription("email", "a@b.org", secret="0123456789abcdef"), "only used by webhooks"),
    (Subscription("email", "a@b.org", options={"smtp_password": "hunter2"}), "never stored"),
    (Subscription("email", "a@b.org", options={"smtp_password_env": "x=y"}), "NAME of an environment"),
    (Subscription("syslog", "udp://127.0.0.1:514", options={"facility": "mail2"}), "facility"),
])
def test_bad_subscriptions_are_refused(store: Store, sub: Subscription, message: str) -> None:
    with pytest.raises(NotifyError, match=message):
        subscriptions.add(store, sub)
    assert subscriptions.list_all(store) == []


def fact(**kw: Any) -> Fact:
    base: dict[str, Any] = dict(key="k", kind="surge", level=2, title="t", text="x", occurred_at=T0, ports=(139,),
                                vulns=("MS06-040",), campaigns=("Mocbot", "cmp-a10363"), sensors=("honeypot",))
    base.update(kw)
    return Fact(**base)


def test_matching_ands_dimensions_and_ors_values() -> None:
    assert Subscription("webhook", HOOK).matches(fact())
    assert Subscription("webhook", HOOK, ports=(445, 139)).matches(fact())
    assert not Subscription("webhook", HOOK, ports=(445,)).matches(fact())
    assert Subscription("webhook", HOOK, ports=(139,), vulns=("ms06-040",)).matches(fact())
    assert not Subscription("webhook", HOOK, ports=(139,), vulns=("MS08-067",)).matches(fact())
    assert Subscription("webhook", HOOK, campaigns=("mocbot",)).matches(fact())
    assert not Subscription("webhook", HOOK, sensors=("campus-fw",)).matches(fact())
    assert not Subscription("webhook", HOOK, min_level=3).matches(fact())
    assert not Subscription("webhook", HOOK, kinds=("level",)).matches(fact())
    # a fact that says nothing about a filtered dimension does not match it
    assert not Subscription("webhook", HOOK, ports=(139,)).matches(fact(ports=()))


# -- facts ------------------------------------------------------------------------------------------

def test_facts_of_a_small_store(store: Store) -> None:
    seed(store)
    got = facts.gather(store, DuckDBEngine(store))
    assert got.at == datetime(2006, 8, 14, 13)  # the end of the hour of the newest event
    by_kind = {f.kind: f for f in got.facts}
    assert set(by_kind) == {"level", "exploit", "campaign"}
    lvl = by_kind["level"]
    assert lvl.key == "level:2006-08-14T12:30:00:1>2" and lvl.level == 2
    assert lvl.ports == (139,) and lvl.vulns == ("MS06-040",)  # named in its reasons
    ex = by_kind["exploit"]
    assert ex.key == "exploit:MS06-040" and ex.sensors == ("honeypot",)
    assert set(ex.vulns) == {"MS06-040", "CVE-2006-3439"} and {139, 445} <= set(ex.ports)  # ports from the KB
    assert by_kind["campaign"].key.startswith("campaign:cmp-")
    # the same data gives the same keys
    assert [f.key for f in facts.gather(store, DuckDBEngine(store)).facts] == [f.key for f in got.facts]


def test_lookback_leaves_old_facts_out(store: Store) -> None:
    seed(store)
    change(store, T0 - timedelta(days=30), 3, 2, "an old change")
    keys = [f.key for f in facts.gather(store, DuckDBEngine(store)).facts]
    assert not any(k.startswith("level:2006-07") for k in keys)
    keys = [f.key for f in facts.gather(store, DuckDBEngine(store), lookback=timedelta(days=40)).facts]
    assert "level:2006-07-15T12:00:00:2>3" in keys


def test_empty_store_has_no_facts(store: Store) -> None:
    got = facts.gather(store, DuckDBEngine(store))
    assert got.at is None and got.facts == [] and got.notes


def test_surge_and_campaign_facts_from_records() -> None:
    from threat_helpers import surge  # the threat tests' signal factories

    since = datetime(2006, 8, 10)
    s = facts.surge_facts([surge("139"), surge("445", active=False, detected_at=since - timedelta(days=1))], since, 3)
    assert [f.key for f in s] == ["surge:port:139:2006-08-14T12"]  # the ended, old one is left out
    assert s[0].ports == (139,) and s[0].level == 3 and "4.1x its baseline" in s[0].text
    c = Campaign(name="Mocbot", id="cmp-a10363", family="Mocbot", aka=("Wargbot",), reason="", attacks=83,
                 sources=80, sensors=("honeypot",), first_seen=T0, last_seen=T0,
                 exploits=("MS06-040", "MS08-067 probe"), variants=(), offers=("http://198.51.100.7/x.exe",),
                 daily=(), week_attacks=83,
                 previous_week_attacks=0, week_sources=80, previous_week_sources=0)
    (f,) = facts.campaign_facts([c], load_kb(), 2)
    assert f.key == "campaign:cmp-a10363" and f.vulns == ("MS06-040", "MS08-067")
    assert set(f.campaigns) == {"Mocbot", "cmp-a10363", "Wargbot"} and 445 in f.ports


# -- queueing, de-duplication, rate limits ---------------------------------------------------------------

def test_each_fact_once_per_subscription(store: Store) -> None:
    seed(store)
    engine = DuckDBEngine(store)
    a = subscriptions.add(store, Subscription("webhook", HOOK))
    first = notify_changes(store, engine, now=NOW)
    assert (first.facts, first.new_facts, first.enqueued, first.duplicates) == (3, 3, 3, 0)
    again = notify_changes(store, engine, now=NOW + timedelta(minutes=5))
    assert (again.new_facts, again.enqueued, again.duplicates) == (0, 0, 3)
    # a subscription made later still gets what is current, once
    b = subscriptions.add(store, Subscription("syslog", "tcp://127.0.0.1:6514", kinds=("level",)))
    later = notify_changes(store, engine, now=NOW + timedelta(minutes=10))
    assert later.enqueued == 1 and later.per_subscription == {b: {"enqueued": 1, "held": 0, "digests": 0}}
    # a new change of the level is one new fact, for both
    change(store, T0 + timedelta(minutes=50), 3, 2, "raised to 3: outbreak")
    news = notify_changes(store, engine, now=NOW + timedelta(minutes=15))
    assert (news.new_facts, news.enqueued) == (1, 2)
    titles = [m.title for m in outbox.messages(store, sub_id=a)]
    assert len(titles) == 4 and len(set(titles)) == 4


def test_filters_choose_what_is_queued(store: Store) -> None:
    seed(store)
    only_445 = subscriptions.add(store, Subscription("webhook", HOOK, ports=(445,)))
    high = subscriptions.add(store, Subscription("webhook", HOOK, min_level=3))
    mocbot = subscriptions.add(store, Subscription("webhook", HOOK, campaigns=("Mocbot",)))
    notify_changes(store, DuckDBEngine(store), now=NOW)
    keys = {m.fact_key or "" for m in outbox.messages(store, sub_id=only_445)}
    # the exploit and the campaign reach 445 (the KB's ports of MS06-040); the level change names 139 only
    assert len(keys) == 2 and "exploit:MS06-040" in keys and any(k.startswith("campaign:cmp-") for k in keys)
    assert outbox.messages(store, sub_id=high) == []  # the level is 2
    assert outbox.messages(store, sub_id=mocbot) == []  # the store's campaign has a generated name


def test_rate_limit_folds_the_excess_into_one_digest(store: Store) -> None:
    seed(store)
    for i in range(4):  # 4 more changes, up to 3 and back to 2 twice: 7 facts in all
        up = i % 2 == 0
        change(store, T0 + timedelta(minutes=40 + i), 3 if up else 2, 2 if up else 3, f"change {i}")
    engine = DuckDBEngine(store)
    sub = subscriptions.add(store, Subscription("webhook", HOOK, rate_limit=3))
    first = notify_changes(store, engine, now=NOW)
    assert (first.enqueued, first.held) == (3, 4)
    # within the hour: no room, the held stay held (none lost, none sent)
    rec = Recorder()
    r = deliver_pending(store, now=NOW + timedelta(minutes=30), senders=senders(rec))
    assert (r.delivered, r.digests) == (3, 0)
    assert outbox.counts(store) == {"delivered": 3, "held": 4}
    # the hour has passed: everything held goes out as one digest
    r = deliver_pending(store, now=NOW + timedelta(minutes=61), senders=senders(rec))
    assert (r.delivered, r.digests) == (1, 1)
    digest = rec.got[-1][1]
    assert digest.kind == "digest" and len(digest.body["facts"]) == 4
    assert {f["key"] for f in digest.body["facts"]} == {m.fact_key for m in outbox.messages(store, status="folded")}
    assert outbox.counts(store) == {"delivered": 4, "folded": 4}
    assert len(outbox.messages(store, sub_id=sub)) == 8


def test_digest_counts_against_the_limit(store: Store) -> None:
    seed(store)
    engine = DuckDBEngine(store)
    subscriptions.add(store, Subscription("webhook", HOOK, rate_limit=1))
    assert notify_changes(store, engine, now=NOW).held == 2
    for i in range(2):
        change(store, T0 + timedelta(minutes=40 + i), 3 - i, 2 + i, f"change {i}")
    # an hour later: room for one message, which is the digest; the two new facts are held again
    r = notify_changes(store, engine, now=NOW + timedelta(minutes=61))
    assert (r.digests, r.enqueued, r.held) == (1, 0, 2)
    assert outbox.counts(store) == {"pending": 2, "folded": 2, "held": 2}


# -- delivery, retries, back-off --------------------------------------------------------------------

def test_backoff_doubles_with_jitter_and_gives_up(store: Store) -> None:
    seed(store)
    subscriptions.add(store, Subscription("webhook", HOOK, kinds=("level",)))
    notify_changes(store, DuckDBEngine(store), now=NOW)
    rec = Recorder()
    rec.down = True
    policy = RetryPolicy(base=10, factor=2, cap=60, max_attempts=5)
    rng = random.Random(7)
    now = NOW
    waits = []
    for attempt in range(1, 6):
        r = deliver_pending(store, now=now, senders=senders(rec), policy=policy, rng=rng)
        assert r.attempted == 1
        (msg,) = outbox.messages(store)
        assert msg.attempts == attempt and msg.last_error == "connection refused"
        if attempt == 5:
            assert (r.gave_up, msg.status, msg.next_attempt_at) == (1, "failed", None)
            break
        assert msg.status == "pending" and msg.next_attempt_at is not None
        wait = (msg.next_attempt_at - now).total_seconds()
        step = min(60, 10 * 2 ** (attempt - 1))
        assert step / 2 <= wait <= step  # equal jitter: half fixed, half random
        waits.append(wait)
        # not retried before it is due
        assert deliver_pending(store, now=msg.next_attempt_at - timedelta(seconds=1), senders=senders(rec),
                               policy=policy, rng=rng).attempted == 0
        now = msg.next_attempt_at
    assert len(set(waits)) == len(waits)  # the jitter makes them differ
    log = outbox.deliveries(store, outbox.messages(store)[0].msg_id)
    assert [d["attempt"] for d in log] == [1, 2, 3, 4, 5] and not any(d["ok"] for d in log)
    # failed is kept, not lost: a retry gives it a new round, and it goes out
    assert dispatch.retry(store, now=now) == 1
    rec.down = False
    assert deliver_pending(store, now=now, senders=senders(rec), policy=policy, rng=rng).delivered == 1
    (msg,) = outbox.messages(store)
    assert msg.status == "delivered" and msg.delivered_at == now and msg.last_error == "connection refused"


def test_receiver_down_keeps_messages_and_does_not_block_others(store: Store) -> None:
    seed(store)
    engine = DuckDBEngine(store)
    down_id = subscriptions.add(store, Subscription("webhook", HOOK))
    up_id = subscriptions.add(store, Subscription("email", "ops@example.org"))
    notify_changes(store, engine, now=NOW)
    hook, mail = Recorder(), Recorder()
    hook.down = True
    r = deliver_pending(store, now=NOW, senders={"webhook": hook, "email": mail, "syslog": mail},
                        rng=random.Random(1))
    # one attempt at the dead receiver, its other messages wait for the next round untried
    assert (r.attempted, r.delivered, r.retrying, r.deferred) == (4, 3, 1, 2)
    assert hook.tries == 1 and len(mail.got) == 3
    assert {m.status for m in outbox.messages(store, sub_id=down_id)} == {"pending"}
    assert {m.status for m in outbox.messages(store, sub_id=up_id)} == {"delivered"}
    hook.down = False
    r = deliver_pending(store, now=NOW + timedelta(hours=2), senders={"webhook": hook, "email": mail, "syslog": mail})
    assert r.delivered == 3 and {m.status for m in outbox.messages(store, sub_id=down_id)} == {"delivered"}


def test_outbox_survives_reopening_the_store(tmp_path: Any) -> None:
    path = tmp_path / "n.duckdb"
    with Store(path) as st:
        seed(st)
        subscriptions.add(st, Subscription("webhook", HOOK))
        notify_changes(st, DuckDBEngine(st), now=NOW)
    with Store(path) as st:
        assert outbox.counts(st) == {"pending": 3}
        rec = Recorder()
        assert deliver_pending(st, now=NOW, senders=senders(rec)).delivered == 3
    with Store(path, read_only=True) as st:
        assert outbox.counts(st) == {"delivered": 3}


def test_remove_cancels_undelivered(store: Store) -> None:
    seed(store)
    sub = subscriptions.add(store, Subscription("webhook", HOOK, rate_limit=1))
    notify_changes(store, DuckDBEngine(store), now=NOW)
    assert outbox.counts(store) == {"pending": 1, "held": 2}
    assert subscriptions.remove(store, sub)
    assert outbox.counts(store) == {"cancelled": 3}
    assert deliver_pending(store, now=NOW, senders=senders(Recorder())).attempted == 0


def test_read_only_store_without_the_tables_reads_empty(tmp_path: Any) -> None:
    import duckdb

    path = tmp_path / "old.duckdb"
    duckdb.connect(str(path)).close()
    with Store(path, read_only=True) as st:
        assert subscriptions.list_all(st) == [] and outbox.messages(st) == [] and outbox.counts(st) == {}


def test_config_file_with_a_password_must_be_private(tmp_path: Any) -> None:
    from stormwatch.notify.config import load_config

    path = tmp_path / "notify.toml"
    path.write_text('[smtp]\nhost = "mail.example.org"\nuser = "sw"\npassword = "hunter2"\n')
    path.chmod(0o644)
    with pytest.raises(NotifyError, match="readable by others") as err:
        load_config(path)
    assert "hunter2" not in str(err.value)
    path.chmod(0o600)
    config = load_config(path)
    assert config.smtp["host"] == "mail.example.org" and "hunter2" not in repr(config)
    path.write_text('[smtp]\nhostname = "x"\n')
    with pytest.raises(NotifyError, match="unknown \\[smtp\\] key 'hostname'"):
        load_config(path)
