"""Values the state store returns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from crm_handoff.records import TaskRequest


@dataclass(frozen=True)
class Identity:
    person_key: str
    hubspot_id: str | None
    salesforce_id: str | None
    salesforce_type: str | None
    email: str | None


@dataclass(frozen=True)
class LedgerEntry:
    key: str
    crm: str
    person_key: str
    episode: int
    rep_email: str
    week_start: date
    status: str
    task_id: str | None
    score: int
    reasons: list[Any]
    planned_at: datetime
    error: str | None = None
    task: TaskRequest | None = None  # the task this entry writes (stored as its payload)
    content: tuple[tuple[str, int, str], ...] = ()  # assets the brief recommends (id, version, url)
