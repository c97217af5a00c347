"""Work assigned outside crm-handoff, counted against reps' weekly capacity (reps.yaml ``outside_work``).

Each CRM is asked once per cycle, for all reps together (``Connector.open_work``:
aggregate or paged queries, never a call per rep). crm-handoff's own tasks and the
leads it handed off are not counted here: the ledger counts them, in their week.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping

import structlog

from connectors.base import ANY_TYPE, Connector, OpenWork
from mappings.models import OutsideWork, Rep, Reps
from sync.routing import outside_enough, outside_load

log = structlog.get_logger("handoff.outside")


def open_work_spec(rule: OutsideWork, crm: str, up_to: int | None = None) -> OpenWork | None:
    """What counts in ``crm`` under ``rule`` (None: nothing there)."""
    section = rule.salesforce if crm == "salesforce" else rule.hubspot
    types = section.task_types
    task_types = (ANY_TYPE,) if types == "any" else tuple(types)
    statuses = tuple(getattr(section, "lead_statuses", ()))
    if not task_types and not statuses:
        return None
    return OpenWork(task_types, statuses, up_to)


def count_outside_work(
    reps: Reps, connectors: Mapping[str, Connector], owner_ids: Callable[[str], Mapping[str, str]]
) -> Counter[str]:
    """Open outside items per active rep email, summed over the CRMs (one read per CRM)."""
    items: Counter[str] = Counter()
    for crm, conn in connectors.items():
        ids = owner_ids(crm)
        wanted: dict[str, OpenWork] = {}
        email_of: dict[str, str] = {}
        for rep in reps.reps:
            rule = reps.outside_for(rep)
            spec = open_work_spec(rule, crm, outside_enough(rep, rule.minutes_each))
            owner = ids.get(rep.email)
            if rep.active and spec is not None and owner is not None:
                wanted[owner], email_of[owner] = spec, rep.email
        if wanted:
            for owner, n in conn.open_work(wanted).items():
                if owner in email_of:
                    items[email_of[owner]] += n
    return items


def add_outside_work(
    used: Mapping[str, int],
    reps: Reps,
    connectors: Mapping[str, Connector],
    owner_ids: Callable[[str], Mapping[str, str]],
) -> dict[str, int]:
    """``used`` (handoffs this week per rep email) plus each rep's outside work, in leads."""
    out = dict(used)
    if not any(_counts(reps.outside_for(r)) for r in reps.reps if r.active):
        return out  # off (the default): no call at all
    items = count_outside_work(reps, connectors, owner_ids)
    shown: dict[str, dict[str, int]] = {}
    for rep in reps.reps:
        n = items.get(rep.email, 0)
        if rep.active and _counts(reps.outside_for(rep)):
            load = _load(reps, rep, n)
            out[rep.email] = out.get(rep.email, 0) + load
            shown[rep.email] = {"open_items": n, "leads": load}
    log.info("outside_work", reps=shown)
    return out


def _load(reps: Reps, rep: Rep, items: int) -> int:
    return outside_load(rep, items, reps.outside_for(rep).minutes_each)


def _counts(rule: OutsideWork) -> bool:
    return any(open_work_spec(rule, crm) is not None for crm in ("salesforce", "hubspot"))
