"""Typed values the stages hand each other through the state: queue items, pass checkpoints.

The state store reads and writes them as such; their JSON forms are the ones stored
since the first release, so existing state databases read unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any


def _ts(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Snapshot:
    """What the plan and the nurture writes need of a queued person, kept on the queue row."""

    name: str
    values: Mapping[str, str | None] = field(default_factory=dict)
    owner_email: str | None = None
    records: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # CRM -> (id, object type)
    set_aside: str | None = None  # why evaluation set the person aside (e.g. no email)
    valid_until: datetime | None = None  # when qualifying behaviour leaves its window

    def to_json(self) -> dict[str, Any]:
        """The stored form (``{crm}_id`` / ``{crm}_type`` keys, as since the first release)."""
        out: dict[str, Any] = {
            "name": self.name,
            "values": dict(self.values),
            "owner_email": self.owner_email,
        }
        for crm, (pid, kind) in sorted(self.records.items()):
            out[f"{crm}_id"] = pid
            out[f"{crm}_type"] = kind
        if self.set_aside:
            out["set_aside"] = self.set_aside
        if self.valid_until is not None:
            out["valid_until"] = self.valid_until.isoformat()
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> Snapshot:
        """Read a stored snapshot (unknown keys ignored; a missing one is empty)."""
        raw = raw or {}
        records = {
            key[: -len("_id")]: (str(pid), str(raw.get(f"{key[: -len('_id')]}_type") or ""))
            for key, pid in raw.items()
            if key.endswith("_id") and key != "owner_id" and pid
        }
        return cls(
            name=str(raw.get("name") or ""),
            values=dict(raw.get("values") or {}),
            owner_email=raw.get("owner_email"),
            records=records,
            set_aside=raw.get("set_aside"),
            valid_until=_ts(raw.get("valid_until")),
        )


@dataclass(frozen=True)
class QueueItem:
    """A sales-ready (or set-aside) person waiting on the queue."""

    person_key: str
    score: int
    snapshot: Snapshot
    queued_at: datetime
    reason: str = "sales-ready"
    status_written: str | None = None  # the waiting status last shown in the CRMs

    def order(self) -> tuple[int, str, str]:
        """The queue's order: highest score first, then longest waiting."""
        return (-self.score, self.queued_at.isoformat(), self.person_key)

    def with_status(self, status: str, reason: str) -> QueueItem:
        """This item once ``status`` (for ``reason``) is shown in the CRMs."""
        return replace(self, status_written=status, reason=reason)


@dataclass(frozen=True)
class PassCheckpoint:
    """Where one CRM's people pass stands (the ``people`` watermark).

    Between passes only ``watermark`` is set (the next pass starts there, minus the
    lookback). Mid-pass, ``resume`` is the connector's token after the last saved chunk,
    with the pass's ``since`` and start time, so an interrupted pass continues there.
    """

    watermark: datetime | None = None
    since: datetime | None = None
    resume: Any = None
    started: str | None = None

    @property
    def interrupted(self) -> bool:
        """True mid-pass: the next run continues after ``resume``."""
        return self.resume is not None

    def to_json(self) -> dict[str, Any]:
        """The stored form."""
        if self.interrupted:
            return {
                "since": self.since.isoformat() if self.since else None,
                "resume": self.resume,
                "started": self.started,
            }
        return {"watermark": self.watermark.isoformat() if self.watermark else self.started}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> PassCheckpoint:
        """Read the stored form (absent: a first pass)."""
        raw = raw or {}
        if "resume" in raw:
            return cls(since=_ts(raw.get("since")), resume=raw["resume"], started=raw.get("started"))
        return cls(watermark=_ts(raw.get("watermark")))
