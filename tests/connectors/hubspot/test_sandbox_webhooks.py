"""The HubSpot sandbox sends webhooks like HubSpot: contact creation, a subscribed property's
change, merge and deletion POSTed to the target URL as a JSON array of events, signed (v3),
retried on failure with attemptNumber counting up, sometimes twice, not in order."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from werkzeug.wrappers import Request, Response

from connectors.hubspot.sandbox import HubSpotSandbox, HubSpotStore, Subscription, WebhookSender
from connectors.hubspot.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, check_signature, parse_events
from connectors.sandbox_server import serve

SECRET = "sandbox-app-secret"


class Target:
    """A webhook endpoint that checks the signature, records what arrived, and can fail."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.requests: list[list[dict[str, Any]]] = []
        self.refused = 0
        self.lock = threading.Lock()
        self.server = serve(self)
        self.url = f"{self.server.url}/hooks/hubspot"

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        req = Request(environ)
        body = req.get_data()
        why = check_signature(
            SECRET,
            req.method,
            self.url,
            body,
            req.headers.get(SIGNATURE_HEADER),
            req.headers.get(TIMESTAMP_HEADER),
            datetime.now(UTC),
        )
        with self.lock:
            if why:
                self.refused += 1
                return Response(why, 401)(environ, start_response)
            self.requests.append(json.loads(body))
            status = 503 if len(self.requests) <= self.fail_first else 204
        return Response(status=status)(environ, start_response)

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [e for r in self.requests for e in r]


@pytest.fixture
def store():
    return HubSpotStore()


def _wait(sender: WebhookSender, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sender.idle():
            return
        time.sleep(0.02)
    raise AssertionError("the sender did not finish")


def _sender(store: HubSpotStore, target: Target, **kw: Any) -> WebhookSender:
    kw.setdefault("retry_seconds", (0.05,))
    return WebhookSender(store, target.url, SECRET, **kw).start()


def test_contact_changes_arrive_signed_as_hubspot_events(store):
    target = Target()
    sender = _sender(store, target, shuffle=False)
    try:
        cid = store.add_contact({"email": "ana@acme.example", "lifecyclestage": "lead"})
        store.update_contact(cid, {"jobtitle": "CTO"})  # not subscribed: no event
        store.update_contact(cid, {"lifecyclestage": "marketingqualifiedlead"})
        store.submit_form(cid, "Request a demo")
        other = store.add_contact({"email": "ana.b@acme.example"})
        store.merge_contacts(cid, other)
        gone = store.add_contact({"email": "gone@acme.example"})
        store.archive_contact(gone)
        _wait(sender)
    finally:
        sender.stop()
        target.server.stop()
    assert target.refused == 0
    events = target.events()
    assert [(e["subscriptionType"], e["objectId"], e.get("propertyName")) for e in events] == [
        ("contact.creation", int(cid), None),
        ("contact.propertyChange", int(cid), "lifecyclestage"),
        ("contact.propertyChange", int(cid), "recent_conversion_date"),
        ("contact.creation", int(other), None),
        ("contact.merge", int(cid), None),
        ("contact.creation", int(gone), None),
        ("contact.deletion", int(gone), None),
    ]
    parsed = parse_events(json.dumps(events).encode())  # what the worker's receiver reads
    assert (
        parsed[2].change_source == "FORM"
        and events[2]["propertyValue"] == store.contact(cid)["recent_conversion_date"]
    )
    assert parsed[4].contact_ids() == sorted([cid, other])
    assert events[1]["propertyValue"] == "marketingqualifiedlead" and events[1]["changeSource"] == "CRM_UI"
    assert len({e["eventId"] for e in events}) == len(events)
    assert all(e["portalId"] == store.portal_id and e["attemptNumber"] == 0 for e in events)


def test_a_form_fill_moves_the_conversion_properties(store):
    cid = store.add_contact({"email": "ana@acme.example"})
    store.submit_form(cid, "Contact sales", at=datetime(2026, 12, 1, 9, tzinfo=UTC))
    store.submit_form(cid, "Request a demo", at=datetime(2026, 12, 2, 9, tzinfo=UTC))
    c = store.contact(cid)
    assert c["num_conversion_events"] == "2"
    assert c["recent_conversion_event_name"] == "Request a demo"
    assert c["recent_conversion_date"].startswith("2026-12-02T09:00")
    assert c["first_conversion_event_name"] == "Contact sales"
    page, _ = store.events_page(
        event_type="e_submitted_form", object_id=cid, occurred_after=None, occurred_before=None,
        descending=False, after=None, limit=100,
    )  # fmt: skip
    assert len(page) == 2


def test_writes_through_the_api_are_attributed_to_the_api(store):
    sandbox = HubSpotSandbox(store)
    sandbox.start()
    target = Target()
    sender = _sender(store, target)
    try:
        from hubspot import HubSpot
        from hubspot.crm.contacts import SimplePublicObjectInputForCreate

        client = HubSpot(access_token=sandbox.token, host=sandbox.base_url)
        made = client.crm.contacts.basic_api.create(
            SimplePublicObjectInputForCreate(
                properties={"email": "api@acme.example", "hs_lead_status": "NEW"}
            )
        )
        _wait(sender)
    finally:
        sender.stop()
        target.server.stop()
        sandbox.stop()
    assert [(e["subscriptionType"], e["changeSource"]) for e in target.events()] == [
        ("contact.creation", "API")
    ]
    assert target.events()[0]["objectId"] == int(made.id)


def test_a_failed_delivery_is_retried_with_the_attempt_number(store):
    target = Target(fail_first=2)
    sender = _sender(store, target)
    try:
        cid = store.add_contact({"email": "ana@acme.example"})
        _wait(sender)
    finally:
        sender.stop()
        target.server.stop()
    attempts = [(r[0]["eventId"], r[0]["attemptNumber"]) for r in target.requests]
    first = attempts[0][0]
    assert attempts == [(first, 0), (first, 1), (first, 2)]
    assert [a.status for a in sender.sent] == [503, 503, 204]
    assert sender.delivered() == {first}
    assert target.requests[0][0]["objectId"] == int(cid)


def test_an_unreachable_target_is_retried_until_it_answers(store):
    target = Target()
    port = target.server.port
    target.server.stop()  # nobody listens: connection refused
    sender = WebhookSender(store, target.url, SECRET, retry_seconds=(0.2,)).start()
    try:
        store.add_contact({"email": "ana@acme.example"})
        deadline = time.monotonic() + 5
        while not sender.sent and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sender.sent[0].status is None
        target.server = serve(target, port=port)
        _wait(sender)
    finally:
        sender.stop()
        target.server.stop()
    assert [a.status for a in sender.sent][-1] == 204
    assert len(target.events()) == 1 and target.events()[0]["attemptNumber"] >= 1


def test_deliveries_are_sometimes_sent_twice(store):
    target = Target()
    sender = _sender(store, target, duplicate_rate=1.0)
    try:
        store.add_contact({"email": "ana@acme.example"})
        _wait(sender)
    finally:
        sender.stop()
        target.server.stop()
    assert len(target.requests) == 2
    assert target.requests[0] == target.requests[1]  # the same events, the same ids
    assert [a.duplicate for a in sender.sent] == [False, True]


def test_events_of_a_request_are_not_in_order(store):
    target = Target()
    sender = WebhookSender(store, target.url, SECRET, seed=3, delay_seconds=0.3)
    sender.start()
    try:
        ids = [store.add_contact({"email": f"p{i}@acme.example"}) for i in range(30)]
        _wait(sender)
    finally:
        sender.stop()
        target.server.stop()
    got = [str(e["objectId"]) for e in target.events()]
    assert sorted(got) == sorted(ids)
    assert got != ids  # shuffled


def test_only_subscribed_properties_make_events(store):
    target = Target()
    subs = [Subscription(5, "contact.propertyChange", "hubspot_owner_id")]
    sender = _sender(store, target, subscriptions=subs)
    try:
        cid = store.add_contact({"email": "ana@acme.example"})
        store.update_contact(cid, {"lifecyclestage": "lead", "hubspot_owner_id": "7"})
        store.update_contact(cid, {"hubspot_owner_id": "7"})  # unchanged: no event
        _wait(sender)
    finally:
        sender.stop()
        target.server.stop()
    events = target.events()
    assert [(e["subscriptionId"], e["propertyName"], e["propertyValue"]) for e in events] == [
        (5, "hubspot_owner_id", "7")
    ]
