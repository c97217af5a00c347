"""The v4 association batch read pages per input (500 associated records each): the
connector follows every input's ``paging.next.after``, batched, never a call per contact."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.hubspot.connector import HubSpotConnector, HubSpotSettings
from connectors.hubspot.sandbox import HubSpotSandbox, HubSpotStore
from connectors.sandbox_server import RunningServer, serve

READ = "/crm/v4/associations/contacts/meetings/batch/read"


class Bodies:
    """The sandbox behind a WSGI wrapper that keeps the JSON body of every association read."""

    def __init__(self, box: HubSpotSandbox) -> None:
        self.box = box
        self.reads: list[list[dict[str, Any]]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ["PATH_INFO"].rstrip("/") == READ:
            raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(raw)
            self.reads.append(json.loads(raw)["inputs"])
        return self.box(environ, start_response)


@pytest.fixture
def portal() -> Iterator[tuple[HubSpotStore, HubSpotConnector, Bodies]]:
    store = HubSpotStore()
    box = HubSpotSandbox(store)
    box.start()
    bodies = Bodies(box)
    server: RunningServer = serve(bodies)
    yield store, HubSpotConnector(HubSpotSettings.with_token(server.url, box.token)), bodies
    server.stop()
    box.stop()


def meetings(store: HubSpotStore, contact_id: str, n: int, now: datetime) -> None:
    for k in range(n):
        at = now - timedelta(hours=1, seconds=k)
        store.add_engagement(
            "meetings", {"hs_timestamp": at.isoformat(), "hs_meeting_title": f"M{k}"}, [contact_id]
        )


def test_a_contact_with_1200_meetings_has_all_counted_in_batched_follow_ups(
    portal: tuple[HubSpotStore, HubSpotConnector, Bodies],
) -> None:
    store, conn, bodies = portal
    now = datetime.now(UTC)
    busy = store.add_contact({"email": "busy@acme.example"})
    some = store.add_contact({"email": "some@acme.example"})
    few = store.add_contact({"email": "few@acme.example"})
    meetings(store, busy, 1200, now)
    meetings(store, some, 600, now)
    meetings(store, few, 2, now)
    people = [p for page in conn.pull_people(None) for p in page.people]

    acts = list(conn.activities_for(people, now - timedelta(days=30)))

    counted = {cid: len({a.id for a in acts if a.person_id == cid}) for cid in (busy, some, few)}
    assert counted == {busy: 1200, some: 600, few: 2}
    assert all(a.kind == "meeting" for a in acts)
    # one call for all three contacts, then one for the two still paging, then one for the last
    assert [sorted(i["id"] for i in body) for body in bodies.reads] == [
        sorted([busy, some, few]),
        sorted([busy, some]),
        [busy],
    ]
    assert [sorted(i.get("after", "") for i in body) for body in bodies.reads] == [
        ["", "", ""],
        ["500", "500"],
        ["1000"],
    ]
