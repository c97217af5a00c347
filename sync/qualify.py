"""The sales-ready definitions applied to one person: decided, explained, and what is missing (pure).

A person is scored by the fit and behaviour rules (points rank the queue) and decided by
the definitions (``sales_ready.yaml definitions``; none given: one "score at least
threshold"): sales-ready when any definition holds and no blocker (a required field
missing, an exclude rule, a stage not eligible) applies. Every definition's conditions
are checked, so the result names the definitions met or, when none is, the nearest one
and what it lacks ("1 more content download within 30 days").
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property

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


Words = tuple[str, str, str]  # (what a condition asks, what the person has, what they lack)


def _no_words() -> Words:
    return ("", "", "")


@dataclass(frozen=True)
class ConditionCheck:
    """One condition of a definition, decided for one person; its words are made when read."""

    met: bool
    progress: float = 0.0  # the share of the way there, 0 to 1 (1 when it holds)
    lapse: datetime | None = None  # a held activity condition: when it stops holding
    words: Callable[[], Words] = field(default=_no_words, repr=False, compare=False)

    @cached_property
    def _words(self) -> Words:
        return self.words()

    @property
    def condition(self) -> str:
        """What it asks: ``3 x content download within 30 days``."""
        return self._words[0]

    @property
    def found(self) -> str:
        """What the person has: ``2 x content download in 30 days``."""
        return self._words[1]

    @property
    def missing(self) -> str:
        """What would make it hold (empty when it holds)."""
        return "" if self.met else self._words[2]


@dataclass(frozen=True)
class DefinitionCheck:
    """One definition, decided for one person, condition by condition."""

    name: str
    conditions: tuple[ConditionCheck, ...]
    met: bool  # every condition holds

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
    met_details: tuple[tuple[str, str], ...] = ()  # (definition, what made it hold) for each met

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
    return judge(rules, values, stage, activities, now)[0]


def judge(
    rules: SalesReady,
    values: Mapping[str, str | None],
    stage: str | None,
    activities: Sequence[Activity],
    now: datetime,
) -> tuple[Qualification, tuple[DefinitionCheck, ...]]:
    """``qualify``, and every definition's check condition by condition (``handoff explain``).

    The checks are not kept on the ``Qualification``: a cycle holds many of those.
    """
    timeline = _Timeline(activities, now)
    reasons, fits, lapses = _points(rules, values, timeline)
    score = sum(r.points for r in reasons)
    judge = _Judge(rules, values, timeline, score, fits, {r.rule for r in reasons})
    checks = tuple(judge.definition(d) for d in rules.effective_definitions)
    lapses += [c.lapse for d in checks for c in d.conditions if c.lapse is not None]
    blockers = _blockers(rules, values, stage)
    met = tuple(c.name for c in checks if c.met)
    nearest = None if met else min(enumerate(checks), key=lambda ic: (*ic[1].distance(), ic[0]))[1]
    q = Qualification(
        score=score,
        qualified=bool(met) and not blockers,
        reasons=tuple(reasons),
        blockers=tuple(blockers),
        valid_until=min(lapses, default=None),
        definitions_met=met,
        nearest=nearest.name if nearest else None,
        missing=nearest.missing if nearest else (),
        met_details=tuple((c.name, c.found) for c in checks if c.met),
    )
    return q, checks


class _Timeline:
    """A person's activities up to ``now``, by kind, oldest first: windows are counted by bisection."""

    def __init__(self, activities: Sequence[Activity], now: datetime) -> None:
        self.now = now
        self.by_kind: dict[str, list[Activity]] = {}
        self.times: dict[str, list[datetime]] = {}
        for act in activities:
            if act.occurred_at <= now:
                self.by_kind.setdefault(act.kind, []).append(act)
                self.times.setdefault(act.kind, []).append(act.occurred_at)
        for times in self.times.values():
            times.sort()

    def count(self, kind: str, days: int, need: int) -> tuple[int, datetime | None]:
        """Activities of ``kind`` in the last ``days`` days, and (when at least ``need``) when
        the count falls below ``need`` (the ``need``-th newest leaves the window)."""
        times = self.times.get(kind)
        if not times:
            return 0, None
        n = len(times) - bisect_left(times, self.now - timedelta(days=days))
        return n, (times[len(times) - need] + timedelta(days=days) if n >= need else None)

    def count_titled(
        self, kind: str, days: int, need: int, titles: tuple[str, ...]
    ) -> tuple[int, datetime | None]:
        """``count`` of only the activities whose title contains one of ``titles`` (lower case)."""
        since = self.now - timedelta(days=days)
        times = sorted(
            a.occurred_at
            for a in self.by_kind.get(kind, ())
            if a.occurred_at >= since and any(t in a.title.lower() for t in titles)
        )
        n = len(times)
        return n, (times[n - need] + timedelta(days=days) if n >= need else None)


def _points(
    rules: SalesReady, values: Mapping[str, str | None], timeline: _Timeline
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
        n, lapse = timeline.count(brule.activity, brule.within_days, brule.at_least)
        if lapse is not None:
            what = brule.activity.replace("_", " ")
            reasons.append(Reason(brule.name, brule.points, f"{n} x {what} in {brule.within_days} days"))
            lapses.append(lapse)
    return reasons, fits, lapses


def _blockers(rules: SalesReady, values: Mapping[str, str | None], stage: str | None) -> list[str]:
    out = [f"missing {f}" for f in rules.required_fields if not (values.get(f) or "").strip()]
    for rule in rules.exclude:
        if matches(rule, values)[0]:
            out.append(f"excluded: {rule.name}")
    if stage not in rules.eligible_stages:
        out.append(f"stage {stage or 'unknown'} is not eligible")
    return out


_FIT_RULES: dict[int, tuple[SalesReady, dict[str, FitRule]]] = {}


def _fit_rule(rules: SalesReady, name: str) -> FitRule:
    """The fit rule of that name (a definition's ``fit:`` names one; the loader checks it)."""
    hit = _FIT_RULES.get(id(rules))
    if hit is None or hit[0] is not rules:
        hit = _FIT_RULES[id(rules)] = (rules, {r.name: r for r in rules.fit})
    return hit[1][name]


@dataclass(frozen=True)
class _Judge:
    """Decides the conditions of definitions for one person (their words only when read)."""

    rules: SalesReady
    values: Mapping[str, str | None]
    timeline: _Timeline
    score: int
    fits: Mapping[str, tuple[bool, str]]
    fired: set[str]  # the scoring rules that gave points

    def definition(self, d: Definition) -> DefinitionCheck:
        conditions = tuple(self.condition(c) for c in d.all_of)
        return DefinitionCheck(d.name, conditions, all(c.met for c in conditions))

    def condition(self, c: Condition) -> ConditionCheck:
        if c.activity is not None:
            return self._activity(c, c.activity, c.within_days or 1)
        if c.score_at_least is not None:
            needed = self.rules.threshold if c.score_at_least == "threshold" else c.score_at_least
            return self._score(needed)
        if c.fit is not None:
            rule = _fit_rule(self.rules, c.fit)
            return self._field(rule, self.fits.get(rule.name) or matches(rule, self.values))
        assert c.test is not None  # a field condition (the model allows no other kind)
        return self._field(c.test, matches(c.test, self.values))

    def _field(self, test: FieldCondition, result: tuple[bool, str]) -> ConditionCheck:
        ok, detail = result

        def words() -> Words:
            asks = test.name if isinstance(test, FitRule) else describe(test)
            lacks = f"{asks} ({describe(test)})" if isinstance(test, FitRule) else asks
            if ok:
                return asks, f"{asks} ({detail})" if detail != asks else asks, ""
            value = (self.values.get(test.field) or "").strip()
            return asks, f"{test.field} '{value}'" if value else f"{test.field} blank", lacks

        return ConditionCheck(ok, 1.0 if ok else 0.0, None, words)

    def _activity(self, c: Condition, kind: str, days: int) -> ConditionCheck:
        titles = _lowered(c, "title_contains_any")
        need = c.count
        if titles:
            n, lapse = self.timeline.count_titled(kind, days, need, titles)
        else:
            n, lapse = self.timeline.count(kind, days, need)

        def words() -> Words:
            one, many = NOUNS.get(kind, (kind.replace("_", " "),) * 2)
            titled = f" titled {' or '.join(repr(t) for t in c.title_contains_any or ())}" if titles else ""
            short = need - n
            lacks = f"{short} more {one if short == 1 else many}{titled} within {days} days"
            return f"{need} x {one}{titled} within {days} days", f"{n} x {one}{titled} in {days} days", lacks

        return ConditionCheck(lapse is not None, min(n / need, 1.0), lapse, words)

    def _score(self, needed: int) -> ConditionCheck:
        def words() -> Words:
            gap = needed - self.score
            lacks = f"{gap} more points (score {self.score} of {needed})"
            tips = [r for r in self.rules.behaviour if r.name not in self.fired and r.points >= gap]
            if tips:
                tip = min(tips, key=lambda r: r.points)
                lacks += f", e.g. {tip.name} (+{tip.points})"
            return f"score at least {needed}", f"score {self.score}", lacks

        ok = self.score >= needed
        return ConditionCheck(ok, 1.0 if ok else 0.0, None, words)  # points are no step: no progress


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
