"""What reps do with handoff tasks, read back from HubSpot, and the writes that close them.

Every read is batched: tasks by the batch read (100 a call); calls, emails and meetings
of contacts through the v4 association batch read (1,000 contacts a call) and a batch read
of the engagements (100 a call). Never a call per task or per contact.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hubspot.crm.contacts import PublicObjectSearchRequest
from hubspot.crm.objects.tasks import BatchInputSimplePublicObjectBatchInput
from more_itertools import chunked

from connectors.hubspot.connector import (
    GROUP,
    HANDOFF_FIELDS,
    PAGE,
    SEARCH_PAGE,
    _batch_errors,
    _ms,
    parse_time,
)
from crm_handoff.records import TaskChanges, TaskClose, TaskState, Touch, TouchKind, WriteResult

if TYPE_CHECKING:
    from connectors.hubspot.connector import HubSpotConnector

#: The task property holding the rep's outcome (a dropdown ``install_outcomes`` creates).
OUTCOME_PROPERTY = "crm_handoff_outcome"
COMPLETED = "COMPLETED"
TASK_PROPERTIES = (
    "hs_task_status",
    "hs_task_completion_date",
    "hs_timestamp",
    "hubspot_owner_id",
    "hs_lastmodifieddate",
    HANDOFF_FIELDS["task_key"],
    OUTCOME_PROPERTY,
)
#: Engagement objects that count as a touch, and their kind.
TOUCH_OBJECTS: dict[str, TouchKind] = {"calls": "call", "emails": "email", "meetings": "meeting"}


def read_tasks(conn: HubSpotConnector, task_ids: Sequence[str]) -> list[TaskState]:
    """The tasks' state, one per distinct id, in order; an id HubSpot no longer returns
    (archived, i.e. deleted) is ``deleted``. 100 tasks a batch read."""
    ids = list(dict.fromkeys(str(i) for i in task_ids))
    found = {str(o.id): o for o in conn._batch_read("tasks", ids, TASK_PROPERTIES)}
    return [_state(i, found.get(i)) for i in ids]


def _state(task_id: str, obj: Any) -> TaskState:
    if obj is None:
        return TaskState(None, task_id, None, False, None, None, None, None, deleted=True)
    props = dict(obj.properties or {})
    status = props.get("hs_task_status") or None
    modified = parse_time(props.get("hs_lastmodifieddate")) or parse_time(obj.updated_at)
    closed = status == COMPLETED
    completed = parse_time(props.get("hs_task_completion_date")) or (modified if closed else None)
    return TaskState(
        key=props.get(HANDOFF_FIELDS["task_key"]) or None,
        task_id=task_id,
        status=status,
        closed=closed,
        completed_at=completed if closed else None,
        outcome=props.get(OUTCOME_PROPERTY) or None,
        owner_id=props.get("hubspot_owner_id") or None,
        modified_at=modified,
    )


def task_changes(conn: HubSpotConnector, since: datetime) -> TaskChanges:
    """Handoff tasks (those with a handoff key) modified at/after ``since``, keyset-paged by
    id so no query pages past the search API's 10,000 cap (an idle portal: one call).
    Tasks created since then are left out unless completed: the ones crm-handoff itself
    just wrote are not read back (two filter groups, ORed). An outcome picked on a task
    still open and that new is read when its handoff comes due (``read_tasks``); no filter
    names the outcome property, which a portal without ``handoff install`` lacks.
    Deleted tasks are not searchable: ``read_tasks`` finds them when their handoff is judged.
    Touches are not here: a call, email or meeting moves the contact's ``notes_last_updated``,
    so ``touches`` is asked for the contacts that changed."""
    api = conn._search_api("tasks")
    last, tasks = "0", []
    while True:
        base = [
            {"propertyName": HANDOFF_FIELDS["task_key"], "operator": "HAS_PROPERTY"},
            {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": _ms(since)},
            {"propertyName": "hs_object_id", "operator": "GT", "value": last},
        ]
        groups = [
            {"filters": [*base, {"propertyName": "hs_createdate", "operator": "LT", "value": _ms(since)}]},
            {"filters": [*base, {"propertyName": "hs_task_status", "operator": "EQ", "value": COMPLETED}]},
        ]
        request = PublicObjectSearchRequest(
            filter_groups=groups,
            sorts=["hs_object_id"],
            properties=list(TASK_PROPERTIES),
            limit=SEARCH_PAGE,
        )
        page = conn._json(api, public_object_search_request=request)
        results = page.get("results") or []
        tasks += [_state(str(o["id"]), _Obj(o)) for o in results]
        if len(results) < SEARCH_PAGE:
            return TaskChanges(tasks, [])
        last = str(results[-1]["id"])


class _Obj:
    """A search result (JSON) read like an SDK object (``properties``, ``updated_at``)."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.properties = raw.get("properties") or {}
        self.updated_at = raw.get("updatedAt")


def touches(conn: HubSpotConnector, person_ids: Sequence[str], since: datetime) -> Iterator[Touch]:
    """Calls, emails and meetings associated with these contacts and logged at or after
    ``since`` (their create date), by anyone: ``owner_id`` says whose."""
    ids = list(dict.fromkeys(str(i) for i in person_ids))
    if not ids:
        return
    for object_type, kind in TOUCH_OBJECTS.items():
        contacts_of: dict[str, list[str]] = {}
        for contact_id, engagement_ids in conn._associations("contacts", object_type, ids).items():
            for eid in engagement_ids:
                contacts_of.setdefault(eid, []).append(contact_id)
        properties = ("hs_timestamp", "hs_createdate", "hubspot_owner_id")
        for obj in conn._batch_read(object_type, sorted(contacts_of), properties):
            props = dict(obj.properties or {})
            logged = parse_time(props.get("hs_createdate")) or parse_time(obj.created_at)
            if logged is None or logged < since:
                continue
            at = min(parse_time(props.get("hs_timestamp")) or logged, logged)
            for contact_id in contacts_of.get(str(obj.id), []):
                yield Touch(
                    "hubspot", str(obj.id), contact_id, kind, props.get("hubspot_owner_id") or None, at
                )


def close_tasks(conn: HubSpotConnector, items: Sequence[TaskClose]) -> list[WriteResult]:
    """Close tasks with a note appended to their body, one result per item (key: task id).

    Idempotent: the tasks are read first (batch read) and only those not already in the
    wanted status are written (batch update, 100 a call); a task already closed is a
    success with ``created=False`` (nothing written), a deleted one a success with code
    ``DELETED``. Status, note and outcome go in one write per task: never half-closed.
    """
    current = {str(o.id): o for o in conn._batch_read("tasks", [i.task_id for i in items], _CLOSE_READ)}
    out: dict[str, WriteResult] = {}
    pending: list[TaskClose] = []
    queued: set[str] = set()
    for item in items:
        obj = current.get(item.task_id)
        status = (dict(obj.properties or {}) if obj is not None else {}).get("hs_task_status")
        if obj is None:
            out[item.task_id] = WriteResult(item.task_id, True, item.task_id, code="DELETED", created=False)
        elif status in (COMPLETED, item.status or COMPLETED):
            out[item.task_id] = WriteResult(item.task_id, True, item.task_id, created=False)
        elif item.task_id not in queued:
            queued.add(item.task_id)
            pending.append(item)
    for part in chunked(pending, PAGE):
        out |= _close_batch(conn, part, current)
    return [out[i.task_id] for i in items]


_CLOSE_READ = ("hs_task_status", "hs_task_body")


def _close_batch(
    conn: HubSpotConnector, part: Sequence[TaskClose], current: dict[str, Any]
) -> dict[str, WriteResult]:
    inputs = []
    for item in part:
        body = str((current[item.task_id].properties or {}).get("hs_task_body") or "")
        props = {"hs_task_status": item.status or COMPLETED, "hs_task_body": _with_note(body, item.note)}
        if item.outcome is not None:
            props[OUTCOME_PROPERTY] = item.outcome
        inputs.append({"id": item.task_id, "properties": props, "objectWriteTraceId": item.task_id})
    res = conn._call(
        conn.client.crm.objects.tasks.batch_api.update,
        batch_input_simple_public_object_batch_input=BatchInputSimplePublicObjectBatchInput(inputs=inputs),
    )
    failed = _batch_errors(res)
    out: dict[str, WriteResult] = {}
    for item in part:
        if item.task_id in failed:
            msg, code = failed[item.task_id]
            out[item.task_id] = WriteResult(item.task_id, False, error=msg, code=code)
        else:
            out[item.task_id] = WriteResult(item.task_id, True, item.task_id, created=True)
    return out


def _with_note(body: str, note: str) -> str:
    """``body`` with ``note`` appended once (a body that already ends with it is kept)."""
    if not note or body.rstrip().endswith(note):
        return body
    return f"{body}\n\n{note}" if body else note


def install_outcomes(conn: HubSpotConnector, values: Sequence[tuple[str, str]]) -> list[str]:
    """Create the task property ``crm_handoff_outcome`` (a dropdown of ``values``, each
    (value, label)) or add the values and labels it lacks; values it has that are no
    longer listed are kept (tasks may hold them). Idempotent: a second run changes nothing."""
    core = conn.client.crm.properties.core_api
    groups = conn.client.crm.properties.groups_api
    if GROUP not in {g.name for g in conn._call(groups.get_all, "tasks").results or []}:
        conn._call(groups.create, "tasks", property_group_create={"name": GROUP, "label": "crm-handoff"})
    have = next(
        (p for p in conn._call(core.get_all, "tasks").results or [] if p.name == OUTCOME_PROPERTY), None
    )
    wanted = dict(values)
    if have is None:
        options = [{"value": v, "label": lab, "displayOrder": i} for i, (v, lab) in enumerate(wanted.items())]
        body = {"name": OUTCOME_PROPERTY, "label": "Handoff outcome", "type": "enumeration",
                "fieldType": "select", "groupName": GROUP, "options": options}  # fmt: skip
        conn._call(core.create, "tasks", property_create=body)
        return [f"created tasks.{OUTCOME_PROPERTY} with {len(options)} values"]
    existing = {o.value: o.label for o in have.options or []}
    merged = {**existing, **wanted}
    if have.type == "enumeration" and merged == existing:
        return [f"tasks.{OUTCOME_PROPERTY} already exists"]
    options = [{"value": v, "label": lab, "displayOrder": i} for i, (v, lab) in enumerate(merged.items())]
    update = {"type": "enumeration", "fieldType": "select", "options": options}
    conn._call(core.update, "tasks", OUTCOME_PROPERTY, property_update=update)
    added = len(merged) - len(existing)
    return [f"updated tasks.{OUTCOME_PROPERTY}: {added} values added, {len(merged)} in all"]
