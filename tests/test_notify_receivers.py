"""Delivery to real receivers on loopback: an HTTP server that checks the webhook's HMAC, an SMTP
server (aiosmtpd) that requires STARTTLS and AUTH, and syslog receivers over UDP and TCP that
parse the CEF. Receivers that are down keep messages in the outbox until they come back; hostile
strings arrive inert."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from stormwatch.analytics import DuckDBEngine
from stormwatch.events.batch import EventBatchBuilder
from stormwatch.notify import outbox, subscriptions, webhook
from stormwatch.notify.cef import parse_cef
from stormwatch.notify.config import NotifyConfig
from stormwatch.notify.dispatch import deliver_pending, notify_changes
from stormwatch.notify.model import Fact, Subscription
from stormwatch.store import Store
from stormwatch.threat import state

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller", reason="aiosmtpd (dev extra) is not installed")
aiosmtpd_smtp = pytest.importorskip("aiosmtpd.smtp")
x509 = pytest.importorskip("cryptography.x509", reason="the test certificate is made with cryptography")

NOW = datetime(2026, 3, 1, 9, 0)
T0 = datetime(2006, 8, 14, 12)
SECRET = "s3cret-for-the-test-receiver-0123456789"
HOSTILE = "Mocbot|x=1\\ cs1=forged\r\nBcc: victim@example.org\r\n\r\n\x1b[2J<script>alert(1)</script>\x00"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(store: Store) -> None:
    b = EventBatchBuilder("honeypot")
    b.add("exploit.attempt", T0, "x0", src_ip="198.51.100.1", session="s0", dst_ip="192.0.2.1", dst_port=445,
          proto="tcp", vuln="MS06-040", kind="exploit", cve="CVE-2006-3439", detector="srvsvc.path_overflow")
    store.write_events(b.take())
    state.record_change(store, state.Change(T0 + timedelta(minutes=5), 2, 1, "rules", ("raised to 2: port 139",)))


def hostile_fact() -> Fact:
    return Fact(key="campaign:cmp-bad", kind="campaign", level=3, title=f"new campaign: {HOSTILE}",
                text=f"campaign {HOSTILE}\nsecond line", occurred_at=T0, ports=(445,), vulns=("MS06-040",),
                campaigns=(HOSTILE,), sensors=("honeypot",), details={"offers": [f"http://198.51.100.7/{HOSTILE}"]})


# -- receivers ------------------------------------------------------------------------------------------

@dataclass
class Hook:
    """A webhook receiver: verifies the signature itself (not with stormwatch's code) and records."""

    port: int
    got: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    rejected: int = 0
    server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ts = self.headers["X-Stormwatch-Timestamp"]
                want = "sha256=" + hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
                fresh = abs(int(ts) - int(NOW.replace(tzinfo=UTC).timestamp())) <= 300
                if not (fresh and hmac.compare_digest(want, self.headers["X-Stormwatch-Signature"])):
                    hook.rejected += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                hook.got.append(json.loads(body))
                hook.headers.append(dict(self.headers))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook(free_port())
    yield h
    h.stop()


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (it is its own CA)."""
    import ipaddress

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stormwatch test")])
    start = datetime.now(UTC) - timedelta(days=1)
    crt = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
           .serial_number(x509.random_serial_number()).not_valid_before(start)
           .not_valid_after(start + timedelta(days=30))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                       x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                          critical=False)
           .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
           .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
           .sign(key, hashes.SHA256()))
    d = tmp_path_factory.mktemp("tls")
    (d / "cert.pem").write_bytes(crt.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return d / "cert.pem", d / "key.pem"


@dataclass
class Mailbox:
    port: int
    cert: tuple[Path, Path]
    messages: list[tuple[list[str], bytes, bool, str]] = field(default_factory=list)
    controller: Any = None

    def start(self) -> None:
        box = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                box.messages.append((list(envelope.rcpt_tos), envelope.content, session.ssl is not None,
                                     session.auth_data.login.decode() if session.auth_data else ""))
                return "250 OK"

        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
            ok = data.login == b"stormwatch" and data.password == b"pa55-w0rd"
            return aiosmtpd_smtp.AuthResult(success=ok, handled=False, auth_data=data if ok else None)

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*self.cert)
        self.controller = aiosmtpd_controller.Controller(
            Handler(), hostname="127.0.0.1", port=self.port, tls_context=ctx, require_starttls=True,
            auth_required=True, authenticator=authenticate)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def mailbox(cert: tuple[Path, Path]) -> Iterator[Mailbox]:
    m = Mailbox(free_port(), cert)
    yield m
    m.stop()


def mail_sub(mailbox: Mailbox, **kw: Any) -> Subscription:
    options = {"smtp_host": "127.0.0.1", "smtp_port": mailbox.port, "smtp_user": "stormwatch",
               "smtp_password_env": "TEST_NOTIFY_SMTP_PW", "smtp_from": "stormwatch@example.org",
               "smtp_cafile": str(mailbox.cert[0]), "timeout": 10}
    options.update(kw.pop("options", {}))
    return Subscription("email", "ops@example.org", options=options, **kw)


@pytest.fixture(autouse=True)
def smtp_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_NOTIFY_SMTP_PW", "pa55-w0rd")


# -- webhook ----------------------------------------------------------------------------------------

def test_webhook_signed_delivery_end_to_end(store: Store, hook: Hook) -> None:
    seed(store)
    hook.start()
    sub_id = subscriptions.add(store, Subscription("webhook", f"http://127.0.0.1:{hook.port}/in", secret=SECRET))
    assert notify_changes(store, DuckDBEngine(store), now=NOW).enqueued == 3
    r = deliver_pending(store, now=NOW)
    assert (r.delivered, hook.rejected) == (3, 0)
    kinds = {d["notification"]["kind"] for d in hook.got}
    assert kinds == {"level", "exploit", "campaign"}
    assert all(d["subscription"] == sub_id for d in hook.got)
    ids = {int(h["X-Stormwatch-Delivery"]) for h in hook.headers}
    assert ids == {d["delivery"] for d in hook.got}
    # stormwatch's own verify() agrees with the receiver's check, and refuses a replay later
    sent = webhook.body_bytes(hook.got[0])
    ts = str(webhook.unix_time(NOW))
    sig = webhook.sign(SECRET, int(ts), sent)
    assert webhook.verify(SECRET, sent, sig, ts, now=NOW)
    assert not webhook.verify(SECRET, sent, sig, ts, now=NOW + timedelta(minutes=6))
    assert not webhook.verify(SECRET, sent + b" ", sig, ts, now=NOW)
    assert not webhook.verify("another-secret-entirely", sent, sig, ts, now=NOW)


def test_webhook_wrong_secret_is_refused_and_retried(store: Store, hook: Hook) -> None:
    seed(store)
    hook.start()
    subscriptions.add(store, Subscription("webhook", f"http://127.0.0.1:{hook.port}/", secret="not-the-receivers-key",
                                          kinds=("level",)))
    notify_changes(store, DuckDBEngine(store), now=NOW)
    r = deliver_pending(store, now=NOW)
    assert (r.delivered, r.retrying, hook.rejected) == (0, 1, 1)
    assert "HTTP 401" in outbox.messages(store)[0].last_error  # type: ignore[operator]


def test_webhook_down_then_back(store: Store, hook: Hook) -> None:
    seed(store)
    subscriptions.add(store, Subscription("webhook", f"http://127.0.0.1:{hook.port}/", secret=SECRET))
    notify_changes(store, DuckDBEngine(store), now=NOW)
    r = deliver_pending(store, now=NOW)
    assert (r.delivered, r.retrying, r.deferred) == (0, 1, 2)
    assert outbox.counts(store) == {"pending": 3}
    hook.start()
    (due,) = {m.next_attempt_at for m in outbox.messages(store) if m.attempts}
    assert due is not None
    r = deliver_pending(store, now=due)
    assert r.delivered == 3 and len(hook.got) == 3 and outbox.counts(store) == {"delivered": 3}


def test_webhook_body_carries_hostile_text_as_json_data(store: Store, hook: Hook) -> None:
    hook.start()
    sub_id = subscriptions.add(store, Subscription("webhook", f"http://127.0.0.1:{hook.port}/", secret=SECRET))
    outbox.enqueue(store, sub_id, [(hostile_fact(), "pending")], NOW)
    assert deliver_pending(store, now=NOW).delivered == 1
    (doc,) = hook.got
    assert doc["notification"]["campaigns"] == [HOSTILE]  # exactly the data, as JSON
    assert doc["notification"]["details"]["offers"] == [f"http://198.51.100.7/{HOSTILE}"]


# -- e-mail ------------------------------------------------------------------------------------------

def test_email_over_starttls_with_auth(store: Store, mailbox: Mailbox) -> None:
    seed(store)
    mailbox.start()
    subscriptions.add(store, mail_sub(mailbox, kinds=("level",)))
    notify_changes(store, DuckDBEngine(store), now=NOW)
    r = deliver_pending(store, now=NOW)
    assert r.delivered == 1, r.errors
    ((rcpts, raw, tls, login),) = mailbox.messages
    assert rcpts == ["ops@example.org"] and tls and login == "stormwatch"
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == "[stormwatch] level 2 (elevated): threat level raised to 2 (elevated, yellow) from 1 " \
                             "(normal)"
    assert msg["From"] == "stormwatch@example.org" and msg["X-Stormwatch-Delivery"]
    body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "raised to 2: port 139" in body and "key: level:2006-08-14T12:05:00:1>2" in body


def test_email_wrong_password_fails_and_never_shows_it(store: Store, mailbox: Mailbox,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    seed(store)
    mailbox.start()
    monkeypatch.setenv("TEST_NOTIFY_SMTP_PW", "wrong-horse-battery")
    subscriptions.add(store, mail_sub(mailbox, kinds=("level",)))
    notify_changes(store, DuckDBEngine(store), now=NOW)
    r = deliver_pending(store, now=NOW)
    assert (r.delivered, r.retrying) == (0, 1) and mailbox.messages == []
    assert "SMTPAuthenticationError" in r.errors[0]
    assert "wrong-horse-battery" not in json.dumps(r.as_dict())
    assert all("wrong-horse-battery" not in str(m.as_dict()) for m in outbox.messages(store))


def test_email_refuses_an_untrusted_certificate(store: Store, mailbox: Mailbox) -> None:
    seed(store)
    mailbox.start()
    sub = mail_sub(mailbox, kinds=("level",))
    # without the test CA the self-signed certificate is not trusted: nothing is sent
    subscriptions.add(store, Subscription("email", sub.target, kinds=("level",),
                                          options={k: v for k, v in sub.options.items() if k != "smtp_cafile"}))
    notify_changes(store, DuckDBEngine(store), now=NOW)
    r = deliver_pending(store, now=NOW)
    assert r.delivered == 0 and "CERTIFICATE_VERIFY_FAILED" in r.errors[0] and mailbox.messages == []


def test_email_down_then_back(store: Store, mailbox: Mailbox) -> None:
    seed(store)
    subscriptions.add(store, mail_sub(mailbox, kinds=("level",)))
    notify_changes(store, DuckDBEngine(store), now=NOW)
    assert deliver_pending(store, now=NOW).retrying == 1
    mailbox.start()
    (msg,) = outbox.messages(store)
    assert msg.status == "pending" and msg.next_attempt_at is not None
    assert deliver_pending(store, now=msg.next_attempt_at).delivered == 1
    assert len(mailbox.messages) == 1


def test_email_with_hostile_text_injects_no_header(store: Store, mailbox: Mailbox) -> None:
    mailbox.start()
    sub_id = subscriptions.add(store, mail_sub(mailbox))
    outbox.enqueue(store, sub_id, [(hostile_fact(), "pending")], NOW)
    assert deliver_pending(store, now=NOW).delivered == 1
    ((rcpts, raw, _, _),) = mailbox.messages
    assert rcpts == ["ops@example.org"]  # no Bcc smuggled in
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Bcc"] is None and len(msg.get_all("Subject") or []) == 1
    assert "\\r\\nBcc: victim@example.org" in msg["Subject"]  # shown escaped, as data
    body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "\x1b" not in body and "\x00" not in body and "\\x1b[2J" in body
    # the line break inside the campaign text makes a body line, never a header
    assert "Bcc: victim@example.org" in body


# -- syslog ------------------------------------------------------------------------------------------

def parse_5424(frame: bytes) -> tuple[list[str], list[str], dict[str, str]]:
    text = frame.decode("utf-8")
    head = text.split(" ", 7)
    fields, ext = parse_cef(head[7])
    return head[:7], fields, ext


def test_syslog_udp_cef(store: Store) -> None:
    seed(store)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(10)
        port = rx.getsockname()[1]
        subscriptions.add(store, Subscription("syslog", f"udp://127.0.0.1:{port}", kinds=("level",),
                                              options={"hostname": "stormwatch-1", "facility": "local4"}))
        notify_changes(store, DuckDBEngine(store), now=NOW)
        assert deliver_pending(store, now=NOW).delivered == 1
        frame, _ = rx.recvfrom(65535)
    head, fields, ext = parse_5424(frame)
    assert head == ["<164>1", "2026-03-01T09:00:00.000000Z", "stormwatch-1", "stormwatch", "-", "level", "-"]
    assert fields[:5] == ["0", "stormwatch", "stormwatch", fields[3], "level"] and fields[6] == "5"
    assert ext["cs1"] == "level:2006-08-14T12:05:00:1>2" and ext["cn1"] == "2" and ext["dpt"] == "139"
    assert ext["rt"] == str(int(datetime(2006, 8, 14, 12, 5, tzinfo=UTC).timestamp() * 1000))


class TcpSyslog:
    def __init__(self, port: int) -> None:
        self.port, self.frames = port, []  # type: ignore[var-annotated]
        self.sock: socket.socket | None = None

    def start(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", self.port))
        self.sock.settimeout(10)

    def read(self, n: int) -> list[bytes]:
        """Accept connections until ``n`` octet-counted frames have arrived."""
        assert self.sock is not None
        out: list[bytes] = []
        while len(out) < n:
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(10)
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
            while data:
                size, _, rest = data.partition(b" ")
                out.append(rest[:int(size)])
                data = rest[int(size):]
        return out

    def stop(self) -> None:
        if self.sock is not None:
            self.sock.close()


def test_syslog_tcp_down_then_back_and_hostile_text(store: Store) -> None:
    rx = TcpSyslog(free_port())
    sub_id = subscriptions.add(store, Subscription("syslog", f"tcp://127.0.0.1:{rx.port}"))
    outbox.enqueue(store, sub_id, [(hostile_fact(), "pending")], NOW)
    r = deliver_pending(store, now=NOW)
    assert (r.delivered, r.retrying) == (0, 1)
    assert "refused" in (outbox.messages(store)[0].last_error or "").lower()
    rx.start()
    try:
        due = outbox.messages(store)[0].next_attempt_at
        assert due is not None
        result: dict[str, Any] = {}
        reader = threading.Thread(target=lambda: result.update(frames=rx.read(1)))
        reader.start()
        assert deliver_pending(store, now=due).delivered == 1
        reader.join(10)
    finally:
        rx.stop()
    (frame,) = result["frames"]
    assert b"\n" not in frame and b"\r" not in frame and b"\x1b" not in frame and b"\x00" not in frame
    head, fields, ext = parse_5424(frame)
    assert head[0] == "<131>1"  # local0, level 3 -> syslog error
    assert fields[5].startswith("new campaign: Mocbot|x=1\\ cs1=forged Bcc: victim@example.org  ")
    assert fields[6] == "8"
    # extensions: exactly ours, the forged cs1 stayed inside the value
    inert = HOSTILE.replace("\x1b", "\ufffd").replace("\x00", "\ufffd").replace("\r\n", "\n")
    assert ext["cs1"] == "campaign:cmp-bad" and ext["cs3"] == inert
    assert set(ext) == {"rt", "cat", "msg", "externalId", "cn1Label", "cn1", "cs1Label", "cs1", "cs2Label", "cs2",
                        "cs3Label", "cs3", "cs4Label", "cs4", "dpt"}
    assert ext["msg"] == f"campaign {inert}\nsecond line"


def test_smtp_settings_from_the_config_file(store: Store, mailbox: Mailbox) -> None:
    # the notify config file's settings are used when the subscription has none
    mailbox.start()
    sub_id = subscriptions.add(store, Subscription("email", "ops@example.org", kinds=("campaign",)))
    outbox.enqueue(store, sub_id, [(hostile_fact(), "pending")], NOW)
    config = NotifyConfig({"host": "127.0.0.1", "port": mailbox.port, "user": "stormwatch",
                           "password_env": "TEST_NOTIFY_SMTP_PW", "cafile": str(mailbox.cert[0])})
    assert deliver_pending(store, now=NOW, config=config).delivered == 1
    assert mailbox.messages[0][3] == "stormwatch"


def test_email_refuses_a_server_without_starttls(store: Store) -> None:
    port = free_port()
    got: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            got.append(envelope.content)
            return "250 OK"

    plain = aiosmtpd_controller.Controller(Handler(), hostname="127.0.0.1", port=port)
    plain.start()
    try:
        subscriptions.add(store, Subscription("email", "ops@example.org", kinds=("campaign",),
                                              options={"smtp_host": "127.0.0.1", "smtp_port": port}))
        no_tls = subscriptions.add(store, Subscription(
            "email", "ops@example.org", kinds=("campaign",),
            options={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_tls": "none", "smtp_user": "stormwatch",
                     "smtp_password_env": "TEST_NOTIFY_SMTP_PW"}))
        for sub in subscriptions.list_all(store):
            assert sub.id is not None
            outbox.enqueue(store, sub.id, [(hostile_fact(), "pending")], NOW)
        r = deliver_pending(store, now=NOW)
    finally:
        plain.stop()
    assert r.delivered == 0 and got == []
    errors = " ".join(r.errors)
    assert "does not offer STARTTLS" in errors
    assert "refusing SMTP authentication without TLS" in errors and no_tls
