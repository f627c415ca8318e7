"""Named, ordered schema migrations of the store.

Each migration runs once, inside a transaction, and is recorded in ``schema_migrations`` with its
number, name and the time it ran. Never edit a migration that has shipped: add a new one.

Addresses are stored as canonical text (VARCHAR): DuckDB's ``inet`` type is an extension that would
be downloaded at run time, which stormwatch never does. ``event_id`` is the 128-bit MD5 of
(event, sensor, key) as a UHUGEINT: stable across DuckDB versions, and without the collisions that
DuckDB's 64-bit ``hash()`` showed on near-identical log lines of a real pfirewall.log.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    number: int
    name: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "create_events",
        """
        CREATE TABLE events (
            event_id       UHUGEINT  NOT NULL,
            event          VARCHAR   NOT NULL,
            schema_version SMALLINT  NOT NULL,
            ts             TIMESTAMP NOT NULL,
            sensor         VARCHAR   NOT NULL,
            session        VARCHAR,
            src_ip         VARCHAR,
            src_port       INTEGER,
            dst_ip         VARCHAR,
            dst_port       INTEGER,
            proto          VARCHAR,
            tcp_flags      VARCHAR,
            action         VARCHAR,
            outcome        VARCHAR,
            count          INTEGER   NOT NULL DEFAULT 1,
            data           VARCHAR
        );
        """,
    ),
    Migration(
        2,
        "create_rejects",
        """
        CREATE TABLE rejects (
            reject_id   UHUGEINT  NOT NULL,
            source      VARCHAR   NOT NULL,
            line        BIGINT    NOT NULL,
            format      VARCHAR,
            reason      VARCHAR   NOT NULL,
            raw         VARCHAR,
            recorded_at TIMESTAMP NOT NULL
        );
        """,
    ),
    Migration(
        3,
        "create_ingest_runs",
        """
        CREATE SEQUENCE ingest_run_seq;
        CREATE TABLE ingest_runs (
            run_id      BIGINT    NOT NULL DEFAULT nextval('ingest_run_seq'),
            source      VARCHAR   NOT NULL,
            format      VARCHAR,
            sensor      VARCHAR,
            started_at  TIMESTAMP NOT NULL,
            finished_at TIMESTAMP,
            read        BIGINT,
            accepted    BIGINT,
            rejected    BIGINT,
            duplicates  BIGINT,
            first_ts    TIMESTAMP,
            last_ts     TIMESTAMP,
            error       VARCHAR
        );
        """,
    ),
    Migration(
        4,
        "create_port_day_rollup",
        # The port report's per-(day, port) figures, kept by the analytics layer
        # (stormwatch.analytics.rollup) from the same SQL the report runs. rollup_days lists the
        # days whose rows are current; every write removes the days it touched from it, and
        # readers compute every day not listed live, so a missing refresh never shows old figures.
        """
        CREATE TABLE port_day (
            day         DATE    NOT NULL,
            port        INTEGER NOT NULL,
            records     BIGINT  NOT NULL,
            targets     BIGINT  NOT NULL,
            sources     BIGINT  NOT NULL,
            tcp_records BIGINT  NOT NULL,
            udp_records BIGINT  NOT NULL,
            first_seen  TIMESTAMP NOT NULL,
            last_seen   TIMESTAMP NOT NULL
        );
        CREATE TABLE rollup_days (
            day          DATE PRIMARY KEY,
            refreshed_at TIMESTAMP NOT NULL
        );
        """,
    ),
    Migration(
        5,
        "create_threat_level",
        # The threat level's history (stormwatch.threat.state): every change of the level with
        # who or what made it ('rules' or 'analyst:NAME') and its reasons (JSON list); the
        # analysts' overrides (active from set_at until expires_at, or until cleared); and the
        # rules' own state after each evaluation (the level the rules hold, and when the rules
        # last supported it), which the hold time before lowering is measured from.
        """
        CREATE SEQUENCE threat_level_change_seq;
        CREATE TABLE threat_level_changes (
            change_id BIGINT    NOT NULL DEFAULT nextval('threat_level_change_seq'),
            ts        TIMESTAMP NOT NULL,
            level     SMALLINT  NOT NULL,
            previous  SMALLINT  NOT NULL,
            actor     VARCHAR   NOT NULL,
            reasons   VARCHAR   NOT NULL
        );
        CREATE SEQUENCE threat_level_override_seq;
        CREATE TABLE threat_level_overrides (
            override_id BIGINT    NOT NULL DEFAULT nextval('threat_level_override_seq'),
            level       SMALLINT  NOT NULL,
            reason      VARCHAR   NOT NULL,
            who         VARCHAR   NOT NULL,
            set_at      TIMESTAMP NOT NULL,
            expires_at  TIMESTAMP,
            cleared_at  TIMESTAMP,
            cleared_by  VARCHAR
        );
        CREATE TABLE threat_level_checks (
            ts           TIMESTAMP NOT NULL,
            level        SMALLINT  NOT NULL,
            rule_level   SMALLINT  NOT NULL,
            candidate    SMALLINT  NOT NULL,
            supported_at TIMESTAMP NOT NULL
        );
        """,
    ),
    Migration(
        6,
        "create_notifications",
        # Notifications (stormwatch.notify, docs/notifications.md): the subscriptions; every fact
        # the notifier has seen (a stable key per level change, surge, newly exploited bulletin or
        # campaign); which fact went to which subscription (each once: the de-duplication); the
        # persisted outbox (a message stays there until delivered, and a message that gave up is
        # kept with its error); every delivery attempt; and the notifier's runs.
        """
        CREATE TABLE notify_subscriptions (
            sub_id     VARCHAR   PRIMARY KEY,
            channel    VARCHAR   NOT NULL,
            target     VARCHAR   NOT NULL,
            min_level  SMALLINT  NOT NULL DEFAULT 1,
            kinds      VARCHAR[] NOT NULL,
            ports      INTEGER[] NOT NULL,
            vulns      VARCHAR[] NOT NULL,
            campaigns  VARCHAR[] NOT NULL,
            sensors    VARCHAR[] NOT NULL,
            secret     VARCHAR,
            options    VARCHAR   NOT NULL,
            rate_limit INTEGER   NOT NULL,
            label      VARCHAR,
            created_at TIMESTAMP NOT NULL
        );
        CREATE TABLE notify_facts (
            fact_key      VARCHAR   PRIMARY KEY,
            kind          VARCHAR   NOT NULL,
            occurred_at   TIMESTAMP,
            first_seen_at TIMESTAMP NOT NULL,
            level         SMALLINT  NOT NULL,
            title         VARCHAR   NOT NULL,
            body          VARCHAR   NOT NULL
        );
        CREATE TABLE notify_sent (
            sub_id   VARCHAR   NOT NULL,
            fact_key VARCHAR   NOT NULL,
            sent_at  TIMESTAMP NOT NULL,
            PRIMARY KEY (sub_id, fact_key)
        );
        CREATE SEQUENCE notify_outbox_seq;
        CREATE TABLE notify_outbox (
            msg_id          BIGINT    NOT NULL DEFAULT nextval('notify_outbox_seq'),
            sub_id          VARCHAR   NOT NULL,
            kind            VARCHAR   NOT NULL,
            fact_key        VARCHAR,
            digest_id       BIGINT,
            level           SMALLINT  NOT NULL,
            title           VARCHAR   NOT NULL,
            body            VARCHAR   NOT NULL,
            status          VARCHAR   NOT NULL,
            attempts        INTEGER   NOT NULL DEFAULT 0,
            created_at      TIMESTAMP NOT NULL,
            next_attempt_at TIMESTAMP,
            delivered_at    TIMESTAMP,
            last_error      VARCHAR
        );
        CREATE TABLE notify_deliveries (
            msg_id   BIGINT    NOT NULL,
            attempt  INTEGER   NOT NULL,
            tried_at TIMESTAMP NOT NULL,
            ok       BOOLEAN   NOT NULL,
            detail   VARCHAR
        );
        CREATE SEQUENCE notify_run_seq;
        CREATE TABLE notify_runs (
            run_id    BIGINT    NOT NULL DEFAULT nextval('notify_run_seq'),
            ran_at    TIMESTAMP NOT NULL,
            data_at   TIMESTAMP,
            facts     INTEGER   NOT NULL,
            new_facts INTEGER   NOT NULL,
            enqueued  INTEGER   NOT NULL,
            held      INTEGER   NOT NULL,
            digests   INTEGER   NOT NULL
        );
        """,
    ),
)
