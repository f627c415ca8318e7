"""``stormwatch notify``: subscribe, list, run, outbox, remove, against a real webhook receiver."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from stormwatch.cli.notify_cmd import notify
from stormwatch.events.batch import EventBatchBuilder
from stormwatch.notify import webhook
from stormwatch.store import Store
from stormwatch.threat import state

SECRET = "cli-test-secret-0123456789abcdef"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    from datetime import datetime

    path = tmp_path / "cli.duckdb"
    t0 = datetime(2006, 8, 14, 12)
    with Store(path) as st:
        b = EventBatchBuilder("honeypot")
        b.add("exploit.attempt", t0, "x0", src_ip="198.51.100.1", session="s0", dst_ip="192.0.2.1", dst_port=445,
              proto="tcp", vuln="MS06-040", kind="exploit", cve="CVE-2006-3439", detector="srvsvc.path_overflow")
        st.write_events(b.take())
        state.record_change(st, state.Change(t0 + timedelta(minutes=5), 2, 1, "rules", ("raised to 2: port 139",)))
    return path


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            # the receiver checks against its own clock: the CLI signs with the wall clock
            from datetime import UTC, datetime

            ok = webhook.verify(SECRET, body, self.headers["X-Stormwatch-Signature"],
                                self.headers["X-Stormwatch-Timestamp"], now=datetime.now(UTC).replace(tzinfo=None))
            if ok:
                got.append(json.loads(body))
            self.send_response(200 if ok else 401)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(notify, list(args), env=env, catch_exceptions=False)


def test_subscribe_list_run_outbox_remove(db: Path, receiver: tuple[str, list[dict[str, Any]]]) -> None:
    url, got = receiver
    r = cli("subscribe", "--channel", "webhook", "--target", url, "--min-level", "yellow", "--port", "139",
            "--db", str(db), env={"STORMWATCH_WEBHOOK_SECRET": SECRET})
    assert r.exit_code == 0, r.output
    sub_id = r.output.strip()
    assert sub_id.startswith("sub-") and SECRET not in r.output
    r = cli("subscribe", "--channel", "email", "--target", "ops@example.org", "--smtp-host", "127.0.0.1",
            "--smtp-port", str(closed_port()), "--smtp-user", "stormwatch", "--smtp-password-env", "SW_SMTP_PW",
            "--kind", "campaign", "--db", str(db),
            env={"SW_SMTP_PW": "do-not-print-me"})
    assert r.exit_code == 0, r.output
    mail_id = r.output.strip()

    r = cli("list", "--format", "json", "--db", str(db))
    subs = {s["id"]: s for s in json.loads(r.output)}
    assert subs[sub_id]["secret"] == "(set)" and subs[sub_id]["ports"] == [139] and subs[sub_id]["min_level"] == 2
    assert subs[mail_id]["options"]["smtp_password_env"] == "SW_SMTP_PW"
    assert SECRET not in r.output and "do-not-print-me" not in r.output

    r = cli("run", "--once", "--db", str(db), "--config", str(db.parent / "none.toml"))
    assert r.exit_code == 1 and "does not exist" in r.output  # an explicit config file must exist
    r = cli("run", "--once", "--format", "json", "--db", str(db), env={"STORMWATCH_NOTIFY_CONFIG": "/nonexistent"})
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    # the level change names port 139, the exploit and the campaign reach it by the KB's ports of
    # MS06-040; the campaign also goes to e-mail
    assert out["dispatch"]["enqueued"] == 4 and out["delivery"]["delivered"] == 3
    assert out["delivery"]["retrying"] == 1  # the e-mail server is not there: it waits in the outbox
    assert sorted(d["notification"]["kind"] for d in got) == ["campaign", "exploit", "level"]

    r = cli("outbox", "--format", "json", "--db", str(db))
    rows = json.loads(r.output)
    assert sorted(m["status"] for m in rows) == ["delivered", "delivered", "delivered", "pending"]
    r = cli("outbox", "--db", str(db))
    assert "totals: delivered=3, pending=1" in r.output

    r = cli("remove", mail_id, "--db", str(db))
    assert r.exit_code == 0 and mail_id in r.output
    r = cli("outbox", "--status", "cancelled", "--format", "json", "--db", str(db))
    assert len(json.loads(r.output)) == 1
    r = cli("remove", mail_id, "--db", str(db))
    assert r.exit_code == 1 and "no subscription" in r.output
    r = cli("outbox", "--retry", "all", "--db", str(db))
    assert r.exit_code == 0 and "0 message(s) queued again" in r.output


def test_subscribe_refuses_options_of_another_channel(db: Path) -> None:
    r = cli("subscribe", "--channel", "email", "--target", "ops@example.org", "--facility", "local3", "--db", str(db))
    assert r.exit_code == 2 and "--facility does not apply to the email channel" in r.output
    r = cli("subscribe", "--channel", "syslog", "--target", "10.0.0.1:514", "--db", str(db))
    assert r.exit_code == 1 and "udp://HOST:PORT" in r.output
    r = cli("subscribe", "--channel", "webhook", "--target", "http://127.0.0.1:9/", "--min-level", "purple",
            "--db", str(db))
    assert r.exit_code == 2 and "not a threat level" in r.output


def test_generated_secret_is_shown_once(db: Path) -> None:
    r = CliRunner().invoke(notify, ["subscribe", "--channel", "webhook", "--target", "http://127.0.0.1:9/",
                                    "--db", str(db)], env={"STORMWATCH_WEBHOOK_SECRET": None})
    assert r.exit_code == 0
    secret = r.stderr.split(": ")[-1].strip()
    assert len(secret) == 64
    r = cli("list", "--db", str(db))
    assert secret not in r.output and "(set)" in r.output
