"""Notifications: the rep is told on Slack and by email when a lead is handed to them and
when its first-touch SLA is breached, with the brief and a link to the record.

Entry points, one per moment (each message exactly once, through the ``notifications``
outbox keyed by handoff key, kind and channel):

- ``queue_handoffs(engine, ctx, handoffs, done)``: ``Executor._complete`` calls it in the
  transaction that confirms the handoffs in the ledger (reassignments included: each is
  a handoff of its own key), so a confirmed handoff always has its messages recorded;
- ``queue_breach(engine, ctx, row, reason)``: ``sync.followup`` calls it for a breach whose
  action is ``notify`` (``on_breach`` or ``after_max_reassignments``), before the breach
  is saved; a rerun that decides the breach again records nothing new;
- ``deliver(engine, ctx)``: once per cycle, after the writes: every pending message is
  sent (Slack incoming webhook via requests, email via smtplib), then marked sent. A
  failure never fails the cycle: the message is tried again next cycle, and after
  ``HANDOFF_NOTIFY_MAX_ATTEMPTS`` tries it is a record error. A channel that cannot be
  reached is not tried again for the rest of the cycle (one timeout, not one a message).

Messages are built from fixed Jinja2 templates in the sandbox (``MESSAGES``); secrets
(the webhook URLs, the SMTP password) are never stored, logged or put in an error.
"""

from __future__ import annotations

import hashlib
import os
import smtplib
import ssl
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any
from urllib.parse import quote, urlsplit

import requests
import structlog
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from crm_handoff.secrets import register_secret
from mappings.models import Rep, Reps
from sync.context import CycleContext, PlannedHandoff, record_error
from sync.engine import Engine
from sync.settings import Settings, load_settings
from sync.state import Notice, OutcomeRow

log = structlog.get_logger("handoff.notify")

PER_CYCLE = 500  # messages one cycle sends at most; the rest wait for the next
HANDOFF, BREACH = "handoff", "breach"
_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True)
_ENV.filters["slack"] = lambda text: str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
MESSAGES = {
    "email": _ENV.from_string(
        "{{ body }}\n\n{% if link %}Open the record: {{ link }}\n{% endif %}"
        "-- \ncrm-handoff ({{ kind }} {{ key }})\n"
    ),
    "slack": _ENV.from_string(
        "*{{ subject | slack }}*\n{{ body | slack }}{% if link %}\n<{{ link }}|Open the record>{% endif %}"
    ),
}


# --- what a message says (pure) --------------------------------------------------


@dataclass(frozen=True)
class Links:
    """How links to a person's record are built (``HUBSPOT_PORTAL_ID``, the app URLs)."""

    hubspot_app: str = "https://app.hubspot.com"
    portal_id: int | None = None
    salesforce_app: str | None = None

    @classmethod
    def from_settings(cls, s: Settings) -> Links:
        return cls(s.hubspot_app_url, s.hubspot_portal_id, s.salesforce_app_url or s.salesforce_instance_url)

    def hubspot(self, contact_id: str) -> str | None:
        """The contact's record page in HubSpot (None without the portal id)."""
        if not self.portal_id:
            return None
        return f"{self.hubspot_app}/contacts/{self.portal_id}/record/0-1/{quote(contact_id, safe='')}"

    def salesforce(self, object_type: str | None, record_id: str) -> str | None:
        """The lead's or contact's Lightning record page (None without a Salesforce host)."""
        if not self.salesforce_app:
            return None
        sobject = "Contact" if (object_type or "lead").lower() == "contact" else "Lead"
        return f"{self.salesforce_app}/lightning/r/{sobject}/{quote(record_id, safe='')}/view"

    def record(
        self, works_in: str, hubspot_id: str | None, salesforce: tuple[str | None, str] | None
    ) -> str | None:
        """The link to the person in the rep's CRM, else in the other one."""
        hs = self.hubspot(hubspot_id) if hubspot_id else None
        sf = self.salesforce(*salesforce) if salesforce else None
        return (sf or hs) if works_in == "salesforce" else (hs or sf)


def handoff_notices(
    reps: Reps, h: PlannedHandoff, links: Links, targets: Sequence[tuple[str, str]] | None = None
) -> list[Notice]:
    """The messages telling ``h``'s rep about the handoff: the brief, the due date, the link."""
    prof, brief = h.profile, h.brief
    sf = (prof.salesforce.object_type, prof.salesforce.id) if prof.salesforce else None
    link = links.record(h.rep.works_in, prof.hubspot.id if prof.hubspot else None, sf)
    body = f"{brief.body.rstrip()}\n\nFirst touch due: {_day(brief.due)}"
    return [
        Notice(h.key, HANDOFF, channel, h.rep.email, target, brief.subject, body, link)
        for channel, target in (
            targets if targets is not None else reps.notify_for(h.rep).targets(h.rep.email)
        )
    ]


def breach_notices(
    reps: Reps, rep: Rep, row: OutcomeRow, reason: str, task: Mapping[str, Any], link: str | None
) -> list[Notice]:
    """The messages telling the rep the first touch on ``row``'s lead is overdue."""
    due = f"{row.due_at:%Y-%m-%d %H:%M} UTC" if row.due_at else "by now"
    subject = f"SLA missed: {task.get('subject') or row.person_key}"
    body = (
        f"The first touch on this lead was due {due} and none was seen ({reason}).\n\n"
        f"{str(task.get('body') or '').rstrip()}"
    ).rstrip()
    return [
        Notice(row.key, BREACH, channel, rep.email, target, subject, body, link)
        for channel, target in reps.notify_for(rep).targets(rep.email)
    ]


def _day(value: date | str) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def slack_text(n: Notice) -> str:
    """What the Slack message says (mrkdwn: ``&``, ``<``, ``>`` escaped; the link as a link)."""
    return MESSAGES["slack"].render(subject=n.subject, body=n.body, link=n.link)


def email_message(n: Notice, sender: str) -> EmailMessage:
    """The email: plain text, a Message-ID derived from the outbox key (a resend is the same
    message, which mail clients show once), marked as automatically generated."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = n.target
    msg["Subject"] = n.subject.replace("\r", " ").replace("\n", " ")[:250]
    msg["Message-ID"] = message_id(n, sender)
    msg["Date"] = formatdate(usegmt=True)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Handoff-Key"] = n.key
    msg.set_content(MESSAGES["email"].render(body=n.body, link=n.link, kind=n.kind, key=n.key))
    return msg


def message_id(n: Notice, sender: str) -> str:
    """``<hash.kind@sender's domain>``: the same for every try of one outbox row."""
    digest = hashlib.sha256(f"{n.key}\x00{n.kind}".encode()).hexdigest()[:32]
    return f"<{digest}.{n.kind}@{sender.rsplit('@', 1)[-1]}>"


# --- recording (the outbox) ---------------------------------------------------------


def queue_handoffs(
    engine: Engine, ctx: CycleContext, handoffs: Sequence[PlannedHandoff], done: set[str]
) -> None:
    """Record the messages of the handoffs whose tasks exist (``done``); call it in the
    transaction that confirms them, so a confirmed handoff's messages are never lost."""
    reps = engine.mapping.reps
    todo = [(h, reps.notify_for(h.rep).targets(h.rep.email)) for h in handoffs if h.key in done]
    todo = [(h, t) for h, t in todo if t]
    if ctx.dry_run or not todo:
        return
    links = Links.from_settings(load_settings())
    notices = [n for h, targets in todo for n in handoff_notices(reps, h, links, targets)]
    engine.state.queue_notices(notices, ctx.now)


def queue_breach(engine: Engine, ctx: CycleContext, row: OutcomeRow, reason: str) -> None:
    """Record the breach messages of ``row`` (idempotent: a breach decided again adds none)."""
    reps = engine.mapping.reps
    rep = next((r for r in reps.reps if r.email == row.rep_email), None)
    if ctx.dry_run or rep is None or not reps.notify_for(rep).targets(rep.email):
        return
    task = engine.state.handoff_tasks([row.key]).get(row.key, {})
    ident = next(iter(engine.state.identities_by_key([row.person_key])), None)
    link = None
    if ident is not None:
        sf = (ident.salesforce_type, ident.salesforce_id) if ident.salesforce_id else None
        link = Links.from_settings(load_settings()).record(rep.works_in, ident.hubspot_id, sf)
    engine.state.queue_notices(breach_notices(reps, rep, row, reason, task, link), ctx.now)


# --- sending ------------------------------------------------------------------------


class SendFailed(Exception):
    """A message did not go out. ``permanent``: trying again cannot help (a refused
    address, a missing setting); ``channel``: the channel itself failed (unreachable),
    so the rest of its messages are not tried this cycle."""

    def __init__(self, reason: str, permanent: bool = False, channel: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.permanent, self.channel = reason, permanent, channel


class Slack:
    """Posts to Slack incoming webhooks: ``{"text": ...}``, the URL read from the variable
    the rep's ``notify.slack`` names."""

    def __init__(self, timeout: float, env: Mapping[str, str] | None = None) -> None:
        self.timeout = timeout
        self.env = os.environ if env is None else env
        self.session = requests.Session()

    def url(self, name: str) -> str:
        value = (self.env.get(name) or "").strip()
        if not value:
            raise SendFailed(f"the environment variable {name} (reps.yaml notify.slack) is not set", True)
        register_secret(value)  # the URL is the credential: never printed
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise SendFailed(f"{name} does not hold an http(s) webhook URL", True)
        return value

    def send(self, n: Notice) -> None:
        url = self.url(n.target)
        try:
            resp = self.session.post(
                url,
                json={"text": slack_text(n)},
                timeout=(min(self.timeout, 10.0), self.timeout),
                allow_redirects=False,
            )
        except requests.Timeout:
            raise SendFailed(
                f"Slack ({n.target}) did not answer within {self.timeout:g} s", channel=True
            ) from None
        except requests.RequestException as exc:
            raise SendFailed(f"cannot reach Slack ({n.target}): {type(exc).__name__}", channel=True) from None
        if resp.status_code == 200:
            return
        said = " ".join(resp.text.split())[:120].replace(url, "***")
        permanent = 400 <= resp.status_code < 500 and resp.status_code not in (408, 429)
        raise SendFailed(
            f"Slack ({n.target}) answered {resp.status_code} {said}".rstrip(), permanent, not permanent
        )

    def close(self) -> None:
        self.session.close()


class Smtp:
    """Sends email through the ``HANDOFF_SMTP_*`` server: one connection per cycle, opened
    at the first message (STARTTLS, implicit TLS or plain, then the login if a user is set)."""

    def __init__(self, s: Settings) -> None:
        self.s = s
        self.conn: smtplib.SMTP | None = None

    def send(self, n: Notice) -> None:
        s = self.s
        if not s.handoff_smtp_host or not s.handoff_smtp_from:
            raise SendFailed("email notifications need HANDOFF_SMTP_HOST and HANDOFF_SMTP_FROM", True)
        with self._errors():
            if self.conn is None:
                self.conn = self._open()
            self.conn.send_message(email_message(n, s.handoff_smtp_from))

    def _open(self) -> smtplib.SMTP:
        s, timeout = self.s, self.s.handoff_notify_timeout_seconds
        host = s.handoff_smtp_host or ""
        context = ssl.create_default_context(
            cafile=str(s.handoff_smtp_ca_bundle) if s.handoff_smtp_ca_bundle else None
        )
        conn: smtplib.SMTP
        if s.handoff_smtp_security == "tls":
            conn = smtplib.SMTP_SSL(host, s.smtp_port, timeout=timeout, context=context)
        else:
            conn = smtplib.SMTP(host, s.smtp_port, timeout=timeout)
            if s.handoff_smtp_security == "starttls":
                conn.starttls(context=context)
        if s.handoff_smtp_user:
            password = s.handoff_smtp_password.get_secret_value() if s.handoff_smtp_password else ""
            conn.login(s.handoff_smtp_user, password)
        return conn

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """SMTP and socket failures as ``SendFailed``, the server's words kept, no secret."""
        where = f"the SMTP server {self.s.handoff_smtp_host}:{self.s.smtp_port}"
        try:
            yield
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            raise SendFailed(f"{where} refused the address ({', '.join(map(str, codes))})", True) from None
        except smtplib.SMTPAuthenticationError as exc:
            self._drop()
            raise SendFailed(
                f"{where} refused the login of HANDOFF_SMTP_USER ({exc.smtp_code})", channel=True
            ) from None
        except smtplib.SMTPResponseException as exc:
            self._drop()
            said = _said(exc.smtp_error, self.s)
            raise SendFailed(f"{where} answered {exc.smtp_code} {said}", exc.smtp_code >= 500, True) from None
        except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
            self._drop()
            raise SendFailed(f"cannot send through {where}: {type(exc).__name__}", channel=True) from None

    def _drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with suppress(OSError):
                conn.close()

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                conn.close()


def _said(raw: bytes | str, s: Settings) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    text = " ".join(text.split())[:160]
    secret = s.handoff_smtp_password.get_secret_value() if s.handoff_smtp_password else ""
    return text.replace(secret, "***") if secret else text


@dataclass
class Delivered:
    """What one ``deliver`` did."""

    sent: int = 0
    retry: int = 0
    failed: int = 0
    by_channel: dict[str, int] = field(default_factory=dict)


def deliver(engine: Engine, ctx: CycleContext, settings: Settings | None = None) -> Delivered:
    """Send the pending messages (this cycle's and earlier ones not sent yet), each once."""
    out = Delivered()
    if ctx.dry_run:
        return out
    pending = engine.state.pending_notices(PER_CYCLE)
    if not pending:
        return out
    s = settings or load_settings()
    senders: dict[str, Slack | Smtp] = {"slack": Slack(s.handoff_notify_timeout_seconds), "email": Smtp(s)}
    down: dict[tuple[str, str], str] = {}  # channel (and webhook) that failed this cycle -> why
    try:
        for n in pending:
            _one(engine, ctx, s, senders, down, n, out)
    finally:
        for sender in senders.values():
            sender.close()
    log.info("notifications", sent=out.sent, retry=out.retry, failed=out.failed, **out.by_channel)
    return out


def _one(
    engine: Engine,
    ctx: CycleContext,
    s: Settings,
    senders: Mapping[str, Slack | Smtp],
    down: dict[tuple[str, str], str],
    n: Notice,
    out: Delivered,
) -> None:
    """Send one message, or count a failed try (a channel down this cycle: not tried again)."""
    line = (n.channel, n.target if n.channel == "slack" else "")
    try:
        if line in down:
            raise SendFailed(down[line])
        sender = senders.get(n.channel)
        if sender is None:
            raise SendFailed(f"unknown channel {n.channel!r}", True)
        sender.send(n)
    except SendFailed as exc:
        if exc.channel:
            down[line] = exc.reason
        _failed(engine, ctx, s, n, exc, out)
        return
    engine.state.notice_sent(n.ident, ctx.now)
    out.sent += 1
    out.by_channel[n.channel] = out.by_channel.get(n.channel, 0) + 1
    log.info("notification_sent", handoff=n.key, kind=n.kind, channel=n.channel, rep=n.rep_email)


def _failed(
    engine: Engine, ctx: CycleContext, s: Settings, n: Notice, exc: SendFailed, out: Delivered
) -> None:
    """A failed try: tried again next cycle until the bound, then a record error."""
    tries = n.attempts + 1
    give_up = exc.permanent or tries >= s.handoff_notify_max_attempts
    engine.state.notice_failed(n.ident, tries, exc.reason, give_up)
    if not give_up:
        out.retry += 1
        log.warning(
            "notification_retry",
            handoff=n.key,
            kind=n.kind,
            channel=n.channel,
            attempt=tries,
            error=exc.reason,
        )
        return
    out.failed += 1
    after = "" if exc.permanent else f" after {tries} tries"
    record_error(
        engine.state, ctx, "notify", f"{n.channel} {n.kind} {n.key}", f"not sent{after}: {exc.reason}"
    )
