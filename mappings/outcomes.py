"""What reps can say about a handoff, what each answer does, and the first-touch SLA (``handoff.yaml``).

::

    outcomes:
      choices:
        - {value: worked, label: Worked - accepted, action: keep}
        - {value: not_a_fit, label: Not a fit, action: nurture, offer_again_after_days: 90}
        - {value: wrong_rep, label: Wrong territory or rep, action: reroute}
        - {value: no_response, label: No response after my attempts, action: recycle}
        - {value: invalid, label: Spam or invalid, action: disqualify}
      capacity_counts: assigned_week
      give_back_if_rejected_within_hours: 1
    sla:
      first_touch_within_hours: 8     # business hours, in the rep's working time
      on_breach: reassign             # reassign | notify | recycle
      max_reassignments: 2
      after_max_reassignments: keep   # keep | notify | recycle

Both sections are optional: without them there is no outcome picklist and no SLA
beyond the task's due date, as before they existed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

if TYPE_CHECKING:
    from mappings.models import MappingSet

Action = Literal["keep", "nurture", "disqualify", "reroute", "recycle"]
ACTIONS: tuple[Action, ...] = ("keep", "nurture", "disqualify", "reroute", "recycle")
Loc = tuple[str | int, ...]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OutcomeChoice(_Frozen):
    """One value of the outcome picklist on the rep's task, and what choosing it does.

    keep: the person stays with the rep (SQL). nurture: back to nurture, handed off again
    on behaviour after the decision, or ``offer_again_after_days`` after it on any behaviour.
    disqualify: never handed off again. reroute: routed again to another eligible rep.
    recycle: back to nurture with the label as the reason.
    """

    value: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)]
    label: Annotated[str, Field(min_length=1, max_length=80)] | None = None
    action: Action
    offer_again_after_days: int | None = Field(default=None, ge=0, le=3650)

    @model_validator(mode="after")
    def _days_only_for_nurture(self) -> OutcomeChoice:
        if self.offer_again_after_days is not None and self.action != "nurture":
            raise ValueError(f"offer_again_after_days applies to action nurture only, not {self.action}")
        return self

    @property
    def display(self) -> str:
        """The label reps see (the value in words when no label is given)."""
        return self.label or self.value.replace("_", " ").capitalize()

    @property
    def rejects(self) -> bool:
        """Any action but keep hands the lead back."""
        return self.action != "keep"


def _duplicate(i: int, field: str, value: str, first: int) -> dict[str, Any]:
    """One error of a ``ValidationError`` located at choice ``i``'s ``field``."""
    message = f"{value!r} is already the {field} of choice {first}"
    return {"type": "value_error", "loc": (i, field), "input": value, "ctx": {"error": ValueError(message)}}


class Outcomes(_Frozen):
    """The outcome picklist and how a handoff counts against the rep's weekly capacity."""

    choices: tuple[OutcomeChoice, ...] = ()
    # a handoff counts against the week it was assigned in, whatever happens to it after
    capacity_counts: Literal["assigned_week"] = "assigned_week"
    # ... except one rejected (any action but keep) this soon after assignment: the slot comes back
    give_back_if_rejected_within_hours: float | None = Field(default=None, gt=0, le=7 * 24)

    @field_validator("choices")
    @classmethod
    def _unique(cls, choices: tuple[OutcomeChoice, ...]) -> tuple[OutcomeChoice, ...]:
        errors: list[Any] = []
        reported: set[int] = set()  # a repeated value is not reported again as a repeated label
        for field in ("value", "display"):
            seen: dict[str, int] = {}
            for i, choice in enumerate(choices):
                text = getattr(choice, field)
                if text.lower() in seen and i not in reported:
                    reported.add(i)
                    errors.append(_duplicate(i, field.replace("display", "label"), text, seen[text.lower()]))
                seen.setdefault(text.lower(), i)
        if errors:
            raise ValidationError.from_exception_data("choices", errors)
        return choices

    @model_validator(mode="after")
    def _give_back_needs_a_rejection(self) -> Outcomes:
        if self.give_back_if_rejected_within_hours is not None and not any(c.rejects for c in self.choices):
            raise ValueError(
                "give_back_if_rejected_within_hours needs a choice that rejects (an action other than keep)"
            )
        return self

    def by_value(self) -> dict[str, OutcomeChoice]:
        """The choices by their picklist value."""
        return {c.value: c for c in self.choices}


class Sla(_Frozen):
    """First touch due within N business hours of the rep's working time, and what a breach does."""

    first_touch_within_hours: float | None = Field(default=None, gt=0, le=24 * 365)
    on_breach: Literal["reassign", "notify", "recycle"] | None = None
    max_reassignments: int = Field(default=1, ge=0, le=10)
    after_max_reassignments: Literal["keep", "notify", "recycle"] = "keep"

    @model_validator(mode="after")
    def _coherent(self) -> Sla:
        if self.first_touch_within_hours is None:
            if self.on_breach is not None:
                raise ValueError("on_breach needs first_touch_within_hours (the SLA it acts on)")
            return self
        if self.on_breach is None:
            raise ValueError("first_touch_within_hours needs on_breach: reassign, notify or recycle")
        if self.on_breach == "reassign" and self.max_reassignments == 0:
            raise ValueError(
                "on_breach: reassign with max_reassignments: 0 never reassigns; use notify or recycle"
            )
        return self

    @property
    def active(self) -> bool:
        """Whether a first-touch SLA is configured."""
        return self.first_touch_within_hours is not None


def outcome_problems(m: MappingSet) -> list[tuple[str, Loc, str]]:
    """(file, field path, message) for outcomes needing another rep where there is only one."""
    active = [r for r in m.reps.reps if r.active]
    if len(active) > 1:
        return []
    who = f"only {active[0].email} is active" if active else "no rep is active"
    problems: list[tuple[str, Loc, str]] = [
        (
            "handoff",
            ("outcomes", "choices", i, "action"),
            f"reroute needs another rep, but {who} in reps.yaml",
        )
        for i, c in enumerate(m.handoff.outcomes.choices)
        if c.action == "reroute"
    ]
    if m.handoff.sla.on_breach == "reassign":
        problems.append(
            ("handoff", ("sla", "on_breach"), f"reassign needs another rep, but {who} in reps.yaml")
        )
    return problems
