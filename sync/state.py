"""The state store: watermarks, identity links, the handoff ledger, the nurture queue,
activities inside the scoring window, stage history and run history.

SQLAlchemy Core over any URL; a SQLite file by default. Every method is one short
transaction, so a crash leaves the store as of the last completed step.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from crm_handoff.records import Activity, Person, TaskRequest
from sync.items import QueueItem, Snapshot

metadata = MetaData()

watermarks = Table(
    "watermarks",
    metadata,
    Column("crm", String(20), primary_key=True),
    Column("stream", String(40), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

people = Table(  # the last pulled version of every person: merges never call a CRM
    "people",
    metadata,
    Column("crm", String(20), primary_key=True),
    Column("id", String(32), primary_key=True),
    Column("object_type", String(16), nullable=False),
    Column("email", String(320), index=True),
    Column("record", JSON, nullable=False),
    Column("modified_at", DateTime(timezone=True), nullable=False),
)

identities = Table(
    "identities",
    metadata,
    Column("person_key", String(64), primary_key=True),
    Column("hubspot_id", String(32), unique=True),
    Column("salesforce_id", String(32), unique=True),
    Column("salesforce_type", String(16)),
    Column("email", String(320), index=True),
)

field_values = Table(
    "field_values",
    metadata,
    Column("person_key", String(64), primary_key=True),
    Column("field", String(64), primary_key=True),
    Column("value", Text),
)

activities = Table(
    "activities",
    metadata,
    Column("crm", String(20), primary_key=True),
    Column("activity_id", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False, index=True),
    Column("person_id", String(32), index=True),
    Column("email", String(320), index=True),
    Column("title", String(500), nullable=False, default=""),
)

ledger = Table(
    "ledger",
    metadata,
    Column("key", String(80), primary_key=True),
    Column("crm", String(20), primary_key=True),
    Column("person_key", String(64), nullable=False, index=True),
    Column("episode", Integer, nullable=False),
    Column("rep_email", String(320), nullable=False, index=True),
    Column("week_start", Date, nullable=False),
    Column("status", String(16), nullable=False),  # intent | done | failed
    Column("task_id", String(64)),
    Column("score", Integer, nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("planned_at", DateTime(timezone=True), nullable=False),
    Column("confirmed_at", DateTime(timezone=True)),
    Column("error", Text),
    Column("run_id", Integer),
)

queue = Table(
    "queue",
    metadata,
    Column("person_key", String(64), primary_key=True),
    Column("score", Integer, nullable=False),
    Column("snapshot", JSON, nullable=False),
    Column("reason", Text, nullable=False),
    Column("status_written", Text),
    Column("queued_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("valid_until", DateTime(timezone=True), index=True),  # the snapshot's, queryable
    Index("ix_queue_order", "score", "queued_at", "person_key"),
)

to_evaluate = Table(  # people to evaluate again: new activity, lapsing scores (``sync.ingest``)
    "to_evaluate",
    metadata,
    Column("kind", String(20), primary_key=True),  # a CRM (ref: its record id), "email" or "key"
    Column("ref", String(320), primary_key=True),
    Column("marked_at", DateTime(timezone=True), nullable=False),
)

stage_history = Table(
    "stage_history",
    metadata,
    Column("person_key", String(64), primary_key=True),
    Column("stage", String(40), primary_key=True),
    Column("entered_at", DateTime(timezone=True), nullable=False),
)

current_stage = Table(
    "current_stage",
    metadata,
    Column("person_key", String(64), primary_key=True),
    Column("stage", String(40), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("status", String(16), nullable=False),  # running | ok | partial | failed | stopped
    Column("summary", JSON),
)

record_errors = Table(
    "record_errors",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, index=True),
    Column("crm", String(20), nullable=False),
    Column("record", String(120), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("resolved", Boolean, nullable=False, default=False),
    UniqueConstraint("run_id", "crm", "record", name="uq_record_error"),
)


def _utc(value: datetime | None) -> datetime | None:
    """SQLite drops tzinfo; everything in the store is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class Identity:
    person_key: str
    hubspot_id: str | None
    salesforce_id: str | None
    salesforce_type: str | None
    email: str | None


@dataclass(frozen=True)
class LedgerEntry:
    key: str
    crm: str
    person_key: str
    episode: int
    rep_email: str
    week_start: date
    status: str
    task_id: str | None
    score: int
    reasons: list[Any]
    planned_at: datetime
    error: str | None = None
    task: TaskRequest | None = None  # the task this entry writes (stored as its payload)


class StateStore:
    """Typed access to the state database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(url, future=True, connect_args=_connect_args(url))
        self._local = threading.local()  # the open batch's connection, per thread
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)

    @contextmanager
    def batch(self, lazy_sync: bool = False) -> Iterator[None]:
        """Every read and write of this thread inside the block shares one transaction,
        committed at the end of the block (one commit instead of one per method).
        Nested blocks join the outer one. Keep CRM calls out of a batch: it holds the
        database's write lock from its first write until it ends.

        ``lazy_sync``: the commit does not wait for the disk (SQLite ``synchronous=NORMAL``
        in WAL mode, PostgreSQL ``synchronous_commit=off``); a power loss may undo it,
        never a crash of the process. For writes a later ordinary commit covers, such as
        a chunk's mirror rows before its pull checkpoint: that commit makes the log
        durable up to and including them.
        """
        if getattr(self._local, "conn", None) is not None:
            yield
            return
        with self.engine.connect() as conn:
            dialect = conn.dialect.name
            restore = None
            if lazy_sync and dialect == "sqlite":
                restore = conn.exec_driver_sql("PRAGMA synchronous").scalar()
                conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
                conn.commit()
            try:
                with conn.begin():
                    if lazy_sync and dialect == "postgresql":
                        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                    self._local.conn = conn
                    try:
                        yield
                    finally:
                        self._local.conn = None
            finally:
                if restore is not None:
                    conn.exec_driver_sql(f"PRAGMA synchronous={int(restore)}")
                    conn.commit()

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        """A transaction: the batch's, when this thread is in one; else a new one."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        """A connection for reads: the batch's (it sees the batch's writes), else a new one."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        with self.engine.connect() as conn:
            yield conn

    def create_schema(self) -> None:
        """Create missing tables (idempotent)."""
        metadata.create_all(self.engine)

    def close(self) -> None:
        _stop_beats(self)
        self.engine.dispose()

    # --- watermarks ---------------------------------------------------------
    def watermark(self, crm: str, stream: str) -> str | None:
        with self._connect() as conn:
            row = conn.execute(
                select(watermarks.c.value).where(watermarks.c.crm == crm, watermarks.c.stream == stream)
            ).first()
        return row[0] if row else None

    def set_watermark(self, crm: str, stream: str, value: str) -> None:
        now = datetime.now(UTC)
        with self._begin() as conn:
            done = conn.execute(
                update(watermarks)
                .where(watermarks.c.crm == crm, watermarks.c.stream == stream)
                .values(value=value, updated_at=now)
            ).rowcount
            if not done:
                conn.execute(insert(watermarks).values(crm=crm, stream=stream, value=value, updated_at=now))

    # --- people mirror --------------------------------------------------------
    def save_people(self, items: Sequence[Person]) -> None:
        """Upsert the pulled version of each person (by CRM and id)."""
        if not items:
            return
        latest = {(p.crm, p.id): p for p in items}
        with self._begin() as conn:
            _upsert(conn, people, [_person_row(p) for p in latest.values()])

    def people_by_ids(self, crm: str, ids: Sequence[str]) -> list[Person]:
        out: list[Person] = []
        with self._connect() as conn:
            for part in _parts(sorted(set(ids))):
                rows = conn.execute(select(people).where(people.c.crm == crm, people.c.id.in_(part)))
                out += [_person_from_row(r) for r in rows]
        return out

    def people_ids(self, crm: str, object_type: str) -> set[str]:
        """Ids of every mirrored person of one CRM and object type."""
        with self._connect() as conn:
            rows = conn.execute(
                select(people.c.id).where(people.c.crm == crm, people.c.object_type == object_type)
            )
            return {r[0] for r in rows}

    def forget_people(self, crm: str, ids: Sequence[str]) -> None:
        with self._begin() as conn:
            for part in _parts(list(ids)):
                conn.execute(delete(people).where(people.c.crm == crm, people.c.id.in_(part)))

    # --- identities ---------------------------------------------------------
    def identities(self) -> list[Identity]:
        with self._connect() as conn:
            rows = conn.execute(select(identities)).all()
        return [Identity(*row) for row in rows]

    def identities_for(
        self, hubspot_ids: Sequence[str], salesforce_ids: Sequence[str], emails: Sequence[str]
    ) -> list[Identity]:
        """Identities matching any of the ids or emails."""
        found: dict[str, Identity] = {}
        with self._connect() as conn:
            for column, values in (
                (identities.c.hubspot_id, hubspot_ids),
                (identities.c.salesforce_id, salesforce_ids),
                (identities.c.email, [e.lower() for e in emails]),
            ):
                for part in _parts(sorted(set(values))):
                    for row in conn.execute(select(identities).where(column.in_(part))):
                        found[row.person_key] = Identity(*row)
        return list(found.values())

    def records_per_email(self, emails: Sequence[str]) -> dict[str, dict[str, int]]:
        """How many mirrored records of each CRM hold each email: email -> CRM -> count."""
        out: dict[str, dict[str, int]] = {}
        with self._connect() as conn:
            for part in _parts(sorted(set(emails))):
                rows = conn.execute(
                    select(people.c.email, people.c.crm, func.count())
                    .where(people.c.email.in_(part))
                    .group_by(people.c.email, people.c.crm)
                )
                for email, crm, n in rows:
                    out.setdefault(email, {})[crm] = int(n)
        return out

    def handed_off_by_email(self, emails: Sequence[str]) -> dict[str, str]:
        """email -> the person key (lowest, when several) a handoff was recorded for."""
        out: dict[str, str] = {}
        with self._connect() as conn:
            for part in _parts(sorted(set(emails))):
                rows = conn.execute(
                    select(identities.c.email, func.min(identities.c.person_key))
                    .join(ledger, ledger.c.person_key == identities.c.person_key)
                    .where(identities.c.email.in_(part), ledger.c.status != "failed")
                    .group_by(identities.c.email)
                )
                out.update({email: key for email, key in rows})
        return out

    def identities_by_key(self, keys: Sequence[str]) -> list[Identity]:
        with self._connect() as conn:
            rows: list[Any] = []
            for part in _parts(list(keys)):
                rows += conn.execute(select(identities).where(identities.c.person_key.in_(part))).all()
        return [Identity(*r) for r in rows]

    def merge_hubspot_ids(self, primary: str, merged: Sequence[str]) -> None:
        """HubSpot merged contacts into ``primary``: their person keeps its key and history.

        The first merged contact's identity moves to the primary id (unless the primary
        already has one); the merged contacts leave the mirror.
        """
        with self._begin() as conn:
            has = conn.execute(
                select(identities.c.person_key).where(identities.c.hubspot_id == primary)
            ).first()
            for mid in merged:
                row = conn.execute(
                    select(identities.c.person_key).where(identities.c.hubspot_id == mid)
                ).first()
                if row is None:
                    continue
                if has is None:
                    conn.execute(
                        update(identities).where(identities.c.person_key == row[0]).values(hubspot_id=primary)
                    )
                    has = row
                else:
                    conn.execute(
                        update(identities).where(identities.c.person_key == row[0]).values(hubspot_id=None)
                    )
            conn.execute(delete(people).where(people.c.crm == "hubspot", people.c.id.in_(list(merged))))

    def save_identities(self, items: Iterable[Identity]) -> None:
        """Insert or replace identity rows by person_key."""
        items = list(items)
        if not items:
            return
        with self._begin() as conn:
            _upsert(conn, identities, [i.__dict__ for i in items])

    # --- field values (last synced, for two-way rules) ---------------------
    def field_values(self, person_keys: Sequence[str]) -> dict[str, dict[str, str | None]]:
        out: dict[str, dict[str, str | None]] = {}
        with self._connect() as conn:
            for part in _parts(list(person_keys)):
                for key, field, value in conn.execute(
                    select(field_values).where(field_values.c.person_key.in_(part))
                ):
                    out.setdefault(key, {})[field] = value
        return out

    def save_field_values(self, values: dict[str, dict[str, str | None]]) -> None:
        if not values:
            return
        with self._begin() as conn:
            for part in _parts(list(values)):
                conn.execute(delete(field_values).where(field_values.c.person_key.in_(part)))
            rows = [
                {"person_key": k, "field": f, "value": v}
                for k, fields in values.items()
                for f, v in fields.items()
            ]
            if rows:
                conn.execute(insert(field_values), rows)

    # --- activities ---------------------------------------------------------
    def save_activities(self, items: Iterable[Activity]) -> int:
        """Store activities (idempotent by crm + id); returns how many were new."""
        new = 0
        with self._begin() as conn:
            for part in _parts(list(items), 500):
                ids = {(a.crm, a.id) for a in part}
                seen = {
                    (crm, aid)
                    for crm, aid in conn.execute(
                        select(activities.c.crm, activities.c.activity_id).where(
                            activities.c.activity_id.in_([i for _, i in ids])
                        )
                    )
                }
                rows = [
                    {
                        "crm": a.crm,
                        "activity_id": a.id,
                        "kind": a.kind,
                        "occurred_at": a.occurred_at,
                        "person_id": a.person_id,
                        "email": a.email.lower() if a.email else None,
                        "title": a.title[:500],
                    }
                    for a in {(a.crm, a.id): a for a in part}.values()
                    if (a.crm, a.id) not in seen
                ]
                if rows:
                    conn.execute(insert(activities), rows)
                    new += len(rows)
        return new

    def activities_for(
        self, person_ids: Sequence[str], emails: Sequence[str], since: datetime
    ) -> list[Activity]:
        """Activities since ``since`` of any of the person ids or emails (each once).

        Ids and emails are queried separately (an ``a OR b`` over two ``IN`` lists would
        pair every id part with every email part and read each row many times).
        """
        found: dict[tuple[str, str], Activity] = {}
        with self._connect() as conn:
            for column, values in (
                (activities.c.person_id, sorted(set(person_ids))),
                (activities.c.email, sorted({e.lower() for e in emails})),
            ):
                for part in _parts(values):
                    q = select(activities).where(activities.c.occurred_at >= since, column.in_(part))
                    for r in conn.execute(q):
                        if (r.crm, r.activity_id) in found:
                            continue
                        found[(r.crm, r.activity_id)] = Activity(
                            crm=r.crm,
                            id=r.activity_id,
                            kind=r.kind,
                            occurred_at=_utc(r.occurred_at) or since,
                            person_id=r.person_id,
                            email=r.email,
                            title=r.title,
                        )
        return list(found.values())

    def prune_activities(self, before: datetime) -> None:
        with self._begin() as conn:
            conn.execute(delete(activities).where(activities.c.occurred_at < before))

    # --- ledger -------------------------------------------------------------
    def ledger_for_people(self, person_keys: Sequence[str]) -> list[LedgerEntry]:
        with self._connect() as conn:
            rows: list[Any] = []
            for part in _parts(list(person_keys)):
                rows += conn.execute(select(ledger).where(ledger.c.person_key.in_(part))).all()
        return [_entry(r) for r in rows]

    def open_intents(self) -> list[LedgerEntry]:
        with self._connect() as conn:
            rows = conn.execute(select(ledger).where(ledger.c.status == "intent")).all()
        return [_entry(r) for r in rows]

    def used_capacity(self, weeks: dict[str, date]) -> dict[str, int]:
        """Handoffs (any status but failed) per rep email in that rep's current week."""
        out: dict[str, int] = {}
        with self._connect() as conn:
            for email, week in weeks.items():
                count = conn.execute(
                    select(func.count(func.distinct(ledger.c.key))).where(
                        ledger.c.rep_email == email,
                        ledger.c.week_start == week,
                        ledger.c.status != "failed",
                    )
                ).scalar_one()
                out[email] = int(count)
        return out

    def record_intents(self, entries: Sequence[LedgerEntry], run_id: int | None) -> None:
        """Record handoffs about to be written, before any CRM write (idempotent).

        One transaction: entries an earlier, interrupted run already recorded are left
        as they are; the others are inserted together (row by row if a concurrent
        writer got there first).
        """
        rows = {
            (e.key, e.crm): {
                "key": e.key,
                "crm": e.crm,
                "person_key": e.person_key,
                "episode": e.episode,
                "rep_email": e.rep_email,
                "week_start": e.week_start,
                "status": "intent",
                "score": e.score,
                "reasons": e.reasons,
                "payload": _task_payload(e.task),
                "planned_at": e.planned_at,
                "run_id": run_id,
            }
            for e in entries
        }
        if not rows:
            return
        with self._begin() as conn:
            for part in _parts(sorted({k for k, _ in rows})):
                for key, crm in conn.execute(
                    select(ledger.c.key, ledger.c.crm).where(ledger.c.key.in_(part))
                ):
                    rows.pop((key, crm), None)
            if not rows:
                return
            try:
                with conn.begin_nested():
                    conn.execute(insert(ledger), list(rows.values()))
            except IntegrityError:
                for row in rows.values():
                    try:
                        with conn.begin_nested():
                            conn.execute(insert(ledger).values(**row))
                    except IntegrityError:
                        pass  # already recorded

    def confirm(self, key: str, crm: str, task_id: str, at: datetime) -> None:
        self.confirm_many([(key, crm, task_id)], at)

    def confirm_many(self, done: Sequence[tuple[str, str, str]], at: datetime) -> None:
        """Mark ``(key, crm, task_id)`` handoffs done, in one transaction."""
        if not done:
            return
        stmt = (
            update(ledger)
            .where(ledger.c.key == bindparam("b_key"), ledger.c.crm == bindparam("b_crm"))
            .values(status="done", task_id=bindparam("b_task"), confirmed_at=at, error=None)
        )
        with self._begin() as conn:
            conn.execute(stmt, [{"b_key": k, "b_crm": c, "b_task": t} for k, c, t in done])

    def fail(self, key: str, crm: str, error: str) -> None:
        with self._begin() as conn:
            conn.execute(
                update(ledger)
                .where(ledger.c.key == key, ledger.c.crm == crm)
                .values(status="failed", error=error)
            )

    def ledger_entries(self, limit: int | None = None) -> list[LedgerEntry]:
        with self._connect() as conn:
            q = select(ledger).order_by(ledger.c.planned_at.desc())
            if limit:
                q = q.limit(limit)
            return [_entry(r) for r in conn.execute(q)]

    # --- queue (overflow kept in nurture) ----------------------------------
    def queued(self) -> list[dict[str, Any]]:
        with self._connect() as conn:
            rows = conn.execute(select(queue).order_by(queue.c.score.desc(), queue.c.queued_at)).all()
        return [dict(r._mapping) for r in rows]

    def queued_keys(self, person_keys: Sequence[str]) -> set[str]:
        """Which of these people are on the queue."""
        out: set[str] = set()
        with self._connect() as conn:
            for part in _parts(sorted(set(person_keys))):
                out |= set(
                    conn.execute(select(queue.c.person_key).where(queue.c.person_key.in_(part))).scalars()
                )
        return out

    def queue_items(self, keys: Sequence[str]) -> dict[str, QueueItem]:
        """The queue items of these people (those on the queue)."""
        out: dict[str, QueueItem] = {}
        with self._connect() as conn:
            for part in _parts(sorted(set(keys))):
                for r in conn.execute(select(queue).where(queue.c.person_key.in_(part))):
                    out[r.person_key] = _queue_item(r)
        return out

    def queue_pages(self, size: int = 2000) -> Iterator[list[QueueItem]]:
        """The whole queue in its order (highest score, then longest waiting), a page at a
        time (keyset paging on the order index), so memory stays flat at any size."""
        after: tuple[int, datetime, str] | None = None
        order = (queue.c.score.desc(), queue.c.queued_at, queue.c.person_key)
        while True:
            q = select(queue).order_by(*order).limit(size)
            if after is not None:
                score, at, key = after
                q = q.where(
                    or_(
                        queue.c.score < score,
                        and_(queue.c.score == score, queue.c.queued_at > at),
                        and_(queue.c.score == score, queue.c.queued_at == at, queue.c.person_key > key),
                    )
                )
            with self._connect() as conn:
                rows = conn.execute(q).all()
            if not rows:
                return
            last = rows[-1]
            after = (last.score, last.queued_at, last.person_key)
            yield [_queue_item(r) for r in rows]

    def lapsing_keys(self, by: datetime) -> list[str]:
        """Queued people whose qualifying behaviour leaves its window by ``by``."""
        with self._connect() as conn:
            return list(
                conn.execute(
                    select(queue.c.person_key).where(queue.c.valid_until <= by).order_by(queue.c.person_key)
                ).scalars()
            )

    def enqueue_many(self, items: Sequence[QueueItem]) -> None:
        """Queue (or refresh the score and snapshot of) sales-ready people, in one transaction.

        A person already queued keeps their reason, ``queued_at`` and shown status.
        """
        latest = {item.person_key: item for item in items}
        if not latest:
            return
        with self._begin() as conn:
            have: set[str] = set()
            for part in _parts(sorted(latest)):
                have |= set(
                    conn.execute(select(queue.c.person_key).where(queue.c.person_key.in_(part))).scalars()
                )
            old = [latest[k] for k in latest if k in have]
            new = [latest[k] for k in latest if k not in have]
            if old:
                conn.execute(
                    update(queue)
                    .where(queue.c.person_key == bindparam("b_key"))
                    .values(
                        score=bindparam("b_score"),
                        snapshot=bindparam("b_snap"),
                        valid_until=bindparam("b_until"),
                        updated_at=bindparam("b_at"),
                    ),
                    [
                        {
                            "b_key": i.person_key,
                            "b_score": i.score,
                            "b_snap": i.snapshot.to_json(),
                            "b_until": i.snapshot.valid_until,
                            "b_at": i.queued_at,
                        }
                        for i in old
                    ],
                )
            if new:
                conn.execute(insert(queue), [_queue_row(i) for i in new])

    def mark_shown(self, items: Sequence[QueueItem]) -> None:
        """Remember the waiting status shown in the CRMs (and why), so it is written once."""
        if not items:
            return
        with self._begin() as conn:
            conn.execute(
                update(queue)
                .where(queue.c.person_key == bindparam("b_key"))
                .values(status_written=bindparam("b_status"), reason=bindparam("b_reason")),
                [{"b_key": i.person_key, "b_status": i.status_written, "b_reason": i.reason} for i in items],
            )

    # --- people to evaluate again -------------------------------------------
    def mark(self, refs: Iterable[tuple[str, str]], at: datetime) -> None:
        """Mark people for evaluation by (kind, ref): a CRM and its record id, ("email",
        address) or ("key", person key). Marking twice is marking once."""
        rows = [{"kind": k, "ref": r, "marked_at": at} for k, r in sorted(set(refs))]
        if not rows:
            return
        with self._begin() as conn:
            for part in _parts(rows):
                _insert_new(conn, to_evaluate, part)

    def marked(self, limit: int) -> list[tuple[str, str]]:
        """Up to ``limit`` marks, in (kind, ref) order."""
        with self._connect() as conn:
            q = select(to_evaluate.c.kind, to_evaluate.c.ref).order_by(to_evaluate.c.kind, to_evaluate.c.ref)
            return [(k, r) for k, r in conn.execute(q.limit(limit))]

    def unmark(self, refs: Iterable[tuple[str, str]]) -> None:
        """These people are evaluated: their marks go."""
        by_kind: dict[str, list[str]] = {}
        for kind, ref in set(refs):
            by_kind.setdefault(kind, []).append(ref)
        if not by_kind:
            return
        with self._begin() as conn:
            for kind, values in sorted(by_kind.items()):
                for part in _parts(sorted(values)):
                    conn.execute(
                        delete(to_evaluate).where(to_evaluate.c.kind == kind, to_evaluate.c.ref.in_(part))
                    )

    def dequeue(self, person_keys: Sequence[str]) -> None:
        with self._begin() as conn:
            for part in _parts(list(person_keys)):
                conn.execute(delete(queue).where(queue.c.person_key.in_(part)))

    # --- stages ---------------------------------------------------------------
    def record_stages(
        self, stages: dict[str, str], at: datetime, entered: Mapping[str, datetime] | None = None
    ) -> None:
        """Remember each person's current stage and, the first time they are seen in it, an
        entry into it: at ``entered`` where the CRM says when (HubSpot's stage-date
        property), else ``at``. Only the stage seen is recorded: never earlier stages."""
        if not stages:
            return
        with self._begin() as conn:
            keys = list(stages)
            seen: set[tuple[str, str]] = set()
            for part in _parts(keys):
                seen |= {
                    (k, s)
                    for k, s in conn.execute(
                        select(stage_history.c.person_key, stage_history.c.stage).where(
                            stage_history.c.person_key.in_(part)
                        )
                    )
                }
            new = [
                {"person_key": k, "stage": s, "entered_at": (entered or {}).get(k, at)}
                for k, s in stages.items()
                if (k, s) not in seen
            ]
            if new:
                conn.execute(insert(stage_history), new)
            _upsert(
                conn,
                current_stage,
                [{"person_key": k, "stage": s, "updated_at": at} for k, s in stages.items()],
            )

    def current_stages(self) -> dict[str, int]:
        with self._connect() as conn:
            rows = conn.execute(
                select(current_stage.c.stage, func.count()).group_by(current_stage.c.stage)
            ).all()
        return {stage: int(n) for stage, n in rows}

    def stage_entries(self) -> dict[str, int]:
        """Stage -> how many people have a recorded entry into it (one GROUP BY)."""
        with self._connect() as conn:
            rows = conn.execute(
                select(stage_history.c.stage, func.count()).group_by(stage_history.c.stage)
            ).all()
        return {stage: int(n) for stage, n in rows}

    def stage_conversions(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """``(a, b)`` -> how many people have recorded entries into both ``a`` and ``b``, ``b``
        entered at or after ``a`` (one self-join on the history, grouped: no per-person rows)."""
        if not pairs:
            return {}
        a, b = stage_history.alias("a"), stage_history.alias("b")
        query = (
            select(a.c.stage, b.c.stage, func.count())
            .select_from(a.join(b, and_(a.c.person_key == b.c.person_key, b.c.entered_at >= a.c.entered_at)))
            .where(or_(*(and_(a.c.stage == x, b.c.stage == y) for x, y in pairs)))
            .group_by(a.c.stage, b.c.stage)
        )
        with self._connect() as conn:
            found = {(x, y): int(n) for x, y, n in conn.execute(query)}
        return {pair: found.get(pair, 0) for pair in pairs}

    # --- runs and errors -----------------------------------------------------
    def start_run(self, at: datetime) -> int:
        """Record a new run as 'running', owned by this process (``_RunBeat`` shows it alive);
        first, runs left 'running' by a process that ended (kill -9, a crash) are marked
        failed (``INTERRUPTED``). Another live process's run is never marked."""
        self.fail_running_runs(INTERRUPTED, datetime.now(UTC))
        owner = {**_this_process(), "beat": datetime.now(UTC).isoformat()}
        with self._begin() as conn:
            result = conn.execute(
                insert(runs).values(started_at=at, status="running", summary={"owner": owner})
            )
            run_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        _RunBeat(self, run_id, owner)
        return run_id

    def finish_run(self, run_id: int, status: str, summary: dict[str, Any], at: datetime) -> None:
        with self._begin() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(status=status, summary=json.loads(json.dumps(summary, default=str)), finished_at=at)
            )
        _RunBeat.end(self.url, run_id)

    def recent_runs(self, limit: int = 10) -> list[dict[str, Any]]:
        with self._connect() as conn:
            rows = conn.execute(select(runs).order_by(runs.c.id.desc()).limit(limit)).all()
        return [dict(r._mapping) for r in rows]

    def record_error(self, run_id: int | None, crm: str, record: str, reason: str, at: datetime) -> None:
        with self._begin() as conn:
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(record_errors).values(
                            run_id=run_id, crm=crm, record=record, reason=reason[:2000], at=at, resolved=False
                        )
                    )
            except IntegrityError:
                pass

    def open_errors(self, limit: int = 50) -> list[dict[str, Any]]:
        """Record errors of the latest run that had any."""
        with self._connect() as conn:
            last = conn.execute(select(func.max(record_errors.c.run_id))).scalar()
            if last is None:
                return []
            rows = conn.execute(
                select(record_errors)
                .where(and_(record_errors.c.run_id == last))
                .order_by(record_errors.c.id)
                .limit(limit)
            ).all()
        return [dict(r._mapping) for r in rows]

    # --- worker runs: skipped and failed jobs ---------------------------------
    def record_run(self, status: str, summary: dict[str, Any], at: datetime) -> int:
        """A finished run row written by the worker (a skipped or failed job, with its reason)."""
        clean = json.loads(json.dumps(summary, default=str))
        with self._begin() as conn:
            result = conn.execute(
                insert(runs).values(started_at=at, finished_at=at, status=status, summary=clean)
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def annotate_run(self, run_id: int, extra: dict[str, Any]) -> None:
        """Merge ``extra`` (job name, worker, run id) into a run's summary."""
        with self._begin() as conn:
            summary = conn.execute(select(runs.c.summary).where(runs.c.id == run_id)).scalar()
            merged = {**(summary or {}), **json.loads(json.dumps(extra, default=str))}
            conn.execute(update(runs).where(runs.c.id == run_id).values(summary=merged))

    def last_run_id(self) -> int:
        with self._connect() as conn:
            return int(conn.execute(select(func.max(runs.c.id))).scalar() or 0)

    def fail_running_runs(self, reason: str, at: datetime, after_id: int = 0) -> int:
        """Mark runs still 'running' (id > after_id) whose process is gone as failed with
        ``reason`` (``_run_alive``: a run of another live process or thread is left alone);
        how many."""
        me, wall = _this_process(), datetime.now(UTC)
        with self._begin() as conn:
            rows = conn.execute(
                select(runs.c.id, runs.c.started_at, runs.c.summary).where(
                    runs.c.status == "running", runs.c.id > after_id
                )
            ).all()
            dead = [r for r in rows if not _run_alive(self.url, r.id, r.started_at, r.summary, me, wall)]
            for run_id, _, summary in dead:
                conn.execute(
                    update(runs)
                    .where(runs.c.id == run_id, runs.c.status == "running")
                    .values(status="failed", finished_at=at, summary={**(summary or {}), "reason": reason})
                )
        for run_id, _, _ in dead:
            _RunBeat.end(self.url, run_id)
        return len(dead)

    def runs_by_status(
        self, statuses: Sequence[str], limit: int = 10, exclude: bool = False
    ) -> list[dict[str, Any]]:
        """Recent runs whose status is (or, with ``exclude``, is not) one of ``statuses``."""
        cond = runs.c.status.not_in(statuses) if exclude else runs.c.status.in_(statuses)
        with self._connect() as conn:
            rows = conn.execute(select(runs).where(cond).order_by(runs.c.id.desc()).limit(limit)).all()
        return [dict(r._mapping) for r in rows]

    def prune_runs(self, status: str, before: datetime) -> None:
        """Forget runs of ``status`` (e.g. skipped) started before ``before``."""
        with self._begin() as conn:
            conn.execute(delete(runs).where(runs.c.status == status, runs.c.started_at < before))


INTERRUPTED = "interrupted: the process ended before the run finished"
RUN_BEAT_SECONDS = 30.0  # how often a running run's process says it is alive
RUN_SILENT_SECONDS = 300.0  # a run on another machine silent this long is dead


class _RunBeat:
    """The running runs of this process: each touches its row every ``RUN_BEAT_SECONDS``
    (a daemon thread) until it finishes, so other machines can tell it is alive."""

    active: dict[tuple[str, int], _RunBeat] = {}
    lock = threading.Lock()

    def __init__(self, store: StateStore, run_id: int, owner: dict[str, Any]) -> None:
        self.store, self.thread, self.stop = store, threading.get_ident(), threading.Event()
        with self.lock:
            self.active[(store.url, run_id)] = self
        if store.engine.url.database not in (None, "", ":memory:"):  # others can see the row
            threading.Thread(
                target=self._beat, args=(run_id, owner), name=f"run-{run_id}-beat", daemon=True
            ).start()

    def _beat(self, run_id: int, owner: dict[str, Any]) -> None:
        while not self.stop.wait(RUN_BEAT_SECONDS):
            beat = {"owner": {**owner, "beat": datetime.now(UTC).isoformat()}}
            try:
                with self.store.engine.begin() as conn:
                    touched = conn.execute(
                        update(runs)
                        .where(runs.c.id == run_id, runs.c.status == "running")
                        .values(summary=beat)
                    ).rowcount
            except Exception:  # a busy or unreachable database: the next beat tries again
                continue
            if not touched:
                return

    @classmethod
    def end(cls, url: str, run_id: int) -> None:
        with cls.lock:
            beat = cls.active.pop((url, run_id), None)
        if beat is not None:
            beat.stop.set()

    @classmethod
    def running_elsewhere(cls, url: str, run_id: int) -> bool | None:
        """Whether this process runs ``run_id`` on a thread other than the caller's (the
        caller's own earlier run is over: a thread runs one cycle at a time); None: not ours."""
        with cls.lock:
            beat = cls.active.get((url, run_id))
        return None if beat is None else beat.thread != threading.get_ident()


def _stop_beats(store: StateStore) -> None:
    with _RunBeat.lock:
        for beat in _RunBeat.active.values():
            if beat.store is store:
                beat.stop.set()


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _proc_stat(pid: int) -> tuple[str, str]:
    """(state, start time in ticks since boot) of process ``pid`` from /proc; '' unknown."""
    fields = _read(f"/proc/{pid}/stat").rsplit(")", 1)[-1].split()
    return (fields[0], fields[19]) if len(fields) > 19 else ("", "")


def _this_process() -> dict[str, Any]:
    """Who runs a run: the machine (host, boot, pid namespace), the pid and its start time."""
    try:
        ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        ns = ""
    machine = f"{socket.gethostname()}|{_read('/proc/sys/kernel/random/boot_id')}|{ns}"
    return {"machine": machine, "pid": os.getpid(), "since": _proc_stat(os.getpid())[1]}


def _pid_alive(pid: int, since: str) -> bool:
    """Whether process ``pid`` (started at ``since``, if known) still runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, run by another user
    state, started = _proc_stat(pid)
    return state not in ("Z", "X") and (not since or not started or started == since)


def _run_alive(
    url: str, run_id: int, started_at: datetime, summary: Any, me: dict[str, Any], now: datetime
) -> bool:
    """Whether a 'running' run's process may still be running it: this process's runs by its
    registry; another process on this machine by its pid; another machine's by its beat."""
    owner = (summary or {}).get("owner") if isinstance(summary, dict) else None
    if not isinstance(owner, dict):  # recorded before runs had owners: by its age
        return now - (_utc(started_at) or now) < timedelta(seconds=RUN_SILENT_SECONDS)
    here = _RunBeat.running_elsewhere(url, run_id)
    if here is not None:
        return here
    if owner.get("machine") == me["machine"] and os.name == "posix":
        if owner.get("pid") == me["pid"] and owner.get("since") == me["since"]:
            return False  # this process, no longer running it: its cycle ended unfinished
        return _pid_alive(int(owner.get("pid") or 0), str(owner.get("since") or ""))
    try:
        beat = _utc(datetime.fromisoformat(str(owner.get("beat"))))
    except ValueError:
        return False
    return beat is not None and now - beat < timedelta(seconds=RUN_SILENT_SECONDS)


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


#: seconds a PostgreSQL connection attempt may take: a host that drops packets gives up then
CONNECT_TIMEOUT = 10


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
