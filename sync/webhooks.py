"""HubSpot webhook deliveries into the worker: verified, stored, acknowledged.

``POST /webhooks/hubspot`` on the worker's HTTP server (``sync.report_http``) hands each
request to :meth:`Receiver.receive`, which, in this order:

1. checks the v3 signature and its timestamp (``connectors.hubspot.webhooks``) against the
   public URL HubSpot calls (``HUBSPOT_WEBHOOK_URL``): a missing, stale or wrong signature
   is a 401 and nothing is read further or stored;
2. parses the events (a body that is not HubSpot's event array: 400);
3. stores every contact event in the state in one transaction, de-duplicated by its
   ``eventId`` (deliveries are at least once: a retry or a duplicate stores nothing new),
   and only then answers 200. A state that cannot be written is a 503: HubSpot retries.

Storing is all the request does, so it answers within HubSpot's 5-second timeout whatever
the cycle is doing. A stored event stays pending until a micro-cycle (the worker's
``webhooks`` job, ``sync.ingest.webhook_batches``) has read the contacts it names back from
HubSpot and evaluated them: a worker killed after answering finds it pending on restart.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from connectors.hubspot.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookEvent,
    check_signature,
    event_json,
    parse_events,
)
from crm_handoff.clock import Clock, utc_now
from sync.state import StateStore
from sync.state.webhooks import ReceivedEvent

log = structlog.get_logger("handoff.webhooks")

PATH = "/webhooks/hubspot"
MAX_BODY = 2_000_000  # HubSpot sends at most 100 events a request: far below this


@dataclass(frozen=True)
class Answer:
    """The HTTP answer to a delivery."""

    status: int
    body: dict[str, object] = field(default_factory=dict)

    @property
    def status_line(self) -> str:
        reasons = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 405: "Method Not Allowed"}
        reasons |= {411: "Length Required", 413: "Content Too Large", 503: "Service Unavailable"}
        return f"{self.status} {reasons.get(self.status, '')}".strip()

    def payload(self) -> bytes:
        return json.dumps(self.body).encode()


def received(event: WebhookEvent) -> ReceivedEvent:
    """A HubSpot event as the state stores it."""
    at = datetime.fromtimestamp(event.occurred_at / 1000, UTC) if event.occurred_at else None
    return ReceivedEvent(
        event_id=str(event.event_id),
        kind=event.subscription_type,
        object_id=str(event.object_id),
        people=tuple(event.contact_ids()),
        occurred_at=at,
        event=event_json(event),
    )


class Receiver:
    """Verifies, stores and acknowledges HubSpot webhook deliveries."""

    def __init__(
        self,
        state: StateStore,
        secret: str,
        public_url: str,
        on_stored: Callable[[], None] = lambda: None,
        clock: Clock = utc_now,
    ) -> None:
        self.state, self._secret, self.public_url = state, secret, public_url
        self.on_stored, self.clock = on_stored, clock

    def receive(self, method: str, query: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """Answer one delivery request (see the module for the order of the checks)."""
        if method != "POST":
            return Answer(405, {"error": "POST only"})
        uri = self.public_url + (f"?{query}" if query else "")
        refused = check_signature(
            self._secret,
            method,
            uri,
            body,
            headers.get(SIGNATURE_HEADER),
            headers.get(TIMESTAMP_HEADER),
            self.clock(),
        )
        if refused:
            log.warning("webhook_refused", reason=refused)
            return Answer(401, {"error": refused})
        try:
            events = parse_events(body)
        except ValueError as exc:
            log.warning("webhook_unreadable", reason=str(exc))
            return Answer(400, {"error": str(exc)})
        return self._store(events)

    def _store(self, events: list[WebhookEvent]) -> Answer:
        mine = [received(e) for e in events if e.contact_ids()]
        try:
            new = self.state.store_events("hubspot", mine, self.clock())
        except Exception as exc:  # the state unreachable or locked past its timeout: HubSpot retries
            log.error("webhook_not_stored", error=type(exc).__name__, events=len(mine))
            return Answer(503, {"error": "not stored; retry later"})
        log.info(
            "webhook_stored",
            events=len(events),
            stored=new,
            duplicates=len(mine) - new,
            ignored=len(events) - len(mine),
        )
        if new:
            self.on_stored()
        return Answer(200, {"received": len(events), "stored": new, "duplicates": len(mine) - new})

    def wsgi(self, environ: Mapping[str, object]) -> Answer:
        """Answer a WSGI request (the worker's HTTP server)."""
        try:
            length = int(str(environ.get("CONTENT_LENGTH") or "0"))
        except ValueError:
            return Answer(411, {"error": "Content-Length required"})
        if length > MAX_BODY:
            return Answer(413, {"error": f"body over {MAX_BODY} bytes"})
        stream = environ.get("wsgi.input")
        body = stream.read(length) if length and hasattr(stream, "read") else b""
        headers = {
            k[5:].replace("_", "-").title(): str(v) for k, v in environ.items() if k.startswith("HTTP_")
        }
        headers = {_canonical(k): v for k, v in headers.items()}
        return self.receive(
            str(environ.get("REQUEST_METHOD", "")), str(environ.get("QUERY_STRING", "")), headers, body
        )


def _canonical(name: str) -> str:
    """HubSpot's header names as the checks spell them (HTTP header names are case-blind)."""
    for known in (SIGNATURE_HEADER, TIMESTAMP_HEADER):
        if name.lower() == known.lower():
            return known
    return name
