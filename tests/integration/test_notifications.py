"""Notifications through the real CLI, both sandboxes and real receivers on loopback: an
SMTP server (aiosmtpd, STARTTLS with a test CA and a login) and a Slack-like incoming
webhook (http.server). Each message is sent exactly once; a receiver that fails gets it on
a later cycle; secrets never show."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from sync.state import StateStore
from tests.integration.conftest import (
    Crms,
    add_ready_contact,
    add_rep_users,
    mapping_dir,
    rep,
    run_cli,
    sync_json,
)
from tests.integration.test_closed_loop import ready_lead

A = "ana@northwind.example"
B = "ben@northwind.example"
HOOK_SECRET = "/services/T0001/B0002/hook-s3cret-XYZ"
SMTP_PASSWORD = "smtp-pw-s3cret-42"
PORTAL = 12345  # the HubSpot sandbox's portal id


# --- the receivers -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Mailbox:
    """What the SMTP server accepted; ``refuse`` > 0 answers 451 to that many messages."""

    messages: list[EmailMessage] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    refuse: int = 0
    on_message: Callable[[], None] | None = None  # called once the message is taken

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse > 0:
            self.refuse -= 1
            return "451 4.3.0 try again later"
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        if self.on_message is not None:
            self.on_message()
        return "250 OK"

    def auth(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        if isinstance(data, LoginPassword):
            user, password = data.login.decode(), data.password.decode()
            self.logins.append((user, password))
            ok = user == "handoff" and password == SMTP_PASSWORD
            return AuthResult(success=True) if ok else AuthResult(success=False, handled=False)  # 535
        return AuthResult(success=False, handled=False)


class SmtpServer:
    """aiosmtpd on loopback requiring STARTTLS (a trustme certificate) and a login."""

    def __init__(self, tmp: Path) -> None:
        ca = trustme.CA()
        self.ca_file = tmp / "smtp-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        self.server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(self.server_ctx)
        self.box = Mailbox()
        self.port = _free_port()
        self.controller: Controller | None = None

    def start(self) -> None:
        """Listen (again: a controller starts once, so each start is a new one on the port)."""
        self.controller = Controller(
            self.box,
            hostname="127.0.0.1",
            port=self.port,
            tls_context=self.server_ctx,
            require_starttls=True,
            authenticator=self.box.auth,
            auth_required=True,
        )
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


class Hooks:
    """A Slack-like incoming-webhook receiver; ``status`` is what it answers (200: 'ok')."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.status = 200
        self.on_post: Callable[[], None] | None = None  # called once a post is taken
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if hooks.status == 200:
                    hooks.posts.append({"path": self.path, "json": json.loads(body)})
                    if hooks.on_post is not None:
                        hooks.on_post()
                answer = b"ok" if hooks.status == 200 else b"internal_error"
                self.send_response(hooks.status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{HOOK_SECRET}"

    def texts(self) -> list[str]:
        return [p["json"]["text"] for p in self.posts]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers(crms: Crms, tmp_path: Path) -> Iterator[tuple[SmtpServer, Hooks]]:
    smtp, hooks = SmtpServer(tmp_path), Hooks()
    smtp.start()
    crms.env.update(
        {
            "HANDOFF_SMTP_HOST": "127.0.0.1",
            "HANDOFF_SMTP_PORT": str(smtp.port),
            "HANDOFF_SMTP_SECURITY": "starttls",
            "HANDOFF_SMTP_CA_BUNDLE": str(smtp.ca_file),
            "HANDOFF_SMTP_USER": "handoff",
            "HANDOFF_SMTP_PASSWORD": SMTP_PASSWORD,
            "HANDOFF_SMTP_FROM": "handoff@northwind.example",
            "HANDOFF_NOTIFY_TIMEOUT_SECONDS": "5",
            "HUBSPOT_PORTAL_ID": str(PORTAL),
            "SLACK_WEBHOOK_SALES": hooks.url,
            "HANDOFF_LOG_FORMAT": "json",
            "HANDOFF_LOG_LEVEL": "debug",
        }
    )
    yield smtp, hooks
    smtp.stop()
    hooks.close()


NOTIFY = {"slack": "SLACK_WEBHOOK_SALES", "email": True}


def _cfg(crms: Crms, tmp_path: Path, works_in: str = "hubspot", **handoff: Any) -> Path:
    add_rep_users(crms, A)
    reps = [rep(A, works_in, 120, 20, timezone="UTC", notify=NOTIFY)]
    return mapping_dir(tmp_path, reps=reps, handoff=handoff) if handoff else mapping_dir(tmp_path, reps=reps)


def _notices(crms: Crms) -> list[Any]:
    state = StateStore(crms.env["HANDOFF_STATE_URL"])
    try:
        return state.notices()
    finally:
        state.close()


# --- the tests -------------------------------------------------------------------------


def test_a_handoff_sends_one_email_and_one_slack_message_and_a_rerun_sends_nothing(
    crms, monkeypatch, tmp_path, receivers
):
    smtp, hooks = receivers
    cfg = _cfg(crms, tmp_path)
    contact = add_ready_contact(crms, 0)
    code, week = sync_json(crms, monkeypatch, cfg)
    assert code == 0, week["errors"]
    assert week["handed_off_per_rep"] == {A: 1}
    subject = crms.hs_tasks()[0].properties["hs_task_subject"]
    link = f"https://app.hubspot.com/contacts/{PORTAL}/record/0-1/{contact}"

    [mail] = smtp.box.messages
    assert mail["To"] == A and mail["From"] == "handoff@northwind.example"
    assert mail["Subject"] == subject and mail["Auto-Submitted"] == "auto-generated"
    text = mail.get_content()
    assert "Request a demo" in text  # the brief: what the lead did
    assert f"Open the record: {link}" in text and "First touch due:" in text
    assert smtp.box.logins == [("handoff", SMTP_PASSWORD)]  # over STARTTLS, verified by the CA bundle

    [post] = hooks.posts
    assert post["path"] == HOOK_SECRET
    assert (
        post["json"]["text"].startswith(f"*{subject}*")
        and f"<{link}|Open the record>" in post["json"]["text"]
    )

    code, again = sync_json(crms, monkeypatch, cfg)
    assert code == 0, again["errors"]
    assert len(smtp.box.messages) == 1 and len(hooks.posts) == 1  # nothing sent twice
    assert {(n.kind, n.channel, n.status) for n in _notices(crms)} == {
        ("handoff", "email", "sent"),
        ("handoff", "slack", "sent"),
    }


def test_a_breach_with_on_breach_notify_sends_one_breach_message(crms, monkeypatch, tmp_path, receivers):
    smtp, hooks = receivers
    sla = {"first_touch_within_hours": 16, "on_breach": "notify"}
    cfg = _cfg(crms, tmp_path, works_in="salesforce", sla=sla)
    lead = ready_lead(crms, 0)
    t0 = datetime.now(UTC)
    code, week = sync_json(crms, monkeypatch, cfg)
    assert code == 0 and week["handed_off"] == 1, week["errors"]
    assert len(smtp.box.messages) == 1 and len(hooks.posts) == 1  # the handoff's

    later = (t0 + timedelta(days=3)).isoformat()
    code, breach = sync_json(crms, monkeypatch, cfg, "--as-of", later)
    assert code == 0, breach["errors"]
    assert breach["follow_up"]["notified"] == 1
    assert len(smtp.box.messages) == 2 and len(hooks.posts) == 2
    mail = smtp.box.messages[1]
    assert mail["Subject"].startswith("SLA missed: ") and mail["To"] == A
    link = f"{crms.sf.instance_url}/lightning/r/Lead/{lead}/view"
    assert "was due" in mail.get_content() and link in mail.get_content()
    assert mail["Message-ID"] != smtp.box.messages[0]["Message-ID"]
    assert hooks.texts()[1].startswith("*SLA missed: ") and f"<{link}|Open the record>" in hooks.texts()[1]

    code, again = sync_json(crms, monkeypatch, cfg, "--as-of", (t0 + timedelta(days=4)).isoformat())
    assert code == 0 and again["follow_up"]["notified"] == 0, again["errors"]
    assert len(smtp.box.messages) == 2 and len(hooks.posts) == 2


def test_receivers_that_fail_then_recover_get_each_message_once_on_the_next_cycle(
    crms, monkeypatch, tmp_path, receivers
):
    smtp, hooks = receivers
    cfg = _cfg(crms, tmp_path)
    add_ready_contact(crms, 0)
    smtp.stop()  # the SMTP server is down
    hooks.status = 500  # Slack fails
    code, week = sync_json(crms, monkeypatch, cfg)
    assert code == 0 and week["errors"] == []  # the cycle is neither failed nor held up
    assert week["handed_off"] == 1 and len(crms.hs_tasks()) == 1
    assert {(n.channel, n.status, n.attempts) for n in _notices(crms)} == {
        ("email", "pending", 1),
        ("slack", "pending", 1),
    }

    smtp.start()
    hooks.status = 200
    code, again = sync_json(crms, monkeypatch, cfg)  # nothing else happens this cycle
    assert code == 0 and again["handed_off"] == 0
    assert len(smtp.box.messages) == 1 and len(hooks.posts) == 1
    code, _ = sync_json(crms, monkeypatch, cfg)
    assert len(smtp.box.messages) == 1 and len(hooks.posts) == 1


def test_a_message_still_failing_after_the_bound_is_a_record_error_without_secrets(
    crms, monkeypatch, tmp_path, receivers
):
    smtp, hooks = receivers
    crms.env["HANDOFF_NOTIFY_MAX_ATTEMPTS"] = "2"
    crms.env["HANDOFF_SMTP_PASSWORD"] = "wrong-" + SMTP_PASSWORD  # refused login
    cfg = _cfg(crms, tmp_path)
    add_ready_contact(crms, 0)
    hooks.status = 500
    code, _, err1 = run_cli(crms, monkeypatch, "sync", "--once", "--json", "--config", str(cfg))
    assert code == 0
    code, out, err2 = run_cli(crms, monkeypatch, "sync", "--once", "--json", "--config", str(cfg))
    assert code == 1  # given up: a record error each, the run partial
    errors = {e["record"]: e["reason"] for e in json.loads(out)["errors"]}
    key = _notices(crms)[0].key
    assert errors[f"email handoff {key}"].startswith("not sent after 2 tries: ")
    assert "refused the login of HANDOFF_SMTP_USER (535)" in errors[f"email handoff {key}"]
    assert errors[f"slack handoff {key}"] == (
        "not sent after 2 tries: Slack (SLACK_WEBHOOK_SALES) answered 500 internal_error"
    )
    code, out, err3 = run_cli(crms, monkeypatch, "status", "--json")
    everything = err1 + err2 + out + err3 + json.dumps([n.__dict__ for n in _notices(crms)], default=str)
    assert "notification_retry" in err1 and "record_failed" not in err1
    for secret in (SMTP_PASSWORD, HOOK_SECRET, "hook-s3cret"):
        assert secret not in everything
    assert {n.status for n in _notices(crms)} == {"failed"}
    hooks.status = 200
    code, _ = sync_json(crms, monkeypatch, cfg)
    assert hooks.posts == [] and smtp.box.messages == []  # given up: never tried again


def test_a_reassignment_tells_the_new_rep_and_after_the_last_one_a_breach_is_notified(
    crms, monkeypatch, tmp_path, receivers
):
    """on_breach: reassign (once), then after_max_reassignments: notify: A is told of the
    handoff, B of the reassigned one (its brief carries the history), then B of the breach."""
    smtp, hooks = receivers
    away_today = {"out_of_office": [str(datetime.now(UTC).date())]}
    reps = [
        rep(A, "hubspot", 120, 20, timezone="UTC"),
        rep(B, "salesforce", 120, 20, timezone="UTC", availability=away_today),
    ]
    for r in reps:
        add_rep_users(crms, r["email"])
    sla = {
        "first_touch_within_hours": 16,
        "on_breach": "reassign",
        "max_reassignments": 1,
        "after_max_reassignments": "notify",
    }
    cfg = mapping_dir(tmp_path, reps=reps, handoff={"sla": sla})
    (cfg / "reps.yaml").write_text((cfg / "reps.yaml").read_text() + "notify: {email: true}\n")
    add_ready_contact(crms, 0)
    t0 = datetime.now(UTC)
    code, week = sync_json(crms, monkeypatch, cfg)
    assert code == 0 and week["handed_off_per_rep"] == {A: 1}, week["errors"]

    code, moved = sync_json(crms, monkeypatch, cfg, "--as-of", (t0 + timedelta(days=3)).isoformat())
    assert code == 0 and moved["follow_up"]["reassigned"] == 1, moved["errors"]
    to = [(m["To"], m["Subject"]) for m in smtp.box.messages]
    assert [t for t, _ in to] == [A, B]  # A's breach is a reassignment: A is not told of it
    assert "Reassigned to you from Ana" in smtp.box.messages[1].get_content()

    code, late = sync_json(crms, monkeypatch, cfg, "--as-of", (t0 + timedelta(days=6)).isoformat())
    assert code == 0 and late["follow_up"]["notified"] == 1, late["errors"]
    assert [m["To"] for m in smtp.box.messages] == [A, B, B]
    assert smtp.box.messages[2]["Subject"].startswith("SLA missed: ")
    assert hooks.posts == []  # no slack configured
    keys = {(n.key.rsplit(".", 1)[-1] if ".r" in n.key else "first", n.kind) for n in _notices(crms)}
    assert keys == {("first", "handoff"), ("r1", "handoff"), ("r1", "breach")}


def _killed_cli(crms: Crms, cfg: Path, kill_on: Callable[[Callable[[], None]], None]) -> None:
    """Run the real CLI in a process of its own, SIGKILLed the moment ``kill_on`` fires."""
    env = {**os.environ, **crms.env, "HANDOFF_LOG_LEVEL": "warning"}
    argv = [sys.executable, "-m", "sync.cli", "sync", "--once", "--json", "--config", str(cfg)]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kill_on(proc.kill)
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        kill_on(lambda: None)
    assert proc.returncode == -9, err


def test_a_kill_after_the_receiver_took_a_message_resends_it_once_the_email_as_the_same_message(
    crms, monkeypatch, tmp_path, receivers
):
    """The crash window the README names: killed after the SMTP server took the email (or
    the webhook the post) and before the outbox marked it sent, a rerun sends that one
    message again - the email with the same Message-ID, so mail clients show it once."""
    smtp, hooks = receivers
    cfg = _cfg(crms, tmp_path)
    add_ready_contact(crms, 0)

    def on_mail(kill: Callable[[], None]) -> None:
        smtp.box.on_message = kill

    def on_post(kill: Callable[[], None]) -> None:
        hooks.on_post = kill

    _killed_cli(crms, cfg, on_mail)  # email first (the outbox's order), killed as it lands
    assert len(smtp.box.messages) == 1 and hooks.posts == []
    assert len(crms.hs_tasks()) == 1
    _killed_cli(crms, cfg, on_post)  # the email again, then the Slack post, killed as it lands
    assert len(smtp.box.messages) == 2 and len(hooks.posts) == 1
    code, _ = sync_json(crms, monkeypatch, cfg)
    assert code == 0
    code, _ = sync_json(crms, monkeypatch, cfg)
    first, second = smtp.box.messages
    assert first["Message-ID"] == second["Message-ID"] and first.get_content() == second.get_content()
    assert len(hooks.posts) == 2 and hooks.posts[0] == hooks.posts[1]  # Slack: no idempotency key
    assert {n.status for n in _notices(crms)} == {"sent"} and len(crms.hs_tasks()) == 1
