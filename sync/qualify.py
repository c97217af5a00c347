"""The sales-ready definition applied to one person: an explainable score (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from crm_handoff.records import Activity, Reason
from mappings.models import FieldCondition, SalesReady


@dataclass(frozen=True)
class Qualification:
    score: int
    qualified: bool
    reasons: tuple[Reason, ...]
    blockers: tuple[str, ...]  # why a person is not sales-ready despite the score
    valid_until: datetime | None = None  # the first moment a behaviour rule that fired stops firing


def _number(value: str | None) -> float | None:
    try:
        return float(str(value).replace(",", "").strip())
    except (TypeError, ValueError):
        return None


_LOWERED: dict[tuple[int, str], tuple[FieldCondition, tuple[str, ...]]] = {}


def _lowered(cond: FieldCondition, attr: str) -> tuple[str, ...]:
    """A condition's list, lower-cased once (conditions are scored against every person)."""
    hit = _LOWERED.get((id(cond), attr))
    if hit is None or hit[0] is not cond:
        hit = _LOWERED[(id(cond), attr)] = (cond, tuple(v.lower() for v in getattr(cond, attr) or ()))
    return hit[1]


def matches(cond: FieldCondition, values: Mapping[str, str | None]) -> tuple[bool, str]:
    """Does ``cond`` hold for these canonical values? Returns (holds, detail)."""
    raw = values.get(cond.field)
    text = (raw or "").strip()
    low = text.lower()
    if cond.present is not None:
        return (bool(text) == cond.present, f"{cond.field} {'set' if text else 'blank'}")
    if not text:
        return False, ""
    if cond.one_of is not None:
        return low in _lowered(cond, "one_of"), f"{cond.field} = {text}"
    if cond.contains_any is not None:
        return any(v in low for v in _lowered(cond, "contains_any")), f"{cond.field} '{text}'"
    if cond.ends_with_any is not None:
        return low.endswith(_lowered(cond, "ends_with_any")), f"{cond.field} {text}"
    number = _number(text)
    if number is None:
        return False, ""
    ok = (cond.min is None or number >= cond.min) and (cond.max is None or number <= cond.max)
    return ok, f"{cond.field} = {text}"


def qualify(
    rules: SalesReady,
    values: Mapping[str, str | None],
    stage: str | None,
    activities: Sequence[Activity],
    now: datetime,
) -> Qualification:
    """Score a person against the sales-ready rules and say why."""
    reasons: list[Reason] = []
    for rule in rules.fit:
        ok, detail = matches(rule, values)
        if ok:
            reasons.append(Reason(rule.name, rule.points, detail))
    by_kind: dict[str, list[Activity]] = {}
    for act in activities:
        by_kind.setdefault(act.kind, []).append(act)
    lapses: list[datetime] = []
    for brule in rules.behaviour:
        since = now - timedelta(days=brule.within_days)
        hits = sorted(
            (a.occurred_at for a in by_kind.get(brule.activity, ()) if since <= a.occurred_at <= now),
            reverse=True,
        )
        if len(hits) >= brule.at_least:
            what = brule.activity.replace("_", " ")
            reasons.append(
                Reason(brule.name, brule.points, f"{len(hits)} x {what} in {brule.within_days} days")
            )
            lapses.append(hits[brule.at_least - 1] + timedelta(days=brule.within_days))
    score = sum(r.points for r in reasons)
    blockers = _blockers(rules, values, stage)
    qualified = score >= rules.threshold and not blockers
    return Qualification(score, qualified, tuple(reasons), tuple(blockers), min(lapses, default=None))


def _blockers(rules: SalesReady, values: Mapping[str, str | None], stage: str | None) -> list[str]:
    out = [f"missing {f}" for f in rules.required_fields if not (values.get(f) or "").strip()]
    for rule in rules.exclude:
        if matches(rule, values)[0]:
            out.append(f"excluded: {rule.name}")
    if stage not in rules.eligible_stages:
        out.append(f"stage {stage or 'unknown'} is not eligible")
    return out
