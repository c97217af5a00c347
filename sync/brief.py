"""The brief a rep reads on the handoff task: why, recent activity, content to use (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from mappings.models import ContentAsset, Handoff
from mappings.templates import render
from sync.qualify import Reason
from sync.records import Activity

SUBJECT_MAX = 255
BODY_MAX = 32_000


@dataclass(frozen=True)
class Brief:
    subject: str
    body: str
    due: date


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
    library: Sequence[ContentAsset], activities: Sequence[Activity], stage: str | None
) -> list[ContentAsset]:
    """Assets whose topics appear in recent activity titles; else those for the stage."""
    titles = " ".join(a.title.lower() for a in activities)
    by_topic = [a for a in library if any(t.lower() in titles for t in a.topics)]
    if by_topic:
        return by_topic[:3]
    return [a for a in library if stage in a.stages][:2]


def person_view(values: Mapping[str, str | None], stage: str | None) -> dict[str, object]:
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


def build_brief(
    cfg: Handoff,
    threshold: int,
    values: Mapping[str, str | None],
    stage: str | None,
    score: int,
    reasons: Sequence[Reason],
    activities: Sequence[Activity],
    rep: Mapping[str, str],
    now: datetime,
) -> Brief:
    """Render the task subject and body from the mapping's templates."""
    recent = sorted(activities, key=lambda a: a.occurred_at, reverse=True)[: cfg.recent_activity_limit]
    due = due_date(now, cfg.due_in_days, cfg.business_days)
    context = {
        "person": person_view(values, stage),
        "rep": dict(rep),
        "score": score,
        "threshold": threshold,
        "reasons": [{"rule": r.rule, "points": r.points, "detail": r.detail} for r in reasons],
        "activities": [
            {"kind": a.kind.replace("_", " "), "title": a.title, "when": a.occurred_at.date().isoformat()}
            for a in recent
        ],
        "content": [{"title": c.title, "url": c.url} for c in recommend(cfg.content_library, recent, stage)],
        "due": due.isoformat(),
    }
    subject = " ".join(render(cfg.subject, **context).split())[:SUBJECT_MAX]
    body = render(cfg.body, **context).strip()[:BODY_MAX]
    return Brief(subject=subject, body=body, due=due)
