"""The queue of sales-ready people, and the marks of people to evaluate again."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    delete,
    insert,
    or_,
    select,
    update,
)

from sync.items import QueueItem
from sync.state.base import _Store
from sync.state.rows import (
    _insert_new,
    _parts,
    _queue_item,
    _queue_row,
)
from sync.state.tables import (
    queue,
    to_evaluate,
)


class QueueStore(_Store):
    """The queue of sales-ready people, and the marks of people to evaluate again."""

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
