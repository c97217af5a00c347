"""Frozen, validated models of the mapping files a revops admin edits.

One model per file (``lifecycle``, ``fields``, ``sales_ready``, ``reps``, ``handoff``)
and ``MappingSet`` for the whole set with the checks that span files.
"""

from __future__ import annotations

import math
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from crm_handoff.records import ACTIVITY_KINDS
from mappings.availability import Availability, Schedule, schedule
from mappings.notify import Notify
from mappings.outcomes import Outcomes, Sla

FORMAT_VERSION = 1


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Versioned(Frozen):
    version: Literal[1] = Field(1, description="File format version")


# --- lifecycle ---------------------------------------------------------------


class HubSpotStageMatch(Frozen):
    lifecyclestage: tuple[str, ...] = ()
    lead_status: tuple[str, ...] = ()


class SalesforceStageMatch(Frozen):
    lead_status: tuple[str, ...] = ()
    opportunity_stage: tuple[str, ...] = ()


class StageDef(Frozen):
    label: str | None = None
    hubspot: HubSpotStageMatch = HubSpotStageMatch()
    salesforce: SalesforceStageMatch = SalesforceStageMatch()


class HubSpotStageWrite(Frozen):
    lifecyclestage: str | None = None
    lead_status: str | None = None


class SalesforceStageWrite(Frozen):
    lead_status: str | None = None


class StageWrite(Frozen):
    hubspot: HubSpotStageWrite = HubSpotStageWrite()
    salesforce: SalesforceStageWrite = SalesforceStageWrite()


class Lifecycle(Versioned):
    funnel: tuple[str, ...] = Field(min_length=2)
    side_stages: tuple[str, ...] = ()
    stages: dict[str, StageDef]
    write: dict[str, StageWrite] = {}
    allow_backward: tuple[tuple[str, str], ...] = ()
    salesforce_contact_default: str = "sql"

    @model_validator(mode="after")
    def _known_stages(self) -> Lifecycle:
        known = set(self.funnel) | set(self.side_stages)
        if len(known) != len(self.funnel) + len(self.side_stages):
            raise ValueError("a stage is listed twice in funnel/side_stages")
        for where, names in (
            ("stages", list(self.stages)),
            ("write", list(self.write)),
            ("allow_backward", [s for pair in self.allow_backward for s in pair]),
            ("salesforce_contact_default", [self.salesforce_contact_default]),
        ):
            for name in names:
                if name not in known:
                    raise ValueError(f"unknown stage {name!r} in {where}; expected one of {sorted(known)}")
        missing = known - set(self.stages)
        if missing:
            raise ValueError(f"stages has no entry for {sorted(missing)}")
        return self

    @property
    def all_stages(self) -> tuple[str, ...]:
        return self.funnel + self.side_stages


# --- fields ------------------------------------------------------------------


class SyncRule(StrEnum):
    PREFER_SALESFORCE_UNLESS_BLANK = "prefer_salesforce_unless_blank"
    ALWAYS_SALESFORCE = "always_salesforce"
    ALWAYS_HUBSPOT = "always_hubspot"
    TWO_WAY = "two_way"
    DONT_SYNC = "dont_sync"


class SalesforceFieldNames(Frozen):
    lead: str | None = None
    contact: str | None = None


class FieldMapping(Frozen):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    hubspot: str | None = None
    salesforce: SalesforceFieldNames | None = None
    rule: SyncRule = SyncRule.DONT_SYNC
    value_map: dict[str, str] = Field({}, description="HubSpot value -> Salesforce value")

    @field_validator("salesforce", mode="before")
    @classmethod
    def _same_name_both(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"lead": value, "contact": value}
        return value

    def salesforce_name(self, object_type: str) -> str | None:
        if self.salesforce is None:
            return None
        return self.salesforce.lead if object_type == "lead" else self.salesforce.contact

    def to_salesforce(self, value: str | None) -> str | None:
        return self.value_map.get(value, value) if value is not None else None

    def to_hubspot(self, value: str | None) -> str | None:
        if value is None:
            return None
        reverse = {v: k for k, v in self.value_map.items()}
        return reverse.get(value, value)


class FieldMappings(Versioned):
    fields: tuple[FieldMapping, ...]

    @field_validator("fields")
    @classmethod
    def _unique(cls, fields: tuple[FieldMapping, ...]) -> tuple[FieldMapping, ...]:
        names = [f.name for f in fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"field names must be unique; repeated: {dupes}")
        return fields

    def by_name(self) -> dict[str, FieldMapping]:
        return {f.name: f for f in self.fields}


# --- sales-ready -------------------------------------------------------------


class FieldCondition(Frozen):
    """A test on one canonical field; exactly one kind of test is given."""

    field: str
    one_of: tuple[str, ...] | None = None
    contains_any: tuple[str, ...] | None = None
    ends_with_any: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    present: bool | None = None

    @model_validator(mode="after")
    def _one_test(self) -> FieldCondition:
        kinds = [
            self.one_of is not None,
            self.contains_any is not None,
            self.ends_with_any is not None,
            self.min is not None or self.max is not None,
            self.present is not None,
        ]
        if sum(kinds) != 1:
            raise ValueError("give exactly one test: one_of, contains_any, ends_with_any, min/max or present")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is greater than max")
        return self


class FitRule(FieldCondition):
    name: str
    points: int


class BehaviourRule(Frozen):
    name: str
    activity: str
    at_least: int = Field(1, ge=1)
    within_days: int = Field(ge=1, le=3650)
    points: int

    @field_validator("activity")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in ACTIVITY_KINDS:
            raise ValueError(f"unknown activity {value!r}; expected one of {list(ACTIVITY_KINDS)}")
        return value


class ExcludeRule(FieldCondition):
    name: str


_FIELD_TESTS = ("one_of", "contains_any", "ends_with_any", "min", "max", "present")
_BEHAVIOUR_KEYS = ("at_least", "within_days", "title_contains_any")


class Condition(Frozen):
    """One condition of a definition; exactly one kind is given.

    ``fit: NAME`` (a fit rule of this file holds), ``field:`` with one test (as a fit rule),
    ``activity:`` with ``at_least`` / ``within_days`` (and optionally ``title_contains_any``:
    only activities whose title contains one of these, any case), or ``score_at_least: N``
    (``threshold``: the file's threshold).
    """

    fit: str | None = None
    field: str | None = None
    one_of: tuple[str, ...] | None = None
    contains_any: tuple[str, ...] | None = None
    ends_with_any: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    present: bool | None = None
    activity: str | None = None
    at_least: int | None = Field(None, ge=1)
    within_days: int | None = Field(None, ge=1, le=3650)
    title_contains_any: tuple[Annotated[str, Field(min_length=1)], ...] | None = Field(None, min_length=1)
    score_at_least: int | Literal["threshold"] | None = None
    _test: FieldCondition | None = PrivateAttr(None)

    @field_validator("score_at_least", mode="before")
    @classmethod
    def _points(cls, value: Any) -> Any:
        if value is None or value == "threshold":
            return value
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"expected points (a whole number, 1 or more) or threshold; got {value!r}")
        return value

    @field_validator("activity")
    @classmethod
    def _known_kind(cls, value: str | None) -> str | None:
        if value is not None and value not in ACTIVITY_KINDS:
            raise ValueError(f"unknown activity {value!r}; expected one of {list(ACTIVITY_KINDS)}")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Condition:
        given = self._given(("fit", "field", "activity", "score_at_least"))
        tests, behaviour = self._given(_FIELD_TESTS), self._given(_BEHAVIOUR_KEYS)
        _kind_problem(
            given, [("field", tests, "is a test on a field"), ("activity", behaviour, "counts activities")]
        )
        if self.activity is not None and self.within_days is None:
            raise ValueError("an activity condition needs within_days (1 to 3650)")
        if self.field is not None:
            self._test = _field_test(self.field, {k: getattr(self, k) for k in tests})
        return self

    def _given(self, keys: tuple[str, ...]) -> list[str]:
        return [k for k in keys if getattr(self, k) is not None]

    @property
    def test(self) -> FieldCondition | None:
        """The field test of a ``field:`` condition."""
        return self._test

    @property
    def count(self) -> int:
        """Activities an ``activity:`` condition needs (``at_least``, default 1)."""
        return self.at_least or 1


def _kind_problem(given: list[str], extras: list[tuple[str, list[str], str]]) -> None:
    """A ValueError unless exactly one kind is given, with only the keys that kind takes.

    ``extras``: (kind, the keys given that only that kind takes, what those keys do).
    """
    for kind, keys, does in extras:
        if keys and not given:
            raise ValueError(f"{keys[0]} {does}; give {kind}: too")
    if len(given) != 1:
        raise ValueError(
            "give exactly one kind of condition: fit (a fit rule's name), field (with one test), "
            f"activity (with within_days) or score_at_least; got {', '.join(given) or 'none'}"
        )
    for kind, keys, does in extras:
        if keys and given[0] != kind:
            raise ValueError(f"{keys[0]} {does}, not {given[0]}")


def _field_test(field: str, tests: dict[str, Any]) -> FieldCondition:
    """The ``FieldCondition`` of a condition's field and tests (a one-line ValueError)."""
    try:
        return FieldCondition(field=field, **tests)
    except ValidationError as exc:
        raise ValueError(str(exc.errors()[0]["msg"]).removeprefix("Value error, ")) from None


class Definition(Frozen):
    """A named sales-ready definition: it holds when all of its conditions hold."""

    name: str = Field(min_length=1)
    all_of: tuple[Condition, ...]

    @field_validator("all_of")
    @classmethod
    def _some(cls, conditions: tuple[Condition, ...]) -> tuple[Condition, ...]:
        if not conditions:
            raise ValueError("give at least one condition")
        return conditions


class SalesReady(Versioned):
    threshold: int = Field(ge=1)
    eligible_stages: tuple[str, ...] = ("lead", "mql", "nurture")
    required_fields: tuple[str, ...] = ()
    fit: tuple[FitRule, ...] = ()
    behaviour: tuple[BehaviourRule, ...] = ()
    # named alternatives: sales-ready when any holds; none given: "score at least threshold"
    definitions: tuple[Definition, ...] = ()
    exclude: tuple[ExcludeRule, ...] = ()
    # a lead its rep recycled or disqualified is handed off again only on behaviour after
    # that decision; or, this many days after it, on any behaviour (None: never)
    recycle_cool_off_days: int | None = Field(None, ge=0, le=3650)

    @property
    def longest_window_days(self) -> int:
        windows = [r.within_days for r in self.behaviour]
        windows += [c.within_days for d in self.definitions for c in d.all_of if c.within_days]
        return max(windows, default=30)

    @property
    def effective_definitions(self) -> tuple[Definition, ...]:
        """The definitions a person is decided by: the file's, else one "score at least threshold"."""
        return self.definitions or _score_definition(self.threshold)


@lru_cache(maxsize=64)
def _score_definition(threshold: int) -> tuple[Definition, ...]:
    """The one definition of a file without ``definitions``: today's threshold."""
    score = Condition.model_validate({"score_at_least": threshold})
    return (Definition(name=f"Score at least {threshold}", all_of=(score,)),)


# --- reps --------------------------------------------------------------------


class Pool(FieldCondition):
    name: str


def _task_types(value: Any) -> Any:
    """``any``, or a non-empty list of task type names (one error line otherwise)."""
    if isinstance(value, str) and value.strip().lower() == "any":
        return "any"
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(
            "expected a list of task types, or any (every type); leave the key out to count no tasks"
        )
    if not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError("expected task type names (text)")
    return tuple(v.strip() for v in value)


class SalesforceOutsideWork(Frozen):
    """Salesforce work assigned outside crm-handoff: open Tasks by ``Type``, open Leads by Status."""

    task_types: tuple[str, ...] | Literal["any"] = ()
    lead_statuses: tuple[Annotated[str, Field(min_length=1)], ...] = ()

    _types = field_validator("task_types", mode="before")(_task_types)


class HubSpotOutsideWork(Frozen):
    """HubSpot work assigned outside crm-handoff: open tasks by ``hs_task_type``."""

    task_types: tuple[str, ...] | Literal["any"] = ()

    @field_validator("task_types", mode="before")
    @classmethod
    def _internal_values(cls, value: Any) -> Any:
        value = _task_types(value)
        lower = [v for v in value if v != v.upper()] if value != "any" else []
        if lower:
            raise ValueError(
                f"HubSpot task types are internal values in capitals (CALL, EMAIL, TODO); got {lower[0]!r}"
            )
        return value


class OutsideWork(Frozen):
    """Open work assigned to a rep outside crm-handoff, counted against their weekly capacity."""

    salesforce: SalesforceOutsideWork = SalesforceOutsideWork()
    hubspot: HubSpotOutsideWork = HubSpotOutsideWork()
    # minutes one open item takes; None: each counts as one lead (the rep's minutes_per_lead)
    minutes_each: int | None = Field(default=None, ge=1, le=24 * 60)


class Rep(Frozen):
    name: str = Field(min_length=1)
    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
    works_in: Literal["hubspot", "salesforce"]
    weekly_followup_minutes: int = Field(ge=0, le=7 * 24 * 60)
    minutes_per_lead: int = Field(ge=1, le=24 * 60)
    territories: tuple[str, ...] = ()
    pools: tuple[str, ...] = ()
    active: bool = True
    timezone: str = "UTC"
    outside_work: OutsideWork | None = None  # None: the top-level outside_work
    availability: Availability | None = None  # None: the top-level availability
    notify: Notify | None = None  # None: the top-level notify

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from exc
        return value

    @property
    def weekly_capacity(self) -> int:
        """Leads a week this rep can follow up: floor(minutes / minutes per lead)."""
        return math.floor(self.weekly_followup_minutes / self.minutes_per_lead)


class Reps(Versioned):
    reps: tuple[Rep, ...] = Field(min_length=1)
    pools: tuple[Pool, ...] = ()
    outside_work: OutsideWork = OutsideWork()  # default: nothing outside crm-handoff counts
    availability: Availability = Availability()  # default: always available
    notify: Notify = Notify()  # default: no notifications

    def notify_for(self, rep: Rep) -> Notify:
        """Where ``rep`` is notified (their own block, else the top-level)."""
        return rep.notify if rep.notify is not None else self.notify

    def schedule_for(self, rep: Rep) -> Schedule:
        """``rep``'s working time: their own availability keys over the top-level ones."""
        return schedule(rep.timezone, self.availability, rep.availability)

    def outside_for(self, rep: Rep) -> OutsideWork:
        """What outside work counts against ``rep``'s capacity (their own block, else the top-level)."""
        return rep.outside_work if rep.outside_work is not None else self.outside_work

    @field_validator("reps")
    @classmethod
    def _unique(cls, reps: tuple[Rep, ...]) -> tuple[Rep, ...]:
        emails = [r.email for r in reps]
        dupes = sorted({e for e in emails if emails.count(e) > 1})
        if dupes:
            raise ValueError(f"rep emails must be unique; repeated: {dupes}")
        return reps

    @model_validator(mode="after")
    def _known_pools(self) -> Reps:
        known = {p.name for p in self.pools}
        for rep in self.reps:
            for pool in rep.pools:
                if pool not in known:
                    raise ValueError(f"rep {rep.email} is in unknown pool {pool!r}")
        return self


# --- handoff -----------------------------------------------------------------


class ContentAsset(Frozen):
    title: str = Field(min_length=1)
    url: str = Field(min_length=1)
    topics: tuple[str, ...] = ()  # the interests it serves: whole words or phrases in activity titles
    stages: tuple[str, ...] = ()
    industries: tuple[str, ...] = ()  # canonical industry values it serves; empty = every industry
    id: str | None = Field(default=None, min_length=1)  # None: the url names it
    version: int = Field(default=1, ge=1)
    retired: bool = False  # never recommended again
    supersedes: str | None = None  # the id of the asset this one replaces (never recommended again)
    gate: str | None = None  # the buyer gate it serves (content.gates)

    @property
    def key(self) -> str:
        """The asset's id (its url when the file gives none)."""
        return self.id or self.url


class GateRule(Frozen):
    """Behaviour that shows a person reached ``gate``: an activity of one of ``kinds`` (any
    kind when empty) whose title names one of ``topics`` (any title when empty)."""

    gate: str
    kinds: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()


class Content(Frozen):
    """The buyer gates of the content library (``handoff.yaml content``)."""

    gates: tuple[str, ...] = Field(("awareness", "consideration", "decision"), min_length=1)  # earliest first
    stages: dict[str, str] = {}  # canonical stage -> the gate a person in it has reached
    behaviour: tuple[GateRule, ...] = ()
    assets: tuple[ContentAsset, ...] = ()  # the library (content_library is then not used)
    limit: int = Field(default=3, ge=1, le=10)  # assets recommended per brief


class Handoff(Versioned):
    task_in: Literal["rep_crm", "salesforce", "hubspot", "both"] = "rep_crm"
    due_in_days: int = Field(2, ge=0, le=60)
    business_days: bool = True
    priority: Literal["high", "normal", "low"] = "high"
    subject: str = Field(min_length=1)
    body: str = Field(min_length=1)
    recent_activity_limit: int = Field(5, ge=0, le=50)
    set_owner: bool = True
    content_library: tuple[ContentAsset, ...] = ()
    content: Content | None = None  # None: content_library's assets picked by topic and stage
    outcomes: Outcomes = Outcomes()  # default: no outcome picklist
    sla: Sla = Sla()  # default: no first-touch SLA beyond the due date
    # key -> (file, line of the template's first line); set by the loader
    _template_origin: dict[str, tuple[str, int]] = PrivateAttr(default_factory=dict)

    @property
    def assets(self) -> tuple[ContentAsset, ...]:
        """The library: ``content.assets`` with gates, else ``content_library``."""
        return self.content.assets if self.content else self.content_library

    def template_where(self, key: str, line: int | None = None) -> str:
        """``FILE:LINE`` of line ``line`` (1-based) of the ``key`` template."""
        file, first = self._template_origin.get(key, ("handoff.yaml", 0))
        if not first:
            return file
        return f"{file}:{first + (line or 1) - 1}"


TEMPLATE_KEYS = ("subject", "body")


# --- the whole set -----------------------------------------------------------

FILES = ("lifecycle", "fields", "sales_ready", "reps", "handoff")


class MappingSet(Frozen):
    lifecycle: Lifecycle
    fields: FieldMappings
    sales_ready: SalesReady
    reps: Reps
    handoff: Handoff

    def canonical_fields(self) -> set[str]:
        return {f.name for f in self.fields.fields}
