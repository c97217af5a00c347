"""What the handoff templates see: the person, the rep, why, recent activity, content (pure).

``brief_context`` builds the variables the subject/body templates are rendered with;
``sample_contexts`` builds samples with the same code, so ``handoff validate`` checks the
templates against exactly what a run will give them. Content is chosen here too
(``recommend``), from the mapping's content library.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from crm_handoff.records import ACTIVITY_KINDS, Activity, Reason
from mappings.content import pick, recommend_ungated
from mappings.models import Content, ContentAsset, Handoff, MappingSet, Rep

SAMPLE_NOW = datetime(2024, 3, 4, 9, 0, tzinfo=UTC)


def due_date(start: datetime, days: int, business_days: bool) -> date:
    """``days`` (business) days after ``start``."""
    day = start.date()
    added = 0
    while added < days:
        day += timedelta(days=1)
        if not business_days or day.weekday() < 5:
            added += 1
    return day


def recommend(
    library: Sequence[ContentAsset],
    activities: Sequence[Activity],
    stage: str | None,
    industry: str | None = None,
) -> list[ContentAsset]:
    """Assets whose topics appear in recent activity titles; else those for the stage.

    A topic matches as a whole word or phrase, case-insensitively ("roi" is not in
    "Android"); an asset that names industries serves only people in one of them; a
    retired, superseded or consumed asset is never recommended (``mappings.content``).
    """
    return recommend_ungated(library, activities, stage, industry)


def person_view(values: Mapping[str, str | None], stage: str | None) -> dict[str, object]:
    """What templates see as ``person``."""
    name = " ".join(v for v in (values.get("first_name"), values.get("last_name")) if v)
    return {
        "name": name or values.get("email") or "(no name)",
        "email": values.get("email") or "",
        "title": values.get("title") or "",
        "company": values.get("company") or "",
        "country": values.get("country") or "",
        "stage": stage or "",
        "fields": dict(values),
    }


def rep_view(rep: Rep) -> dict[str, str]:
    """What templates see as ``rep``."""
    return {"name": rep.name, "email": rep.email}


def brief_context(
    cfg: Handoff,
    threshold: int,
    values: Mapping[str, str | None],
    stage: str | None,
    score: int,
    reasons: Sequence[Reason],
    activities: Sequence[Activity],
    rep: Mapping[str, str],
    now: datetime,
) -> dict[str, Any]:
    """The variables the subject and body templates are rendered with."""
    recent = sorted(activities, key=lambda a: a.occurred_at, reverse=True)[: cfg.recent_activity_limit]
    return {
        "person": person_view(values, stage),
        "rep": dict(rep),
        "score": score,
        "threshold": threshold,
        "reasons": [{"rule": r.rule, "points": r.points, "detail": r.detail} for r in reasons],
        "activities": [
            {"kind": a.kind.replace("_", " "), "title": a.title, "when": a.occurred_at.date().isoformat()}
            for a in recent
        ],
        "content": [
            {"title": c.title, "url": c.url, "id": c.key, "version": c.version, "gate": c.gate or ""}
            for c in pick(cfg, activities, recent, stage, values.get("industry"))
        ],
        "due": due_date(now, cfg.due_in_days, cfg.business_days).isoformat(),
    }


def sample_contexts(m: MappingSet) -> list[dict[str, Any]]:
    """Two template contexts for ``m``: every value set and list filled, then all empty."""
    sample_asset = ContentAsset(
        title="Sample asset", url="https://example.invalid/asset", topics=("sample",), gate="sample"
    )
    full_cfg = m.handoff.model_copy(
        update={
            "content_library": (sample_asset,),
            "content": None
            if m.handoff.content is None
            else Content(gates=("sample",), assets=(sample_asset,)),
            "recent_activity_limit": max(m.handoff.recent_activity_limit, 1),
        }
    )
    sr = m.sales_ready
    rules = [(r.name, r.points) for r in sr.fit] + [(r.name, r.points) for r in sr.behaviour]
    activities = [
        Activity(crm="hubspot", id=f"sample-{i}", kind=kind, occurred_at=SAMPLE_NOW, title=f"Sample {kind}")
        for i, kind in enumerate(ACTIVITY_KINDS)
    ]
    stage = next(iter(sr.eligible_stages), m.lifecycle.funnel[0])
    rep = rep_view(m.reps.reps[0])
    threshold = sr.threshold
    fields = sorted(m.canonical_fields())
    full = brief_context(
        full_cfg,
        threshold,
        {f: f"sample {f}" for f in fields},
        stage,
        threshold,
        [Reason(rule, points, "sample detail") for rule, points in rules or [("Sample rule", 1)]],
        activities,
        rep,
        SAMPLE_NOW,
    )
    bare = m.handoff.model_copy(update={"content_library": (), "content": None})  # no asset to recommend
    empty = brief_context(bare, threshold, dict.fromkeys(fields), None, 0, [], [], rep, SAMPLE_NOW)
    return [full, empty]
