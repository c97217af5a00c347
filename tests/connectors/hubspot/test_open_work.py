"""Open tasks per owner through one CRM search: owners IN, not completed, not crm-handoff's, by type.

Keyset-paged by ``hs_object_id`` at 200 a page (never near the 10,000-result cap); an owner
whose count reached ``up_to`` leaves the next page's filter, so a rep with thousands of
forgotten open tasks costs a page, not thousands of results.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.base import ANY_TYPE, OpenWork
from connectors.hubspot.connector import HubSpotConnector, HubSpotSettings, install
from connectors.hubspot.sandbox import HubSpotSandbox, HubSpotStore

SEARCH = "POST /crm/v3/objects/tasks/search"


@pytest.fixture
def portal() -> Iterator[tuple[HubSpotSandbox, HubSpotStore, HubSpotConnector]]:
    store = HubSpotStore()
    box = HubSpotSandbox(store)
    box.start()
    conn = HubSpotConnector(HubSpotSettings.with_token(box.base_url, box.token))
    install(conn)  # crm_handoff_key on tasks: the search filters on it
    box.calls.clear()
    yield box, store, conn
    box.stop()


def tasks(
    store: HubSpotStore, owner: str, n: int, type_: str = "CALL", status: str = "NOT_STARTED", **extra: str
) -> None:
    for _ in range(n):
        props = {"hs_task_subject": "Follow up", "hubspot_owner_id": owner, "hs_task_type": type_}
        store.add_engagement("tasks", {**props, "hs_task_status": status, **extra})


def test_counts_per_owner_by_type_excluding_completed_and_our_own(portal):
    box, store, conn = portal
    a = store.add_owner("a@northwind.example", "A", "Rep")
    b = store.add_owner("b@northwind.example", "B", "Rep")
    tasks(store, a, 3, "CALL")
    tasks(store, a, 2, "EMAIL")
    tasks(store, a, 1, "TODO", status="IN_PROGRESS")
    tasks(store, a, 2, "CALL", status="COMPLETED")
    tasks(store, a, 1, "TODO", crm_handoff_key="k1")  # crm-handoff's own: the ledger counts it
    tasks(store, b, 2, "EMAIL")
    tasks(store, b, 1, "CALL", status="WAITING")
    wanted = {
        a: OpenWork(task_types=("CALL", "TODO")),
        b: OpenWork(task_types=(ANY_TYPE,)),
        "999": OpenWork(),
    }
    assert conn.open_work(wanted) == {a: 4, b: 3, "999": 0}
    assert box.calls == {SEARCH: 1}  # both owners in one search; "999" wants nothing: not asked


def test_pages_of_200_by_object_id_and_owners_leave_once_they_reach_up_to(portal):
    box, store, conn = portal
    busy = store.add_owner("busy@northwind.example", "Busy", "Rep")
    calm = store.add_owner("calm@northwind.example", "Calm", "Rep")
    tasks(store, busy, 450)
    tasks(store, calm, 250)
    assert conn.open_work({busy: OpenWork(("CALL",)), calm: OpenWork(("CALL",))}) == {busy: 450, calm: 250}
    assert box.calls == {SEARCH: 4}  # 700 results: 4 pages of 200

    box.calls.clear()
    capped = {busy: OpenWork(("CALL",), up_to=6), calm: OpenWork(("CALL",), up_to=None)}
    counts = conn.open_work(capped)
    assert counts[calm] == 250 and counts[busy] >= 6  # past 6 Busy's count changes nothing
    assert box.calls == {SEARCH: 3}  # Busy left the filter after the first page: 450 results, not 700
