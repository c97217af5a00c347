"""What people read: the cycle summary, ``handoff status`` and ``handoff report``.

``report_data``/``status_data`` gather plain data; the ``print_*`` functions only format.
"""

from __future__ import annotations

import itertools
import textwrap
from datetime import UTC, datetime
from typing import Any

from mappings.models import MappingSet
from sync.content import content_figures
from sync.outcome_figures import outcome_figures
from sync.setaside import is_set_aside
from sync.state import StateStore
from sync.summary import CycleSummary, RunSummary

SET_ASIDE_SHOWN = 50  # set-aside people listed by ``handoff status`` (all are counted)


def _table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header, *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_summary(s: CycleSummary) -> None:
    """Human summary of one cycle (``handoff sync`` / ``handoff demo``)."""
    mode = "DRY RUN - nothing written" if s.dry_run else f"run {s.run_id}"
    pulled = ", ".join(f"{k} {v}" for k, v in s.people_pulled.items())
    print(f"crm-handoff cycle ({mode}) at {s.at}")
    echoes = sum(s.people_unchanged.values())
    skipped = f" ({echoes} unchanged but for our own writes, skipped)" if echoes else ""
    print(f"people pulled: {pulled}{skipped}; activities pulled: {s.activities_pulled}")
    print(f"profiles scored: {s.profiles_scored}; sales-ready: {s.qualified}")
    aside = f"; set aside: {s.set_aside} (see handoff status)" if s.set_aside else ""
    print(f"handed off: {s.handed_off}; kept in nurture: {s.kept_in_nurture}{aside}")
    rows = [
        [rep, c.capacity, c.used_before, s.handed_off_per_rep.get(rep, 0), c.left]
        for rep, c in sorted(s.capacity_per_rep.items())
    ]
    if rows:
        print()
        print(_table(rows, ["rep", "weekly capacity", "used before", "handed off now", "left"]))
    for rep, why in sorted(s.unavailable_reps.items()):
        print(f"  not routed to {rep}: {why}")
    _print_plan(s)
    print()
    tasks = ", ".join(f"{k} {v}" for k, v in s.tasks_created.items())
    existed = sum(s.tasks_already_existed.values())
    print(f"tasks created: {tasks}" + (f" ({existed} already existed)" if existed else ""))
    print("API calls: " + ", ".join(f"{k} {v}" for k, v in s.api_calls.items()))
    if s.errors:
        print(f"{len(s.errors)} record(s) failed (see `handoff status`):")
        for e in s.errors[:10]:
            print(f"  {e.crm} {e.record}: {e.reason}")


def _print_plan(s: CycleSummary) -> None:
    """The handoffs of a cycle and the people it kept in nurture."""
    if s.plan:
        print()
        verb = "would hand off" if s.dry_run else "handed off"
        print(f"{verb}:")
        for h in s.plan:
            why = ", ".join(f"{r['rule']} +{r['points']}" for r in h.reasons)
            print(
                f"  {h.person} (score {h.score}) -> {h.rep} [{h.why_rep}; task in {'/'.join(h.task_in)}]: {why}"
            )
    if s.nurture:
        print()
        print(f"kept in nurture ({len(s.nurture)}, highest score first):")
        for n in s.nurture[:10]:
            print(f"  {n.person} (score {n.score}): {n.reason}")
        if len(s.nurture) > 10:
            print(f"  ... and {len(s.nurture) - 10} more")


def _run_row(r: dict[str, Any]) -> dict[str, Any]:
    run = RunSummary.from_json(r["summary"])
    cycle = run.cycle
    return {
        "id": r["id"],
        "started_at": r["started_at"],
        "status": r["status"],
        "job": run.job,
        "worker": run.worker,
        "reason": run.reason or run.error,
        "handed_off": cycle.handed_off if cycle else None,
        "kept_in_nurture": cycle.kept_in_nurture if cycle else None,
        "errors": len(cycle.errors) if cycle else 0,
        "api_calls": cycle.api_calls if cycle else None,
        "stopped": cycle.stopped if cycle else None,
    }


def _leases(state: StateStore) -> list[dict[str, Any]]:
    from sqlalchemy import inspect, select

    from sync.lease import leases

    if not inspect(state.engine).has_table("leases"):
        return []
    with state.engine.connect() as conn:
        rows = conn.execute(select(leases)).all()
    return [{"name": r.name, "holder": r.holder, "expires_at": r.expires_at} for r in rows]


def status_data(state: StateStore) -> dict[str, Any]:
    everyone = state.queued()
    aside = [q for q in everyone if is_set_aside(q["reason"] or "")]
    queued = [q for q in everyone if not is_set_aside(q["reason"] or "")]
    return {
        "runs": [_run_row(r) for r in state.runs_by_status(["skipped"], 10, exclude=True)],
        "skipped": [_run_row(r) for r in state.runs_by_status(["skipped"], 5)],
        "leases": _leases(state),
        "queue": {
            "size": len(queued),
            "top": [
                {
                    "person_key": q["person_key"],
                    "name": (q["snapshot"] or {}).get("name"),
                    "score": q["score"],
                    "reason": q["reason"],
                }
                for q in queued[:10]
            ],
        },
        "set_aside": {
            "size": len(aside),
            "people": [
                {
                    "person_key": q["person_key"],
                    "name": (q["snapshot"] or {}).get("name"),
                    "hubspot_id": (q["snapshot"] or {}).get("hubspot_id"),
                    "salesforce_id": (q["snapshot"] or {}).get("salesforce_id"),
                    "reason": q["reason"],
                }
                for q in aside[:SET_ASIDE_SHOWN]
            ],
        },
        "pending_intents": len(state.open_intents()),
        "outcomes": _outcome_status(outcome_figures(state.outcome_rows())),
        "record_errors": [
            {"run_id": e["run_id"], "crm": e["crm"], "record": e["record"], "reason": e["reason"]}
            for e in state.open_errors()
        ],
    }


def _outcome_status(o: dict[str, Any]) -> dict[str, Any]:
    """The outcome figures ``handoff status`` shows (the report has them all)."""
    keys = ("leads_handed_off", "acted_on", "acted_on_within_sla", "rejected", "reassigned", "recycled")
    return {k: o[k] for k in keys} | {
        "open": o["states"]["open"] + o["states"]["acted"],
        "time_to_first_touch_hours": o["time_to_first_touch_hours"],
        "rejection_reasons": o["rejection_reasons"],
    }


def print_status(d: dict[str, Any]) -> None:
    """``handoff status``: the state read, recent runs, leases, the queue, failed records."""
    if d.get("state"):
        print(f"state: {d['state']}\n")
    if not d["runs"]:
        print("no runs yet")
    else:
        rows = [
            [
                r["id"],
                r["started_at"],
                r["status"],
                r["handed_off"],
                r["kept_in_nurture"],
                r["errors"],
                r.get("job") or "-",
                r.get("reason") or "",
            ]
            for r in d["runs"]
        ]
        print(_table(rows, ["run", "started", "status", "handed off", "nurture", "errors", "job", "reason"]))
    for r in d.get("skipped", []):
        print(f"  skipped {r['job']} at {r['started_at']} on {r['worker']}: {r['reason']}")
    for lease in d.get("leases", []):
        print(f"  lease {lease['name']}: held by {lease['holder']} until {lease['expires_at']}")
    print(f"\nnurture queue: {d['queue']['size']} waiting; pending handoff writes: {d['pending_intents']}")
    for q in d["queue"]["top"]:
        print(f"  {q['name'] or q['person_key']} ({q['person_key']}) score {q['score']}: {q['reason']}")
    o = d.get("outcomes") or {}
    if o.get("leads_handed_off"):
        t = o["time_to_first_touch_hours"]
        print(
            f"\nhandoffs: {o['leads_handed_off']} leads; acted on {o['acted_on']} ({o['acted_on_within_sla']} within "
            f"SLA); still open {o['open']}; rejected {o['rejected']}; reassigned {o['reassigned']}; recycled "
            f"{o['recycled']}; first touch median {t['median']} h, p90 {t['p90']} h"
        )
    if d["set_aside"]["size"]:
        print(f"\nset aside (not handed off until their records are fixed): {d['set_aside']['size']}")
        for q in d["set_aside"]["people"]:
            print(f"  {q['name'] or q['person_key']} ({q['person_key']}): {q['reason']}")
    if d["record_errors"]:
        print(f"\nrecords that failed in run {d['record_errors'][0]['run_id']}:")
        for e in d["record_errors"]:
            print(f"  {e['crm']} {e['record']}: {e['reason']}")


#: What a "reached" count means, in ``handoff report`` and its JSON.
REACHED_BASIS = (
    "a stage counts as reached only when crm-handoff recorded the person entering it "
    "(HubSpot's hs_lifecyclestage_<stage>_date, or a cycle seeing the person in that stage); "
    "earlier stages are never inferred from a later one. Conversion a -> b: people with "
    "recorded entries into both, b entered at or after a, over the people who entered a."
)


#: The views the page will show once their data is recorded: what each waits for.
PENDING = {
    "outcomes": (
        "leads worked, worked within the follow-up SLA, rejected (by reason) and reassigned, per rep, "
        "and the time to first touch: these arrive with the closed-loop outcome work (task outcomes "
        "read back into the state)."
    ),
    "overflow": "how much nurture overflow was offered again: not yet recorded per run.",
}


def report_data(state: StateStore, mapping: MappingSet, now: datetime | None = None) -> dict[str, Any]:
    """Stage counts now, people with a recorded entry into each stage, conversion between
    consecutive funnel stages (both from recorded entries only: ``REACHED_BASIS``), and
    every figure of the report page (``sync.funnel``, aggregated in SQL)."""
    from sync import funnel as figures

    stages = list(mapping.lifecycle.funnel)
    entered = state.stage_entries()
    pairs = list(itertools.pairwise(stages))
    both = state.stage_conversions(pairs)
    conversion = [
        {
            "from": a,
            "to": b,
            "reached_from": entered.get(a, 0),
            "reached_to": both[(a, b)],
            "rate": figures.rate(both[(a, b)], entered.get(a, 0)),
        }
        for a, b in pairs
    ]
    current = state.current_stages()
    outcomes = outcome_figures(state.outcome_rows())
    with state.engine.connect() as conn:
        per_rep = figures.handoffs_per_rep(conn)
        in_queue = figures.queue_size(conn)
    return {
        "basis": REACHED_BASIS,
        "current": {s: current.get(s, 0) for s in mapping.lifecycle.all_stages},
        "reached": {s: entered.get(s, 0) for s in mapping.lifecycle.all_stages},
        "conversion": conversion,
        "handoffs_per_rep": per_rep,
        "in_nurture_queue": in_queue,
        **_with_outcome_tiles(figures.figures(state.engine, mapping, now or datetime.now(UTC)), outcomes),
        "outcomes": outcomes,
        "content": content_figures(state, mapping),
        "pending": {k: v for k, v in PENDING.items() if k not in ("outcomes", "overflow")},
    }


def _with_outcome_tiles(page: dict[str, Any], outcomes: dict[str, Any]) -> dict[str, Any]:
    """The scorecard gains the outcome figures: acted on within SLA, median hours to first touch."""
    card = page["payoff"]["scorecard"]
    leads = outcomes["leads_handed_off"]
    card["acted_on_within_sla_rate"] = round(outcomes["acted_on_within_sla"] / leads, 4) if leads else None
    card["first_touch_median_hours"] = outcomes["time_to_first_touch_hours"]["median"]
    return page


def report_page(state: StateStore, mapping: MappingSet, now: datetime | None = None, where: str = "") -> str:
    """The report page (``handoff report --html``, the worker's ``/report``)."""
    from sync.report_html import render_page

    return render_page({"state": where, **report_data(state, mapping, now)})


def print_report(d: dict[str, Any]) -> None:
    """``handoff report``: stages now and reached, conversion, handoffs per rep."""
    if d.get("state"):
        print(f"state: {d['state']}\n")
    stages = [[s, n, d["reached"].get(s, 0)] for s, n in d["current"].items()]
    print(_table(stages, ["stage", "people now", "reached (recorded)"]))
    print()
    rows = [
        [
            f"{c['from']} -> {c['to']}",
            c["reached_from"],
            c["reached_to"],
            "-" if c["rate"] is None else f"{c['rate']:.1%}",
        ]
        for c in d["conversion"]
    ]
    print(_table(rows, ["conversion", "reached from", "then reached to", "rate"]))
    print()
    print(textwrap.fill(d["basis"], width=100))
    if d["handoffs_per_rep"]:
        print()
        print(_table([[r, n] for r, n in sorted(d["handoffs_per_rep"].items())], ["rep", "handoffs"]))
    print(f"\nwaiting in nurture for rep capacity: {d['in_nurture_queue']}")
    _print_outcomes(d.get("outcomes") or {})
    _print_content(d.get("content") or {})


def _print_content(c: dict[str, Any]) -> None:
    """Content recommended in briefs, used by the leads, and never used (``sync.content``)."""
    if not c.get("assets"):
        return
    print(
        f"\ncontent: {c['recommended']} recommended in {c['handoffs']} handoffs; {c['used']} used by the lead"
    )
    rows = [
        [a["id"], a["version"], a["gate"] or "-", a["status"], a["recommended"], a["used"]]
        for a in c["assets"]
    ]
    print(_table(rows, ["asset", "version", "gate", "status", "recommended", "used"]))
    for label, key in (("never recommended", "never_recommended"), ("recommended, never used", "never_used")):
        if c[key]:
            print(f"  {label}: {', '.join(dict.fromkeys(c[key]))}")


def _print_outcomes(o: dict[str, Any]) -> None:
    """What reps did with their handoffs (``sync.outcome_figures``)."""
    if not o.get("handoffs"):
        return
    t = o["time_to_first_touch_hours"]
    print(
        f"\nleads handed off: {o['leads_handed_off']}; acted on: {o['acted_on']} "
        f"({o['acted_on_within_sla']} within SLA); rejected: {o['rejected']}; reassigned: {o['reassigned']}; "
        f"recycled: {o['recycled']}; time to first touch (hours): median {t['median']}, p90 {t['p90']}"
    )
    for reason, n in sorted(o["rejection_reasons"].items()):
        print(f"  rejected: {reason}: {n}")
    rows = [
        [
            rep,
            r["handoffs"],
            r["acted_on"],
            r["acted_on_within_sla"],
            r["rejected"],
            r["reassigned"],
            r["time_to_first_touch_hours"]["median"],
            r["time_to_first_touch_hours"]["p90"],
        ]
        for rep, r in o["per_rep"].items()
    ]
    print(
        _table(
            rows, ["rep", "handoffs", "acted on", "within SLA", "rejected", "reassigned", "median h", "p90 h"]
        )
    )
