"""A changed mapping re-evaluates everyone: the trigger for people whose data did not change.

A cycle evaluates the people whose records or activity changed (``sync.ingest``). When
the mapping files change what evaluation decides (``sales_ready.yaml``,
``lifecycle.yaml``, ``fields.yaml``, the outcomes of ``handoff.yaml``), a person who did
not change may now be decided otherwise: a lowered threshold makes them sales-ready. So
the first cycle under such a mapping *marks every mirrored person* for evaluation (the
uniform trigger of ``to_evaluate``), then remembers the mapping's evaluation fingerprint
(watermark ``mapping_evaluated``). The marks are durable: a crash before they are all
evaluated leaves them for the next run. A state without the watermark (a first cycle,
whose full pass evaluates everyone) only records it. ``reps.yaml`` is left out: routing
reads the whole queue every cycle anyway. Also ``people_pages``: the whole mirror in
keyset pages (flat memory), for this and for ``handoff simulate``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

from sqlalchemy import and_, or_, select

from crm_handoff.records import Person
from mappings.models import MappingSet
from sync import queue
from sync.context import CHUNK, CycleContext
from sync.engine import Engine
from sync.state import StateStore, people
from sync.state.rows import _person_from_row

STREAM = "mapping_evaluated"
WATERMARK_CRM = "handoff"  # the watermark is the state's own, not a CRM's


def evaluation_fingerprint(mapping: MappingSet) -> str:
    """A short hash of what decides evaluation (not routing, not the task's text)."""
    parts = {
        "sales_ready": mapping.sales_ready.model_dump(mode="json"),
        "lifecycle": mapping.lifecycle.model_dump(mode="json"),
        "fields": mapping.fields.model_dump(mode="json"),
        "outcomes": mapping.handoff.outcomes.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def people_pages(state: StateStore, size: int = CHUNK) -> Iterator[list[Person]]:
    """Every mirrored record, a page at a time in (CRM, id) order (keyset paging)."""
    after: tuple[str, str] | None = None
    while True:
        q = select(people).order_by(people.c.crm, people.c.id).limit(size)
        if after is not None:
            q = q.where(or_(people.c.crm > after[0], and_(people.c.crm == after[0], people.c.id > after[1])))
        with state.engine.connect() as conn:
            rows = conn.execute(q).all()
        if not rows:
            return
        after = (rows[-1].crm, rows[-1].id)
        yield [_person_from_row(r) for r in rows]


def mark_on_mapping_change(engine: Engine, ctx: CycleContext) -> int:
    """Mark every mirrored person when the evaluation fingerprint changed; how many were
    marked (0: unchanged, or a first cycle). A dry run marks in memory and remembers nothing."""
    state = engine.state
    mark = evaluation_fingerprint(engine.mapping)
    seen = state.watermark(WATERMARK_CRM, STREAM)
    if seen == mark:
        return 0
    marked = 0
    if seen is not None:
        for page in people_pages(state, 5 * CHUNK):
            queue.mark(state, ctx, [(p.crm, p.id) for p in page])
            marked += len(page)
    if not ctx.dry_run:
        state.set_watermark(WATERMARK_CRM, STREAM, mark)  # after the marks: a crash marks again
    return marked
