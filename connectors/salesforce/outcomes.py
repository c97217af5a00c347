"""What reps do with handoff Tasks, read back from Salesforce, and the writes that close them.

Every read is SOQL by id list (200 ids a statement, far inside the SOQL and URL limits),
the statements' first pages travelling 5 to a Composite request (one API call); writes are
sObject Collections updates (200 a call, ``allOrNone: false``). Never a call per task.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import requests
import structlog
from more_itertools import chunked
from simple_salesforce.format import format_soql
from zeep.exceptions import Error as ZeepError
from zeep.exceptions import Fault, TransportError

from connectors.salesforce.connector import (
    HANDOFF_FIELDS,
    ID_CHUNK,
    _cut,
    _metadata_api,
    _MetadataRefused,
    parse_time,
)
from crm_handoff.errors import AuthError, CrmError, RetriableCrmError
from crm_handoff.records import TaskChanges, TaskClose, TaskState, Touch, TouchKind, WriteResult

if TYPE_CHECKING:
    from connectors.salesforce.connector import SalesforceConnector

log = structlog.get_logger("handoff.salesforce")

#: The Task picklist holding the rep's outcome (``install_outcomes`` creates it).
OUTCOME_FIELD = "Handoff_Outcome__c"
#: Activity custom fields are defined on Activity in the Metadata API (Task and Event share them).
OUTCOME_METADATA = f"Activity.{OUTCOME_FIELD}"
COMPLETED = "Completed"
DESCRIPTION_LENGTH = 32_000
_TASK_FIELDS: tuple[str, ...] = ("Id", HANDOFF_FIELDS["task_key"], "Status", "IsClosed", "CompletedDateTime")
_TASK_FIELDS += ("OwnerId", "SystemModstamp", "IsDeleted")


def _id15(record_id: str) -> str:
    """The case-sensitive 15-character form of an Id (an 18-character Id adds a checksum)."""
    return record_id[:15]


def _by_ids(select: str, ids: Sequence[str], *before: Any) -> list[str]:
    """``select`` (its last placeholder an ``IN {}``; ``before``: the values of the others)
    per 200 ids."""
    return [format_soql(select, *before, list(part)) for part in chunked(ids, ID_CHUNK)]


def _records(
    conn: SalesforceConnector, group: str, statements: Sequence[str], deleted: bool
) -> Iterator[dict[str, Any]]:
    """Every record of the statements, first pages prefetched 5 a Composite call."""
    if len(statements) > 1:
        conn._prefetch(group, [conn._query_url(soql, deleted) for soql in statements])
    for soql in statements:
        yield from conn.query(soql, include_deleted=deleted)


#: Whether an org's Task has the outcome picklist, by instance URL: (monotonic time, answer).
_HAS_OUTCOME: dict[str, tuple[float, bool]] = {}
OUTCOME_FIELD_TTL = 3600.0  # seconds: a worker's every-minute check does not describe Task each time


def has_outcome_field(conn: SalesforceConnector) -> bool:
    """True when the org's Task has the outcome picklist: describe, read once per connector,
    and remembered for an hour per org in this process (``handoff install`` forgets it)."""
    key = str(conn.sf.base_url)
    seen = _HAS_OUTCOME.get(key)
    if seen is not None and time.monotonic() - seen[0] < OUTCOME_FIELD_TTL:
        return seen[1]
    found = any(f.get("name") == OUTCOME_FIELD for f in conn.describe("Task").get("fields", []))
    _HAS_OUTCOME[key] = (time.monotonic(), found)
    return found


def read_tasks(conn: SalesforceConnector, task_ids: Sequence[str]) -> list[TaskState]:
    """The Tasks' state, one per distinct id, in order. ``queryAll``: a Task in the Recycle
    Bin comes back with ``IsDeleted``; one purged (or never there) is ``deleted`` too."""
    ids = list(dict.fromkeys(str(i) for i in task_ids))
    fields = [*_TASK_FIELDS, OUTCOME_FIELD] if has_outcome_field(conn) else list(_TASK_FIELDS)
    statements = _by_ids(f"SELECT {', '.join(fields)} FROM Task WHERE Id IN {{}}", ids)
    found = {_id15(r["Id"]): r for r in _records(conn, "task_states", statements, deleted=True)}
    return [_state(i, found.get(_id15(i))) for i in ids]


def _state(task_id: str, rec: dict[str, Any] | None) -> TaskState:
    if rec is None:
        return TaskState(None, task_id, None, False, None, None, None, None, deleted=True)
    closed = rec.get("IsClosed") is True
    return TaskState(
        key=rec.get(HANDOFF_FIELDS["task_key"]) or None,
        task_id=task_id,
        status=rec.get("Status"),
        closed=closed,
        completed_at=parse_time(rec.get("CompletedDateTime")) if closed else None,
        outcome=rec.get(OUTCOME_FIELD) or None,
        owner_id=rec.get("OwnerId") or None,
        modified_at=parse_time(rec.get("SystemModstamp")),
        deleted=rec.get("IsDeleted") is True,
    )


def touches(conn: SalesforceConnector, person_ids: Sequence[str], since: datetime) -> Iterator[Touch]:
    """Calls and emails logged as Tasks (``TaskSubtype`` Call or Email; never crm-handoff's
    own Tasks) and Events whose ``WhoId`` is one of these leads or contacts, created at or
    after ``since``, by anyone (``owner_id`` says whose)."""
    ids = list(dict.fromkeys(str(i) for i in person_ids))
    if not ids:
        return
    tasks = _by_ids(
        "SELECT Id, WhoId, OwnerId, TaskSubtype, CreatedDate, CompletedDateTime FROM Task "
        "WHERE CreatedDate >= {} AND TaskSubtype IN ('Call', 'Email') "
        f"AND {HANDOFF_FIELDS['task_key']} = null AND WhoId IN {{}}",
        ids,
        since,
    )
    events = _by_ids(
        "SELECT Id, WhoId, OwnerId, CreatedDate, StartDateTime FROM Event WHERE CreatedDate >= {} AND WhoId IN {}",
        ids,
        since,
    )
    for rec in _records(conn, "touches", [*tasks, *events], deleted=False):
        yield _touch(rec, since)


def task_changes(conn: SalesforceConnector, since: datetime, owner_ids: Sequence[str]) -> TaskChanges:
    """Handoff Tasks modified at/after ``since`` (``queryAll``: deleted ones too; those
    created since then only when closed, deleted or given an outcome, so the Tasks
    crm-handoff just wrote are not read back), and the calls, emails and meetings these
    owners logged on a lead or contact since then: three statements, their first pages in
    one Composite call (an idle org: one API call).

    The outcome picklist is asked for without a describe first: an org without it (no
    ``handoff install``) answers ``INVALID_FIELD``, and the statements go again without it
    (remembered for an hour in this process)."""
    seen = _HAS_OUTCOME.get(str(conn.sf.base_url))
    hopeful = seen is None or seen[1] or time.monotonic() - seen[0] >= OUTCOME_FIELD_TTL
    if hopeful:
        try:
            return _task_changes(conn, since, owner_ids, with_outcome=True)
        except CrmError as exc:
            if OUTCOME_FIELD not in str(exc):
                raise
            _HAS_OUTCOME[str(conn.sf.base_url)] = (time.monotonic(), False)
    return _task_changes(conn, since, owner_ids, with_outcome=False)


def _task_changes(
    conn: SalesforceConnector, since: datetime, owner_ids: Sequence[str], with_outcome: bool
) -> TaskChanges:
    fields = [*_TASK_FIELDS, OUTCOME_FIELD] if with_outcome else list(_TASK_FIELDS)
    key = HANDOFF_FIELDS["task_key"]
    changed = f"SELECT {', '.join(fields)} FROM Task WHERE {key} != null AND SystemModstamp >= {{}} AND "
    picked = f" OR {OUTCOME_FIELD} != null" if OUTCOME_FIELD in fields else ""
    changed += f"(CreatedDate < {{}} OR IsClosed = true OR IsDeleted = true{picked})"  # not our own new ones
    statements = [format_soql(changed, since, since)]
    owners = sorted(set(owner_ids))
    if owners:
        statements += _by_ids(
            "SELECT Id, WhoId, OwnerId, TaskSubtype, CreatedDate, CompletedDateTime, IsDeleted FROM Task "
            f"WHERE CreatedDate >= {{}} AND TaskSubtype IN ('Call', 'Email') AND {key} = null "
            "AND WhoId != null AND OwnerId IN {}",
            owners,
            since,
        )
        statements += _by_ids(
            "SELECT Id, WhoId, OwnerId, CreatedDate, StartDateTime, IsDeleted FROM Event "
            "WHERE CreatedDate >= {} AND WhoId != null AND OwnerId IN {}",
            owners,
            since,
        )
    tasks: list[TaskState] = []
    found: list[Touch] = []
    for rec in _records(conn, "task_changes", statements, deleted=True):
        if rec.get(key) or "Status" in rec:
            tasks.append(_state(str(rec["Id"]), rec))
        elif rec.get("IsDeleted") is not True:
            found.append(_touch(rec, since))
    return TaskChanges(tasks, found)


def _touch(rec: dict[str, Any], since: datetime) -> Touch:
    event = (rec.get("attributes") or {}).get("type") == "Event"
    logged = parse_time(rec.get("CreatedDate")) or since
    own = parse_time(rec.get("StartDateTime") if event else rec.get("CompletedDateTime")) or logged
    kind: TouchKind = "meeting" if event else "email" if rec.get("TaskSubtype") == "Email" else "call"
    return Touch("salesforce", rec["Id"], rec["WhoId"], kind, rec.get("OwnerId") or None, min(own, logged))


def close_tasks(conn: SalesforceConnector, items: Sequence[TaskClose]) -> list[WriteResult]:
    """Close Tasks with a note appended to their Description, one result per item (key:
    task id). Idempotent: the Tasks are read first and only those still open are written
    (Collections update, ``allOrNone: false``); a closed Task is a success with
    ``created=False``, a deleted one a success with code ``DELETED``."""
    ids = list(dict.fromkeys(i.task_id for i in items))
    statements = _by_ids("SELECT Id, Status, IsClosed, Description FROM Task WHERE Id IN {}", ids)
    current = {_id15(r["Id"]): r for r in _records(conn, "task_close", statements, deleted=False)}
    out: dict[str, WriteResult] = {}
    records, keys = [], []
    for item in items:
        rec = current.get(_id15(item.task_id))
        if item.task_id in out or item.task_id in keys:
            continue
        if rec is None:
            out[item.task_id] = WriteResult(item.task_id, True, item.task_id, code="DELETED", created=False)
        elif rec.get("IsClosed") is True or rec.get("Status") == (item.status or COMPLETED):
            out[item.task_id] = WriteResult(item.task_id, True, rec["Id"], created=False)
        else:
            records.append(_close_record(rec, item))
            keys.append(item.task_id)
    for result in conn._collection("PATCH", "composite/sobjects", records, keys):
        out[result.key] = WriteResult(
            result.key, result.ok, result.crm_id, result.error, result.code, result.ok
        )
    return [out[i.task_id] for i in items]


def _close_record(rec: dict[str, Any], item: TaskClose) -> dict[str, Any]:
    body = str(rec.get("Description") or "")
    record: dict[str, Any] = {
        "attributes": {"type": "Task"},
        "id": rec["Id"],
        "Status": item.status or COMPLETED,
    }
    if item.note and not body.rstrip().endswith(item.note):
        note = _cut(item.note, DESCRIPTION_LENGTH)
        room = DESCRIPTION_LENGTH - len(note) - 2
        record["Description"] = f"{_cut(body, room)}\n\n{note}" if body and room > 0 else note
    if item.outcome is not None:
        record[OUTCOME_FIELD] = item.outcome
    return record


def install_outcomes(conn: SalesforceConnector, values: Sequence[tuple[str, str]]) -> list[str]:
    """Create the restricted Task picklist ``Handoff_Outcome__c`` with ``values`` (each
    (value, label)) through the Metadata API, or add the values and labels it lacks (values
    no longer listed are kept: Tasks may hold them). Idempotent: a second run changes
    nothing and makes no Metadata API call."""
    conn.forget_describe("Task")
    _HAS_OUTCOME.pop(str(conn.sf.base_url), None)
    field = next((f for f in conn.describe("Task").get("fields", []) if f.get("name") == OUTCOME_FIELD), None)
    existing = {
        str(p["value"]): str(p.get("label") or p["value"]) for p in (field or {}).get("picklistValues", [])
    }
    merged = {**existing, **dict(values)}
    if field is not None and merged == existing and field.get("restrictedPicklist"):
        return [f"Task.{OUTCOME_FIELD} present"]
    code = _save_picklist(conn, merged, update=field is not None)
    conn.forget_describe("Task")
    where = f"Setup > Object Manager > Activity > Fields & Relationships > {OUTCOME_FIELD}"
    if code is None and field is None:
        return [f"Task.{OUTCOME_FIELD} created with {len(merged)} values; give the integration user "
                f"read and edit access to it ({where} > Set Field-Level Security)"]  # fmt: skip
    if code is None:
        return [
            f"Task.{OUTCOME_FIELD} updated: {len(merged) - len(existing)} values added, {len(merged)} in all"
        ]
    listed = ", ".join(merged)
    return [f"MISSING Task.{OUTCOME_FIELD} ({code}): create it in Setup > Object Manager > Activity > Fields "
            f"as a restricted Picklist with the values {listed}"]  # fmt: skip


def _save_picklist(conn: SalesforceConnector, values: dict[str, str], update: bool) -> str | None:
    """createMetadata (or updateMetadata) of the outcome picklist: None on success, else
    Salesforce's code."""
    spec = {
        "fullName": OUTCOME_METADATA,
        "label": "Handoff Outcome",
        "type": "Picklist",
        "valueSet": {
            "restricted": True,
            "valueSetDefinition": {
                "sorted": False,
                "value": [{"fullName": v, "label": lab, "default": False} for v, lab in values.items()],
            },
        },
    }

    def save() -> None:
        api = _metadata_api(conn)
        op = api.CustomField.update if update else api.CustomField.create
        try:
            op([api.CustomField(**spec)])
        except requests.RequestException:
            raise  # retried by _call
        except Fault as exc:  # e.g. sf:INSUFFICIENT_ACCESS
            code = str(exc.code or "").rpartition(":")[2] or "SOAP_FAULT"
            if code == "INVALID_SESSION_ID":
                raise AuthError("salesforce", "INVALID_SESSION_ID (Metadata API)", 401) from None
            raise _MetadataRefused(code) from None
        except TransportError as exc:
            if exc.status_code in (429, 500, 502, 503, 504):
                raise RetriableCrmError("salesforce", "Metadata API unavailable", exc.status_code) from None
            raise _MetadataRefused(f"HTTP_{exc.status_code}", exc.status_code) from None
        except ZeepError as exc:
            raise _MetadataRefused(type(exc).__name__) from None
        except Exception as exc:  # simple-salesforce: "\nActivity.X__c: (STATUS_CODE, message), "
            raise _MetadataRefused(str(exc).partition("(")[2].partition(",")[0] or "FAILED") from None

    try:
        conn._call(save)
    except CrmError as exc:
        code = exc.code if isinstance(exc, _MetadataRefused) else type(exc).__name__
        log.warning("salesforce_field_not_saved", field=OUTCOME_METADATA, code=code)
        return code
    log.info("salesforce_field_saved", field=OUTCOME_METADATA, update=update)
    return None
