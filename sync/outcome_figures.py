"""Outcome figures for ``handoff report``, ``status`` and ``/metrics`` (pure).

A *lead* is a chain of handoffs (the first one and its reassignments, ``sync.followup``):
the lead counts as acted on when any of its handoffs was, within the SLA when the first
touch met that handoff's due time. Per rep, each handoff counts for the rep it went to.
Times to first touch are wall-clock hours from assignment (median and inclusive p90).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sync.followup import chain_key
from sync.state import OutcomeRow

ENDED = ("worked", "rejected", "rerouted", "reassigned", "recycled", "deleted")


def _median_p90(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Median and 90th percentile (``statistics``, inclusive: as the report page's time in stage)."""
    if not values:
        return None, None
    p90 = statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 else values[0]
    return round(statistics.median(values), 2), round(p90, 2)


def _hours(row: OutcomeRow) -> float | None:
    if row.first_touch_at is None:
        return None
    return round(max(0.0, (row.first_touch_at - row.assigned_at).total_seconds()) / 3600, 2)


def _times(rows: Sequence[OutcomeRow]) -> dict[str, Any]:
    hours = [h for r in rows if (h := _hours(r)) is not None]
    median, p90 = _median_p90(hours)
    return {"median": median, "p90": p90, "count": len(hours)}


def _counts(rows: Sequence[OutcomeRow]) -> dict[str, Any]:
    """How many handoffs were acted on, within the SLA, rejected (and why), reassigned."""
    rejected = [r for r in rows if r.state in ("rejected", "rerouted")]
    return {
        "handoffs": len(rows),
        "acted_on": sum(1 for r in rows if r.first_touch_at is not None),
        "acted_on_within_sla": sum(1 for r in rows if r.sla == "met"),
        "worked": sum(1 for r in rows if r.state == "worked"),
        "rejected": len(rejected),
        "rejection_reasons": dict(Counter(r.reason or "" for r in rejected)),
        "reassigned": sum(1 for r in rows if r.state == "reassigned"),
        "open": sum(1 for r in rows if r.is_open),
        "time_to_first_touch_hours": _times(rows),
    }


def _leads(rows: Sequence[OutcomeRow]) -> dict[str, int]:
    """By lead (a handoff and its reassignments): handed off, acted on, within the SLA."""
    chains: dict[str, list[OutcomeRow]] = {}
    for r in rows:
        chains.setdefault(chain_key(r.key)[0], []).append(r)
    return {
        "leads_handed_off": len(chains),
        "acted_on": sum(1 for c in chains.values() if any(r.first_touch_at for r in c)),
        "acted_on_within_sla": sum(1 for c in chains.values() if any(r.sla == "met" for r in c)),
    }


def _week(at: datetime) -> str:
    """The Monday (UTC) of the week a handoff was assigned in."""
    return (at.date() - timedelta(days=at.weekday())).isoformat()


def _weekly(rows: Sequence[OutcomeRow]) -> list[dict[str, Any]]:
    """Per week assigned and rep: handoffs, acted on, within SLA, rejected, reassigned, open
    (the report page's rows; filters: date range, rep, the rep's CRM)."""
    groups: dict[tuple[str, str], list[OutcomeRow]] = {}
    for r in rows:
        groups.setdefault((_week(r.assigned_at), r.rep_email), []).append(r)
    keys = ("handoffs", "acted_on", "acted_on_within_sla", "rejected", "reassigned", "open")
    out = []
    for (week, rep), mine in sorted(groups.items()):
        counts = _counts(mine)
        out.append({"week": week, "rep": rep, **{k: counts[k] for k in keys}})
    return out


def _reasons(rows: Sequence[OutcomeRow]) -> list[dict[str, Any]]:
    """Per rep and reason: the rejections (the report page's rows)."""
    found = Counter((r.rep_email, r.reason or "") for r in rows if r.state in ("rejected", "rerouted"))
    return [{"rep": rep, "reason": reason, "count": n} for (rep, reason), n in sorted(found.items())]


def outcome_figures(rows: Sequence[OutcomeRow]) -> dict[str, Any]:
    """Every outcome figure (see the module): by lead, per rep, and the handoffs' states."""
    every = _counts(rows)
    by_state = Counter(r.state for r in rows)
    return {
        **_leads(rows),
        "sla_missed": sum(1 for r in rows if r.sla == "missed"),
        "rejected": every["rejected"],
        "rejection_reasons": every["rejection_reasons"],
        "reassigned": every["reassigned"],
        "recycled": sum(1 for r in rows if r.state == "recycled"),
        "deleted_in_crm": sum(1 for r in rows if r.state == "deleted"),
        "late_after_reassignment": sum(1 for r in rows if r.late),
        "handoffs": len(rows),
        "states": {s: by_state.get(s, 0) for s in ("open", "acted", *ENDED)},
        "time_to_first_touch_hours": every["time_to_first_touch_hours"],
        "weekly": _weekly(rows),
        "reasons": _reasons(rows),
        "per_rep": {
            e: _counts([r for r in rows if r.rep_email == e]) for e in sorted({r.rep_email for r in rows})
        },
    }
