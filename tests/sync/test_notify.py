"""Notifications: reps.yaml ``notify`` (one-line errors), the settings, what a message says,
and the outbox's exactly-once and retry rules (``sync.notify``, no CRM)."""

from __future__ import annotations

import json
import re
import shutil
import socket
import ssl
import threading
import time
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller

from crm_handoff.errors import ConfigError
from crm_handoff.records import Person
from mappings.loader import default_dir, load_mappings
from mappings.notify import Notify
from sync.brief import Brief
from sync.cli import main
from sync.context import CycleContext, PlannedHandoff
from sync.engine import Engine
from sync.notify import (
    Links,
    SendFailed,
    Smtp,
    breach_notices,
    deliver,
    email_message,
    handoff_notices,
    message_id,
    queue_handoffs,
    slack_text,
)
from sync.profiles import Profile
from sync.settings import Settings, load_settings
from sync.state import Notice, OutcomeRow, StateStore

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(default_dir(), target)
    return target


def write_reps(cfg: Path, top: str = "", dana: str = "") -> Path:
    """The shipped reps.yaml with ``top`` appended and ``dana`` added to the first rep's keys."""
    path = cfg / "reps.yaml"
    text = path.read_text()
    if dana:
        text = text.replace("timezone: America/Chicago}", f"timezone: America/Chicago, {dana}}}", 1)
    path.write_text(text + top)
    return path


# --- reps.yaml notify ----------------------------------------------------------------


def test_off_by_default():
    reps = load_mappings().reps
    assert all(reps.notify_for(r).targets(r.email) == [] for r in reps.reps)


def test_top_level_applies_to_every_rep_and_a_rep_block_replaces_it(cfg):
    write_reps(
        cfg,
        "notify: {slack: SLACK_WEBHOOK_SALES, email: true}\n",
        dana="notify: {email: Dana.Desk@Northwind.example}",
    )
    reps = load_mappings(cfg).reps
    dana, lee = reps.reps[0], reps.reps[1]
    assert reps.notify_for(lee).targets(lee.email) == [("slack", "SLACK_WEBHOOK_SALES"), ("email", lee.email)]
    assert reps.notify_for(dana).targets(dana.email) == [("email", "dana.desk@northwind.example")]


def test_an_empty_rep_block_tells_that_rep_nothing(cfg):
    write_reps(cfg, "notify: {email: true}\n", dana="notify: {}")
    reps = load_mappings(cfg).reps
    assert reps.notify_for(reps.reps[0]).targets(reps.reps[0].email) == []


BAD = [
    ("slack: https://hooks.slack.com/services/T1/B2/abc", r"notify\.slack: a webhook URL is a secret"),
    ("slack: 'SLACK WEBHOOK'", r"notify\.slack: 'SLACK WEBHOOK' is not an environment variable name"),
    ("slack: 3", r"notify\.slack: expected the name of the environment variable"),
    (
        "email: not-an-address",
        r"notify\.email: expected true \(the rep's email\), false or one email address",
    ),
    ("sms: '+4912345'", r"notify\.sms: unknown key"),
]


@pytest.mark.parametrize(("block", "expected"), BAD)
def test_each_mistake_is_one_line_with_file_and_line(cfg, capsys, block, expected):
    path = write_reps(cfg, f"notify:\n  {block}\n")
    line = len(path.read_text().splitlines())
    assert main(["validate", "--offline", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"error: {path}:{line}: "), err
    assert re.search(expected, err), err
    assert "abc" not in err  # a pasted webhook URL is not echoed


def test_a_rep_block_mistake_names_the_rep(cfg):
    write_reps(cfg, dana="notify: {email: maybe}")
    with pytest.raises(ConfigError, match=r"reps\.yaml:\d+: reps\[0\]\.notify\.email: expected true"):
        load_mappings(cfg)


def test_email_true_false_and_an_address():
    assert Notify(email=True).email_to("a@x.example") == "a@x.example"
    assert Notify(email=False).email_to("a@x.example") is None
    assert Notify(email="Desk@X.example").email_to("a@x.example") == "desk@x.example"
    assert Notify(slack=False).targets("a@x.example") == []  # type: ignore[arg-type]


# --- settings --------------------------------------------------------------------------


def _problem(monkeypatch, **env: str) -> str:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as exc:
        load_settings()
    lines = str(exc.value).splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_smtp_settings_are_checked_one_line_each(monkeypatch, tmp_path):
    assert _problem(monkeypatch, HANDOFF_SMTP_HOST="mail.example.com") == (
        "setting HANDOFF_SMTP_FROM: required with HANDOFF_SMTP_HOST: the address notification emails come from"
    )
    monkeypatch.setenv("HANDOFF_SMTP_FROM", "handoff@example.com")
    assert "expected a host name or address only" in _problem(monkeypatch, HANDOFF_SMTP_HOST="mail:25")
    monkeypatch.setenv("HANDOFF_SMTP_HOST", "mail.example.com")
    line = _problem(monkeypatch, HANDOFF_SMTP_PASSWORD="s3cret-pass")
    assert "set HANDOFF_SMTP_USER too" in line and "s3cret-pass" not in line
    monkeypatch.setenv("HANDOFF_SMTP_USER", "u")
    assert "HANDOFF_SMTP_SECURITY" in _problem(monkeypatch, HANDOFF_SMTP_SECURITY="ssl3")
    monkeypatch.setenv("HANDOFF_SMTP_SECURITY", "TLS")
    assert load_settings().smtp_port == 465
    monkeypatch.setenv("HANDOFF_SMTP_PORT", "2525")
    assert load_settings().smtp_port == 2525


def test_the_smtp_password_may_come_from_a_file(monkeypatch, tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("from-a-file\n")
    for k, v in {
        "HANDOFF_SMTP_HOST": "m.example",
        "HANDOFF_SMTP_FROM": "h@m.example",
        "HANDOFF_SMTP_USER": "u",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("HANDOFF_SMTP_PASSWORD_FILE", str(secret))
    s = load_settings()
    assert s.handoff_smtp_password is not None and s.handoff_smtp_password.get_secret_value() == "from-a-file"
    assert "from-a-file" not in repr(s)


# --- links and messages (pure) -----------------------------------------------------------


def test_record_links():
    links = Links("https://app-eu1.hubspot.com", 4242, "https://acme.my.salesforce.com")
    assert links.hubspot("901") == "https://app-eu1.hubspot.com/contacts/4242/record/0-1/901"
    assert links.salesforce("lead", "00Q1") == "https://acme.my.salesforce.com/lightning/r/Lead/00Q1/view"
    assert (
        links.salesforce("contact", "0031") == "https://acme.my.salesforce.com/lightning/r/Contact/0031/view"
    )
    assert links.record("salesforce", "901", ("lead", "00Q1")).endswith("/Lead/00Q1/view")  # type: ignore[union-attr]
    assert links.record("hubspot", "901", ("lead", "00Q1")).endswith("/0-1/901")  # type: ignore[union-attr]
    assert links.record("salesforce", "901", None).endswith("/0-1/901")  # type: ignore[union-attr]  # the other CRM
    assert Links().hubspot("901") is None and Links().salesforce("lead", "1") is None  # no portal id, no host


def _handoff(key: str = "hs:901#1", rep_index: int = 0) -> PlannedHandoff:
    reps = load_mappings().reps.reps
    lee = Person(
        crm="hubspot", id="901", object_type="contact", email="lee@acme.example", values={}, modified_at=NOW
    )
    prof = Profile(key="hs:901", hubspot=lee)
    brief = Brief("Follow up: Lee <Buyer> & co", "Lee asked for a demo.\nUse: ROI guide", date(2026, 3, 4))
    return PlannedHandoff(key, 1, prof, reps[rep_index], "best fit", None, brief, ("hubspot",))  # type: ignore[arg-type]


def test_a_handoff_message_carries_the_brief_the_due_date_and_the_link():
    reps = load_mappings().reps
    h = _handoff()
    [n] = handoff_notices(reps, h, Links(portal_id=7), [("email", h.rep.email)])
    assert (n.key, n.kind, n.channel, n.target) == ("hs:901#1", "handoff", "email", h.rep.email)
    assert n.subject == "Follow up: Lee <Buyer> & co"
    assert n.body == "Lee asked for a demo.\nUse: ROI guide\n\nFirst touch due: 2026-03-04"
    assert n.link == "https://app.hubspot.com/contacts/7/record/0-1/901"

    mail = email_message(n, "handoff@northwind.example")
    assert mail["Subject"] == n.subject and mail["To"] == h.rep.email
    assert mail["Message-ID"] == message_id(n, "handoff@northwind.example")
    assert mail["Message-ID"].endswith(".handoff@northwind.example>")
    text = mail.get_content()
    assert "Lee asked for a demo." in text and "Open the record: https://app.hubspot.com/contacts/7" in text

    slack = slack_text(n)
    assert slack.startswith("*Follow up: Lee &lt;Buyer&gt; &amp; co*\n")  # mrkdwn control characters escaped
    assert slack.endswith("<https://app.hubspot.com/contacts/7/record/0-1/901|Open the record>")


def test_the_message_id_is_the_same_for_every_try_and_differs_by_kind():
    n = Notice("k#1", "handoff", "email", "a@x.example", "a@x.example", "s", "b")
    again = Notice("k#1", "handoff", "email", "a@x.example", "a@x.example", "s", "b", attempts=3)
    breach = Notice("k#1", "breach", "email", "a@x.example", "a@x.example", "s", "b")
    assert (
        message_id(n, "h@x.example") == message_id(again, "h@x.example") != message_id(breach, "h@x.example")
    )


def test_a_breach_message_says_when_the_first_touch_was_due():
    reps = load_mappings(None).reps
    rep = reps.reps[0]
    row = OutcomeRow("hs:901#1", "hs:901", rep.email, NOW, NOW + timedelta(hours=16), "open", "open")
    task = {"subject": "Follow up: Lee", "body": "Lee asked for a demo."}
    with_targets = reps.model_copy(update={"notify": Notify(email=True)})
    [n] = breach_notices(with_targets, rep, row, "no first touch within 16 business hours", task, "https://l")
    assert n.kind == "breach" and n.subject == "SLA missed: Follow up: Lee"
    assert n.body.startswith("The first touch on this lead was due 2026-03-03 01:00 UTC and none was seen")
    assert "Lee asked for a demo." in n.body and n.link == "https://l"
    assert breach_notices(reps, rep, row, "r", task, None) == []  # notify off: no message


# --- the outbox: exactly once, retries, the bound ---------------------------------------------


class _Hook:
    """A loopback webhook answering ``status``."""

    def __init__(self) -> None:
        self.status, self.texts, self.delay = 200, [], 0.0
        hook = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                time.sleep(hook.delay)
                if hook.status == 200 and not hook.delay:
                    hook.texts.append(data["text"])
                try:
                    self.send_response(hook.status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the client gave up waiting (the hanging-receiver test)
                    pass

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def engine(monkeypatch, tmp_path):
    cfg = tmp_path / "mappings"
    shutil.copytree(default_dir(), cfg)
    write_reps(cfg, "notify: {slack: TEST_HOOK}\n")
    state = StateStore(f"sqlite:///{tmp_path / 's.db'}")
    state.create_schema()
    hook = _Hook()
    monkeypatch.setenv("TEST_HOOK", hook.url)
    monkeypatch.setenv("HANDOFF_NOTIFY_MAX_ATTEMPTS", "3")
    eng = Engine(load_mappings(cfg), state, {})
    eng.hook = hook  # type: ignore[attr-defined]
    yield eng
    hook.server.shutdown()
    state.close()


def _ctx(at: datetime = NOW) -> CycleContext:
    return CycleContext(now=at, dry_run=False, run_id=1)


def test_only_done_handoffs_are_queued_and_once(engine):
    h, other = _handoff("hs:901#1"), _handoff("hs:902#1")
    queue_handoffs(engine, _ctx(), [h, other], done={"hs:901#1"})
    queue_handoffs(engine, _ctx(), [h], done={"hs:901#1"})  # a rerun recording it again
    assert [(n.key, n.channel, n.target) for n in engine.state.notices()] == [
        ("hs:901#1", "slack", "TEST_HOOK")
    ]
    queue_handoffs(engine, CycleContext(now=NOW, dry_run=True), [other], done={"hs:902#1"})
    assert len(engine.state.notices()) == 1  # a dry run records nothing


def test_sent_once_then_never_again(engine):
    queue_handoffs(engine, _ctx(), [_handoff()], done={"hs:901#1"})
    assert deliver(engine, _ctx()).sent == 1
    assert deliver(engine, _ctx()).sent == 0
    assert len(engine.hook.texts) == 1 and engine.state.notices()[0].status == "sent"


def test_a_failing_receiver_is_tried_each_cycle_up_to_the_bound_then_a_record_error(engine):
    queue_handoffs(engine, _ctx(), [_handoff()], done={"hs:901#1"})
    engine.hook.status = 503
    for attempt in (1, 2):
        ctx = _ctx()
        got = deliver(engine, ctx)
        assert (got.sent, got.retry, got.failed) == (0, 1, 0) and ctx.errors == []
        assert engine.state.notices()[0].attempts == attempt
    ctx = _ctx()
    assert deliver(engine, ctx).failed == 1
    [error] = ctx.errors
    assert error["crm"] == "notify" and error["record"] == "slack handoff hs:901#1"
    assert error["reason"] == "not sent after 3 tries: Slack (TEST_HOOK) answered 503 ok"
    engine.hook.status = 200
    assert deliver(engine, _ctx()).sent == 0 and engine.hook.texts == []  # given up


def test_a_refused_webhook_is_given_up_at_once(engine):
    queue_handoffs(engine, _ctx(), [_handoff()], done={"hs:901#1"})
    engine.hook.status = 404  # Slack: no_service (the webhook was removed)
    ctx = _ctx()
    assert deliver(engine, ctx).failed == 1
    assert ctx.errors[0]["reason"] == "not sent: Slack (TEST_HOOK) answered 404 ok"


def test_a_missing_webhook_variable_is_a_record_error_naming_it(engine, monkeypatch):
    monkeypatch.delenv("TEST_HOOK")
    queue_handoffs(engine, _ctx(), [_handoff()], done={"hs:901#1"})
    ctx = _ctx()
    deliver(engine, ctx)
    assert (
        ctx.errors[0]["reason"]
        == "not sent: the environment variable TEST_HOOK (reps.yaml notify.slack) is not set"
    )


def test_an_unreachable_channel_is_tried_once_a_cycle_not_once_a_message(engine, monkeypatch):
    engine.hook.server.shutdown()
    engine.hook.server.server_close()  # nothing listens there now: connection refused
    queue_handoffs(
        engine, _ctx(), [_handoff(f"hs:90{i}#1") for i in range(3)], done={f"hs:90{i}#1" for i in range(3)}
    )
    got = deliver(engine, _ctx())
    assert got.retry == 3 and {n.attempts for n in engine.state.notices()} == {1}
    assert {n.error for n in engine.state.notices()} == {"cannot reach Slack (TEST_HOOK): ConnectionError"}
    assert engine.hook.url not in str([n.__dict__ for n in engine.state.notices()])


def test_email_without_an_smtp_server_set_is_a_record_error(engine, tmp_path):
    n = Notice("k#1", "handoff", "email", "a@x.example", "a@x.example", "s", "b")
    engine.state.queue_notices([n], NOW)
    ctx = _ctx()
    deliver(engine, ctx)
    assert (
        ctx.errors[0]["reason"]
        == "not sent: email notifications need HANDOFF_SMTP_HOST and HANDOFF_SMTP_FROM"
    )


def test_a_receiver_that_hangs_holds_the_cycle_up_for_one_timeout_not_one_per_message(engine, monkeypatch):
    monkeypatch.setenv("HANDOFF_NOTIFY_TIMEOUT_SECONDS", "0.5")
    engine.hook.delay = 1.5
    keys = {f"hs:90{i}#1" for i in range(6)}  # one timeout each would be 3 s
    queue_handoffs(engine, _ctx(), [_handoff(k) for k in sorted(keys)], done=keys)
    started = time.monotonic()
    got = deliver(engine, _ctx())
    took = time.monotonic() - started
    assert got.retry == 6 and got.sent == 0
    assert took < 2.0, f"deliver took {took:.1f} s"
    assert {n.error for n in engine.state.notices()} == {"Slack (TEST_HOOK) did not answer within 0.5 s"}


# --- SMTP security modes against a real server on loopback ------------------------------------


class _Box:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    return server, bundle


@pytest.mark.parametrize("mode", ["tls", "none", "starttls-missing"])
def test_smtp_security_modes(tls, mode):
    server_ctx, bundle = tls
    box, port = _Box(), _free_port()
    kwargs: dict[str, Any] = {"ssl_context": server_ctx} if mode == "tls" else {}
    controller = Controller(box, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    security = "starttls" if mode == "starttls-missing" else mode
    s = Settings(  # type: ignore[call-arg]
        handoff_smtp_host="127.0.0.1",
        handoff_smtp_port=port,
        handoff_smtp_security=security,
        handoff_smtp_ca_bundle=bundle,
        handoff_smtp_from="handoff@northwind.example",
    )
    smtp = Smtp(s)
    n = Notice("k#1", "handoff", "email", "a@x.example", "a@x.example", "Follow up", "The brief")
    try:
        if mode == "starttls-missing":  # a server without STARTTLS: never sent in the clear
            with pytest.raises(SendFailed, match="SMTPNotSupportedError") as exc:
                smtp.send(n)
            assert exc.value.channel and not exc.value.permanent
            assert box.messages == []
        else:
            smtp.send(n)
            assert len(box.messages) == 1 and b"The brief" in box.messages[0]
    finally:
        smtp.close()
        controller.stop()
