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
)
