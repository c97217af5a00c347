"""The sales-ready definitions applied to one person: decided, explained, and what is missing (pure).

A person is scored by the fit and behaviour rules (points rank the queue) and decided by
the definitions (``sales_ready.yaml definitions``; none given: one "score at least
threshold"): sales-ready when any definition holds and no blocker (a required field
missing, an exclude rule, a stage not eligible) applies. Every definition's conditions
are checked, so the result names the definitions met or, when none is, the nearest one
and what it lacks ("1 more content download within 30 days").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from crm_handoff.records import Activity, Reason
from mappings.models import Condition, Definition, FieldCondition, FitRule, SalesReady

#: activity kinds as words: (one, several)
NOUNS: dict[str, tuple[str, str]] = {
    "form_fill": ("form fill", "form fills"),
    "content_download": ("content download", "content downloads"),
    "webinar_attended": ("webinar attended", "webinars attended"),
    "email_click": ("email click", "email clicks"),
    "page_view": ("page view", "page views"),
    "meeting": ("meeting", "meetings"),
    "call": ("call", "calls"),
    "note": ("note", "notes"),
}
SHOWN_VALUES = 3  # values of a field test named in a condition's text


@dataclass(frozen=True)
class ConditionCheck:
    """One condition of a definition, decided for one person."""

    condition: str  # what it asks: "3 x content download within 30 days"
    met: bool
    found: str  # what the person has: "2 x content download in 30 days"
    missing: str = ""  # what would make it hold (empty when it holds)
    progress: float = 0.0  # the share of the way there, 0 to 1 (1 when it holds)
    lapse: datetime | None = None  # a held activity condition: when it stops holding


@dataclass(frozen=True)
class DefinitionCheck:
    """One definition, decided for one person, condition by condition."""

    name: str
    conditions: tuple[ConditionCheck, ...]

    @property
    def met(self) -> bool:
        """Every condition holds."""
        return all(c.met for c in self.conditions)

    @property
    def missing(self) -> tuple[str, ...]:
        """What each condition that does not hold lacks."""
        return tuple(c.missing for c in self.conditions if not c.met)

    @property
    def found(self) -> str:
        """What made the conditions hold, in one line."""
        return "; ".join(c.found for c in self.conditions if c.met and c.found)

    def distance(self) -> tuple[int, int, float]:
        """Smaller is nearer: (conditions not holding, minus those holding, minus the mean
        progress of those not holding: activities counted so far)."""
        unmet = [c for c in self.conditions if not c.met]
        held = len(self.conditions) - len(unmet)
        return len(unmet), -held, -sum(c.progress for c in unmet) / max(len(unmet), 1)


@dataclass(frozen=True)
class Qualification:
    score: int
    qualified: bool
    reasons: tuple[Reason, ...]
    blockers: tuple[str, ...]  # why a person is not sales-ready despite a definition held
    valid_until: datetime | None = None  # the first moment a behaviour rule or condition that held stops
    definitions_met: tuple[str, ...] = ()  # the definitions that hold, in file order
    nearest: str | None = None  # when none holds: the definition nearest to holding
    missing: tuple[str, ...] = ()  # what the nearest definition lacks, condition by condition
    checks: tuple[DefinitionCheck, ...] = ()  # every definition, condition by condition

    @property
    def met_details(self) -> tuple[tuple[str, str], ...]:
        """(definition, what made it hold) for each definition met."""
        return tuple((c.name, c.found) for c in self.checks if c.met)

    @property
    def next_step(self) -> str:
        """What stands between this person and sales-ready, for nurture to aim at.

        ``NEAREST: what is missing`` (and any required field missing); empty when the person
        is sales-ready, excluded, or in a stage that is never sales-ready.
        """
        if self.qualified or any(not b.startswith("missing ") for b in self.blockers):
            return ""
        parts = [f"{self.nearest}: {'; '.join(self.missing)}"] if self.nearest else []
        fields = [b.removeprefix("missing ") for b in self.blockers]
        if fields:
            parts.append(f"{'also ' if parts else ''}missing {', '.join(fields)}")
        return "; ".join(parts)


def _number(value: str | None) -> float | None:
    try:
        return float(str(value).replace(",", "").strip())
    except (TypeError, ValueError):
        return None


_LOWERED: dict[tuple[int, str], tuple[object, tuple[str, ...]]] = {}


def _lowered(cond: FieldCondition | Condition, attr: str) -> tuple[str, ...]:
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
    """Score a person, decide them by the definitions, and say why (or what is missing)."""
    by_kind: dict[str, list[Activity]] = {}
    for act in activities:
        by_kind.setdefault(act.kind, []).append(act)
    reasons, fits, lapses = _points(rules, values, by_kind, now)
    score = sum(r.points for r in reasons)
    judge = _Judge(rules, values, by_kind, score, fits, {r.rule for r in reasons}, now)
    checks = tuple(judge.definition(d) for d in rules.effective_definitions)
    lapses += [c.lapse for d in checks for c in d.conditions if c.lapse is not None]
    blockers = _blockers(rules, values, stage)
    met = tuple(c.name for c in checks if c.met)
    nearest = None if met else min(enumerate(checks), key=lambda ic: (*ic[1].distance(), ic[0]))[1]
    return Qualification(
        score=score,
        qualified=bool(met) and not blockers,
        reasons=tuple(reasons),
        blockers=tuple(blockers),
        valid_until=min(lapses, default=None),
        definitions_met=met,
        nearest=nearest.name if nearest else None,
        missing=nearest.missing if nearest else (),
        checks=checks,
    )


def _points(
    rules: SalesReady,
    values: Mapping[str, str | None],
    by_kind: Mapping[str, Sequence[Activity]],
    now: datetime,
) -> tuple[list[Reason], dict[str, tuple[bool, str]], list[datetime]]:
    """The scoring rules that fire (reasons), every fit rule's result, and when each
    behaviour rule that fired stops firing."""
    reasons: list[Reason] = []
    fits: dict[str, tuple[bool, str]] = {}
    for rule in rules.fit:
        ok, detail = fits.setdefault(rule.name, matches(rule, values))
        if ok:
            reasons.append(Reason(rule.name, rule.points, detail))
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
    return reasons, fits, lapses


def _blockers(rules: SalesReady, values: Mapping[str, str | None], stage: str | None) -> list[str]:
    out = [f"missing {f}" for f in rules.required_fields if not (values.get(f) or "").strip()]
    for rule in rules.exclude:
        if matches(rule, values)[0]:
            out.append(f"excluded: {rule.name}")
    if stage not in rules.eligible_stages:
        out.append(f"stage {stage or 'unknown'} is not eligible")
    return out


@dataclass(frozen=True)
class _Judge:
    """Decides the conditions of definitions for one person."""

    rules: SalesReady
    values: Mapping[str, str | None]
    by_kind: Mapping[str, Sequence[Activity]]
    score: int
    fits: Mapping[str, tuple[bool, str]]
    fired: set[str]  # the scoring rules that gave points
    now: datetime

    def definition(self, d: Definition) -> DefinitionCheck:
        return DefinitionCheck(d.name, tuple(self.condition(c) for c in d.all_of))

    def condition(self, c: Condition) -> ConditionCheck:
        if c.activity is not None:
            return self._activity(c, c.activity, c.within_days or 1)
        if c.score_at_least is not None:
            needed = self.rules.threshold if c.score_at_least == "threshold" else c.score_at_least
            return self._score(needed)
        if c.fit is not None:
            return self._fit(c.fit)
        assert c.test is not None  # a field condition (the model allows no other kind)
        return self._field(c.test, describe(c.test), describe(c.test))

    def _fit(self, name: str) -> ConditionCheck:
        rule = next(r for r in self.rules.fit if r.name == name)
        return self._field(rule, name, f"{name} ({describe(rule)})")

    def _field(self, test: FieldCondition | FitRule, asks: str, lacks: str) -> ConditionCheck:
        known = self.fits.get(test.name) if isinstance(test, FitRule) else None
        ok, detail = known or matches(test, self.values)
        if ok:
            return ConditionCheck(asks, True, f"{asks} ({detail})" if detail != asks else asks, progress=1.0)
        value = (self.values.get(test.field) or "").strip()
        found = f"{test.field} '{value}'" if value else f"{test.field} blank"
        return ConditionCheck(asks, False, found, lacks)

    def _activity(self, c: Condition, kind: str, days: int) -> ConditionCheck:
        since = self.now - timedelta(days=days)
        titles = _lowered(c, "title_contains_any")
        hits = sorted(
            (
                a.occurred_at
                for a in self.by_kind.get(kind, ())
                if since <= a.occurred_at <= self.now
                and (not titles or any(t in a.title.lower() for t in titles))
            ),
            reverse=True,
        )
        one, many = NOUNS.get(kind, (kind.replace("_", " "),) * 2)
        titled = f" titled {' or '.join(repr(t) for t in c.title_contains_any or ())}" if titles else ""
        need = c.count
        asks = f"{need} x {one}{titled} within {days} days"
        found = f"{len(hits)} x {one}{titled} in {days} days"
        if len(hits) >= need:
            return ConditionCheck(
                asks, True, found, progress=1.0, lapse=hits[need - 1] + timedelta(days=days)
            )
        short = need - len(hits)
        lacks = f"{short} more {one if short == 1 else many}{titled} within {days} days"
        return ConditionCheck(asks, False, found, lacks, progress=len(hits) / need)

    def _score(self, needed: int) -> ConditionCheck:
        asks, found = f"score at least {needed}", f"score {self.score}"
        if self.score >= needed:
            return ConditionCheck(asks, True, found, progress=1.0)
        gap = needed - self.score
        lacks = f"{gap} more points (score {self.score} of {needed})"
        tips = [r for r in self.rules.behaviour if r.name not in self.fired and r.points >= gap]
        if tips:
            tip = min(tips, key=lambda r: r.points)
            lacks += f", e.g. {tip.name} (+{tip.points})"
        return ConditionCheck(asks, False, found, lacks)  # points are no step: no progress


def describe(test: FieldCondition) -> str:
    """A field test in words: ``title containing vp, director, head of (+2 more)``."""
    if test.present is not None:
        return f"{test.field} {'set' if test.present else 'blank'}"
    for attr, verb in (
        ("one_of", "one of"),
        ("contains_any", "containing"),
        ("ends_with_any", "ending with"),
    ):
        items: tuple[str, ...] | None = getattr(test, attr)
        if items is not None:
            more = len(items) - SHOWN_VALUES
            return f"{test.field} {verb} {', '.join(items[:SHOWN_VALUES])}" + (
                f" (+{more} more)" if more > 0 else ""
            )
    low, high = (f"{v:g}" if v is not None else None for v in (test.min, test.max))
    if low and high:
        return f"{test.field} {low} to {high}"
    return f"{test.field} at least {low}" if low else f"{test.field} at most {high}"
