"""People the cycle cannot place, set aside with a reason instead of handed off (pure).

crm-handoff identifies a person by the ids each CRM stores of the other, else by their
email in its identity form (``normalize_email``). What one email shared by several
records means:

- **a duplicate**: up to ``SHARED_EMAIL_LIMIT`` records of one CRM with one email are
  one person entered more than once (a lead and a contact, a lead created twice). The
  address gets one handoff: the best-ranked of its people in the queue, or the one
  handed off already; the others are set aside as duplicates of that one.
- **a shared address**: more records than that (a shared inbox, a test address, a
  reseller's mailbox) are not one person. None of them is handed off; each is set aside
  and recorded as a record error (``handoff status``, exit code 1) until the records are
  fixed or merged in the CRM.
- **no email**: a person who would be sales-ready but has no email address is set aside
  with that reason (it is the one field identity and the task brief cannot do without).

A set-aside person stays on the queue and is looked at again every cycle, so fixing the
records in the CRM is all it takes. The reason is shown in ``handoff status`` and
written to the person's handoff status in the CRMs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: more records than this in one CRM with one email make it a shared address
SHARED_EMAIL_LIMIT = 5
NO_EMAIL = "set aside: no email address"
PREFIX = "set aside: "


@dataclass(frozen=True, slots=True)
class QueuedPerson:
    """What the check needs of a queued person, in queue order (best first)."""

    person_key: str
    email: str | None
    blocked: str | None = None  # a reason found at evaluation (e.g. ``NO_EMAIL``)


@dataclass(frozen=True, slots=True)
class SetAside:
    """A person not routed this cycle, and why."""

    person_key: str
    reason: str
    is_error: bool  # a record error the admin must fix (exit code 1), not a duplicate


def set_aside(
    queued: Sequence[QueuedPerson],
    records_per_email: Mapping[str, Mapping[str, int]],
    handed_off_as: Mapping[str, str],
    limit: int = SHARED_EMAIL_LIMIT,
    first: dict[str, str] | None = None,
) -> dict[str, SetAside]:
    """The queued people who must not be routed, by person key.

    ``records_per_email``: email -> CRM -> how many records of that CRM hold it (the
    mirror); ``handed_off_as``: email -> the person key a handoff was recorded for.
    ``first``: email -> the best-ranked queued person with it so far; pass the same dict
    for every page of a queue read page by page (it is updated).
    """
    out: dict[str, SetAside] = {}
    first = {} if first is None else first
    for q in queued:
        if q.blocked:
            out[q.person_key] = SetAside(q.person_key, q.blocked, is_error=False)
            continue
        if not q.email:
            continue
        shared = _shared(q.email, records_per_email.get(q.email, {}), limit)
        if shared:
            out[q.person_key] = SetAside(q.person_key, shared, is_error=True)
            continue
        other = handed_off_as.get(q.email)
        if other and other != q.person_key:
            out[q.person_key] = SetAside(
                q.person_key, f"{PREFIX}duplicate of {other} (same email), handed off already", False
            )
            continue
        if q.email in first:
            out[q.person_key] = SetAside(
                q.person_key, f"{PREFIX}duplicate of {first[q.email]} (same email)", False
            )
            continue
        first[q.email] = q.person_key
    return out


def _shared(email: str, counts: Mapping[str, int], limit: int) -> str | None:
    for crm, n in sorted(counts.items()):
        if n > limit:
            return (
                f"{PREFIX}{email} is shared by {n} {crm} records (more than {limit}: a shared "
                "address, not one person); fix or merge them in the CRM"
            )
    return None


def missing_email(score: int, threshold: int, blockers: Sequence[str], field: str = "email") -> str | None:
    """``NO_EMAIL`` when a person scores enough and only missing data, the email among it,
    keeps them from being sales-ready (an excluded or ineligible person is not set aside)."""
    if score < threshold or f"missing {field}" not in blockers:
        return None
    if not all(b.startswith("missing ") for b in blockers):
        return None
    others = [b.removeprefix("missing ") for b in blockers if b != f"missing {field}"]
    return NO_EMAIL + (f" (also missing {', '.join(others)})" if others else "")


def is_set_aside(reason: str) -> bool:
    """True for a deferral reason given by this module."""
    return reason.startswith(PREFIX)
