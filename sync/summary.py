"""What a cycle did, as a typed value: built by ``run_cycle``, read by the CLI, the worker,
the metrics and the report; stored on the run as its JSON form (``to_json``), which is the
``--json`` output of ``handoff sync`` and unchanged since the first release."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class RepCapacity:
    """One rep's week: capacity, handoffs before this cycle, assigned now, left."""

    capacity: int
    used_before: int
    assigned: int
    left: int


@dataclass(frozen=True)
class CallSplit:
    """API calls split into reads and writes."""

    pull: int
    write: int


@dataclass(frozen=True)
class RecordError:
    """A record the cycle could not handle, and why."""

    crm: str
    record: str
    reason: str


@dataclass(frozen=True)
class HandoffSummary:
    """A planned (and, unless a dry run, executed) handoff as the summary lists it."""

    person: str
    person_key: str
    score: int
    rep: str
    why_rep: str
    task_in: list[str]
    reasons: list[dict[str, Any]]
    definitions: list[str] = field(default_factory=list)  # the sales-ready definitions met


@dataclass(frozen=True)
class NurtureShown:
    """A person kept in nurture this cycle as the summary lists them."""

    person: str
    person_key: str
    score: int
    reason: str


@dataclass(frozen=True)
class CycleSummary:
    """Everything ``handoff sync --json`` prints about one cycle (see the README)."""

    run_id: int | None
    dry_run: bool
    at: str
    stopped: str | None = None
    people_pulled: dict[str, int] = field(default_factory=dict)
    people_unchanged: dict[str, int] = field(default_factory=dict)
    activities_pulled: int = 0
    activities_new: int = 0
    profiles_scored: int = 0
    qualified: int = 0
    handed_off: int = 0
    handed_off_from_nurture: int = 0  # of those, overflow of earlier cycles offered again
    handed_off_per_rep: dict[str, int] = field(default_factory=dict)
    capacity_per_rep: dict[str, RepCapacity] = field(default_factory=dict)
    unavailable_reps: dict[str, str] = field(default_factory=dict)
    kept_in_nurture: int = 0
    set_aside: int = 0
    nurture_reasons: dict[str, int] = field(default_factory=dict)
    tasks_created: dict[str, int] = field(default_factory=dict)
    tasks_already_existed: dict[str, int] = field(default_factory=dict)
    people_created: dict[str, int] = field(default_factory=dict)
    people_updated: dict[str, int] = field(default_factory=dict)
    api_calls: dict[str, int] = field(default_factory=dict)
    rate_limit_wait_seconds: dict[str, float] = field(default_factory=dict)
    api_calls_split: dict[str, CallSplit] = field(default_factory=dict)
    api_calls_per_1000: dict[str, dict[str, float | None]] = field(default_factory=dict)
    errors: list[RecordError] = field(default_factory=list)
    plan: list[HandoffSummary] = field(default_factory=list)
    nurture: list[NurtureShown] = field(default_factory=list)
    follow_up: dict[str, int] = field(default_factory=dict)  # sync.followup.FollowUpCounts

    def to_json(self) -> dict[str, Any]:
        """The stored and printed form."""
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> CycleSummary:
        """Read a stored summary; keys an older version did not record take their defaults."""

        def per_crm(key: str) -> dict[str, Any]:
            return dict(raw.get(key) or {})

        def count(key: str) -> int:
            return int(raw.get(key) or 0)

        return cls(
            run_id=raw.get("run_id"),
            dry_run=bool(raw.get("dry_run")),
            at=str(raw.get("at") or ""),
            stopped=raw.get("stopped"),
            people_pulled=per_crm("people_pulled"),
            people_unchanged=per_crm("people_unchanged"),
            activities_pulled=count("activities_pulled"),
            activities_new=count("activities_new"),
            profiles_scored=count("profiles_scored"),
            qualified=count("qualified"),
            handed_off=count("handed_off"),
            handed_off_from_nurture=count("handed_off_from_nurture"),
            handed_off_per_rep=per_crm("handed_off_per_rep"),
            capacity_per_rep={r: RepCapacity(**c) for r, c in per_crm("capacity_per_rep").items()},
            unavailable_reps=per_crm("unavailable_reps"),
            kept_in_nurture=count("kept_in_nurture"),
            set_aside=count("set_aside"),
            nurture_reasons=per_crm("nurture_reasons"),
            tasks_created=per_crm("tasks_created"),
            tasks_already_existed=per_crm("tasks_already_existed"),
            people_created=per_crm("people_created"),
            people_updated=per_crm("people_updated"),
            api_calls=per_crm("api_calls"),
            rate_limit_wait_seconds=per_crm("rate_limit_wait_seconds"),
            api_calls_split={c: CallSplit(**v) for c, v in per_crm("api_calls_split").items()},
            api_calls_per_1000=per_crm("api_calls_per_1000"),
            errors=_each(RecordError, raw.get("errors")),
            plan=_each(HandoffSummary, raw.get("plan")),
            nurture=_each(NurtureShown, raw.get("nurture")),
            follow_up={k: int(v) for k, v in per_crm("follow_up").items()},
        )


def _each(cls: Any, items: Any) -> list[Any]:
    """``cls`` of each stored item that has its fields (an older shape is left out)."""
    out = []
    for item in items or []:
        try:
            out.append(cls(**item))
        except TypeError:
            continue
    return out


@dataclass(frozen=True)
class RunSummary:
    """A recorded run's summary: a cycle's, or (a failed run) only why it failed; with the
    worker's annotations (job, worker) when a worker ran it."""

    cycle: CycleSummary | None
    error: str | None = None
    reason: str | None = None
    job: str | None = None
    worker: str | None = None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> RunSummary:
        """Read a run's stored summary (absent, a failure, or a cycle's)."""
        raw = raw or {}
        cycle = CycleSummary.from_json(raw) if "at" in raw else None
        return cls(cycle, raw.get("error"), raw.get("reason"), raw.get("job"), raw.get("worker"))
