"""Row conversions and SQL helpers shared by the state store's parts."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    Table,
)

from crm_handoff.records import Person, TaskRequest
from sync.items import QueueItem, Snapshot
from sync.state.types import LedgerEntry

#: seconds a PostgreSQL connection attempt may take: a host that drops packets gives up then
CONNECT_TIMEOUT = 10


def _utc(value: datetime | None) -> datetime | None:
    """SQLite drops tzinfo; everything in the store is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _person_row(p: Person) -> dict[str, Any]:
    record = {
        "values": dict(p.values),
        "owner_id": p.owner_id,
        "linked_id": p.linked_id,
        "converted_to": p.converted_to,
        "opportunity_stage": p.opportunity_stage,
    }
    return {
        "crm": p.crm,
        "id": p.id,
        "object_type": p.object_type,
        "email": p.email.lower() if p.email else None,
        "record": record,
        "modified_at": p.modified_at,
    }


def _person_from_row(r: Any) -> Person:
    rec = dict(r.record or {})
    return Person(
        crm=r.crm,
        id=r.id,
        object_type=r.object_type,
        email=r.email,
        values=rec.get("values") or {},
        modified_at=_utc(r.modified_at) or datetime.now(UTC),
        owner_id=rec.get("owner_id"),
        linked_id=rec.get("linked_id"),
        converted_to=rec.get("converted_to"),
        opportunity_stage=rec.get("opportunity_stage"),
    )


def _entry(r: Any) -> LedgerEntry:
    return LedgerEntry(
        key=r.key,
        crm=r.crm,
        person_key=r.person_key,
        episode=r.episode,
        rep_email=r.rep_email,
        week_start=r.week_start,
        status=r.status,
        task_id=r.task_id,
        score=r.score,
        reasons=list(r.reasons or []),
        planned_at=_utc(r.planned_at) or datetime.now(UTC),
        error=r.error,
        task=_task_request(r.key, r.payload),
    )


def _task_payload(task: TaskRequest | None) -> dict[str, Any]:
    if task is None:
        return {}
    return {
        "person_id": task.person_id,
        "person_type": task.person_type,
        "owner_id": task.owner_id,
        "subject": task.subject,
        "body": task.body,
        "due": task.due.isoformat(),
        "priority": task.priority,
    }


def _content_payload(content: tuple[tuple[str, int, str], ...]) -> dict[str, Any]:
    """The assets a handoff's brief recommends, beside its task in the payload (none: no key)."""
    if not content:
        return {}
    return {"content": [{"id": i, "version": v, "url": u} for i, v, u in content]}


def _task_request(key: str, payload: Mapping[str, Any] | None) -> TaskRequest | None:
    p = payload or {}
    if not p.get("person_id"):
        return None
    return TaskRequest(
        key=key,
        person_id=p["person_id"],
        person_type=p["person_type"],
        owner_id=p["owner_id"],
        subject=p["subject"],
        body=p["body"],
        due=date.fromisoformat(p["due"]),
        priority=p["priority"],
    )


def _upsert(conn: Any, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows``, replacing those whose primary key exists (one statement a row,
    no delete first: SQLite and PostgreSQL both have ``ON CONFLICT ... DO UPDATE``)."""
    if not rows:
        return
    from sqlalchemy.dialects import postgresql, sqlite

    dialect_insert: Any = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = dialect_insert(table)
    keys = [c.name for c in table.primary_key.columns]
    stmt = stmt.on_conflict_do_update(
        index_elements=keys, set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
    )
    conn.execute(stmt, rows)


def _insert_new(conn: Any, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows``, skipping those whose primary key exists (``ON CONFLICT DO NOTHING``)."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect_insert: Any = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(dialect_insert(table).on_conflict_do_nothing(), rows)


def _queue_item(r: Any) -> QueueItem:
    return QueueItem(
        person_key=r.person_key,
        score=int(r.score),
        snapshot=Snapshot.from_json(r.snapshot),
        queued_at=_utc(r.queued_at) or datetime.min.replace(tzinfo=UTC),
        reason=r.reason,
        status_written=r.status_written,
    )


def _queue_row(i: QueueItem) -> dict[str, Any]:
    return {
        "person_key": i.person_key,
        "score": i.score,
        "snapshot": i.snapshot.to_json(),
        "reason": i.reason,
        "valid_until": i.snapshot.valid_until,
        "queued_at": i.queued_at,
        "updated_at": i.queued_at,
    }


def _parts(items: list[Any], size: int = 500) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _connect_args(url: str) -> dict[str, Any]:
    """Driver options: a bounded connect on PostgreSQL (unless the URL sets its own)."""
    if url.startswith("postgresql") and "connect_timeout" not in url:
        return {"connect_timeout": CONNECT_TIMEOUT}
    return {}


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def sqlite_url(path: str) -> str:
    """SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{path}"
