"""The queue of sales-ready people and the marks of people to evaluate, as the stages see
them: in the state, or (dry run) in the cycle's memory on top of the state."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from more_itertools import chunked

from sync.context import CycleContext
from sync.items import QueueItem
from sync.state import StateStore

PAGE = 2000  # queue items read together


def items(state: StateStore, ctx: CycleContext, keys: Sequence[str]) -> dict[str, QueueItem]:
    """The queue items of these people (the dry run's changes included)."""
    out = state.queue_items(keys)
    for key in keys:
        if key in ctx.queue_overlay:
            item = ctx.queue_overlay[key]
            if item is None:
                out.pop(key, None)
            else:
                out[key] = item
    return out


def pages(state: StateStore, ctx: CycleContext) -> Iterator[list[QueueItem]]:
    """The whole queue in its order, a page at a time (a dry run's: in memory, merged)."""
    if not ctx.queue_overlay:
        yield from state.queue_pages(PAGE)
        return
    merged = {i.person_key: i for page in state.queue_pages(PAGE) for i in page}
    for key, item in ctx.queue_overlay.items():
        if item is None:
            merged.pop(key, None)
        else:
            merged[key] = item
    for page in chunked(sorted(merged.values(), key=QueueItem.order), PAGE):
        yield list(page)


def put(state: StateStore, ctx: CycleContext, new: Sequence[QueueItem]) -> None:
    """Queue these people (or refresh their score and snapshot), in one transaction."""
    if ctx.dry_run:
        have = items(state, ctx, [i.person_key for i in new])
        for item in new:
            old = have.get(item.person_key)
            ctx.queue_overlay[item.person_key] = (
                item if old is None else QueueItem(item.person_key, item.score, item.snapshot, old.queued_at)
            )
    else:
        state.enqueue_many(new)


def drop(state: StateStore, ctx: CycleContext, keys: Sequence[str]) -> None:
    """These people leave the queue."""
    if ctx.dry_run:
        ctx.queue_overlay.update(dict.fromkeys(keys))
    elif keys:
        state.dequeue(keys)


def mark(state: StateStore, ctx: CycleContext, refs: Iterable[tuple[str, str]]) -> None:
    """Mark people for evaluation (durably; a dry run: in memory)."""
    if ctx.dry_run:
        ctx.marks.update(refs)
    else:
        state.mark(refs, ctx.now)


def marked(state: StateStore, ctx: CycleContext, limit: int) -> list[tuple[str, str]]:
    """Up to ``limit`` people marked for evaluation."""
    if ctx.dry_run:
        return sorted(ctx.marks)[:limit]
    return state.marked(limit)


def unmark(state: StateStore, ctx: CycleContext, refs: Iterable[tuple[str, str]]) -> None:
    """These people are evaluated."""
    if ctx.dry_run:
        ctx.marks.difference_update(refs)
    else:
        state.unmark(refs)
