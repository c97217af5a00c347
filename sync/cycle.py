"""One cycle end to end: the four stages in order.

    ingest   -> what the CRMs changed enters the state; who to evaluate comes out
    evaluate -> merged, staged, synced, qualified, queued (a batch at a time)
    plan     -> the queue routed within the reps' capacity, a page at a time
    execute  -> the only writes to a CRM: field updates, handoff tasks, nurture statuses

See ARCHITECTURE.md for the state each stage reads and writes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

import structlog

from crm_handoff.errors import CrmError, QuotaExhausted, StopRequested
from sync.context import NURTURE_SHOWN, CycleContext, HandoffPlan
from sync.engine import Engine
from sync.evaluate import evaluate
from sync.execute import Executor
from sync.followup import FollowUpCounts, follow_up, open_rows
from sync.ingest import batches
from sync.notify import deliver
from sync.plan import plan
from sync.preflight import check_before_writes
from sync.setaside import is_set_aside
from sync.summary import CallSplit, CycleSummary, NurtureShown, RecordError

log = structlog.get_logger("handoff.cycle")


@dataclass
class CycleResult:
    """What a cycle did (or, dry-run, would do)."""

    summary: CycleSummary
    plan: HandoffPlan
    exit_code: int = 0


def run_cycle(
    engine: Engine, now: datetime, dry_run: bool = False, should_stop: Callable[[], str | None] | None = None
) -> CycleResult:
    """Run one cycle; with ``dry_run`` build and return the plan without writing.

    ``should_stop`` is asked between batches and before the handoff writes; a reason it
    returns (a SIGTERM, a lost lease) ends the cycle there, checkpointed, as 'stopped'.
    """
    ctx = CycleContext(now=now, dry_run=dry_run, should_stop=should_stop)
    result = HandoffPlan()
    followed = FollowUpCounts()
    try:
        check_before_writes(  # a ConfigError here ends the run before anything is written
            engine.mapping, engine.state, engine.connectors, engine.config_path, now, remember=not dry_run
        )
        if not dry_run:
            ctx.run_id = engine.state.start_run(now)
        log.info("cycle_started", run=ctx.run_id, dry_run=dry_run)
        execute = Executor(engine, ctx)
        for batch in batches(engine, ctx):
            execute.updates(evaluate(engine, ctx, batch))
        ctx.checkpoint()
        if not dry_run:
            execute.recover()  # before routing: those people are handed off, not queued
            followed = follow_up(engine, ctx, execute)  # reassignments take capacity first
        for step in plan(engine, ctx, result):
            if not dry_run:
                if ctx.should_stop and ctx.should_stop():
                    execute.finish()  # the waiting part-page first
                ctx.checkpoint()  # every planned task so far is written and confirmed: a safe point
                execute.handoffs(step)
                execute.nurture(step)
            for h in step.handoffs:
                result.hand_off(h.summary())
            ctx.forget(step.routed)
        if not dry_run:
            execute.finish()
            open_rows(engine, ctx)  # this cycle's handoffs are watched (and reported) from now on
            execute.prune()
            deliver(engine, ctx)  # this cycle's notifications, and earlier ones not sent yet
    except (QuotaExhausted, StopRequested) as exc:
        ctx.stopped = str(exc)
        log.warning("cycle_stopped", reason=ctx.stopped)
    summary = _summary(engine, ctx, result)
    summary = replace(summary, follow_up=followed.to_json())
    status = "stopped" if ctx.stopped else ("partial" if ctx.errors else "ok")
    if ctx.run_id is not None:
        engine.state.finish_run(ctx.run_id, status, summary.to_json(), ctx.now)
    log.info("cycle_finished", run=ctx.run_id, status=status, handed_off=summary.handed_off)
    return CycleResult(summary, result, exit_code=1 if (ctx.errors or ctx.stopped) else 0)


def run_cycle_or_fail(engine: Engine, now: datetime, dry_run: bool = False) -> CycleResult:
    """``run_cycle``; a CRM failure that ends the cycle is recorded on the run, then raised."""
    try:
        return run_cycle(engine, now, dry_run)
    except CrmError as exc:
        runs = engine.state.recent_runs(1) if not dry_run else []
        if runs and runs[0]["status"] == "running":
            engine.state.finish_run(runs[0]["id"], "failed", {"error": str(exc)}, now)
        raise


# --- summary ------------------------------------------------------------------

WRITE_MARKERS = ("batch/create", "batch/update", "batch/upsert", "composite/sobjects")


def _call_split(calls: Counter[str]) -> CallSplit:
    """API calls split into pulls (reads) and writes by endpoint."""
    writes = sum(
        n for name, n in calls.items() if any(m in name for m in WRITE_MARKERS) and not name.startswith("GET")
    )
    return CallSplit(pull=sum(calls.values()) - writes, write=writes)


def _per_1000(calls: int, records: int) -> float | None:
    return round(calls * 1000 / records, 1) if records else None


def _summary(engine: Engine, ctx: CycleContext, plan: HandoffPlan) -> CycleSummary:
    crms = list(engine.connectors)
    counts = {
        k: {crm: ctx.counts.get(k, Counter()).get(crm, 0) for crm in crms}
        for k in ("tasks_created", "tasks_existing", "created", "updated", "unchanged")
    }
    split = {crm: _call_split(conn.calls) for crm, conn in engine.connectors.items()}
    written = {
        crm: counts["tasks_created"][crm] + counts["updated"][crm] + counts["created"][crm] for crm in crms
    }
    return CycleSummary(
        run_id=ctx.run_id,
        dry_run=ctx.dry_run,
        at=ctx.now.isoformat(),
        stopped=ctx.stopped,
        people_pulled={crm: ctx.pulled.get(crm, 0) for crm in crms},
        people_unchanged=counts["unchanged"],  # pulled, but only our own writes had changed them
        activities_pulled=ctx.pulled_activities,
        activities_new=ctx.new_activities,
        profiles_scored=ctx.scored,
        qualified=len(ctx.qualified),
        handed_off=plan.handed_off,
        handed_off_from_nurture=plan.from_nurture,
        handed_off_per_rep=dict(plan.per_rep),
        capacity_per_rep=dict(plan.capacity),
        unavailable_reps=plan.unavailable_reps,
        kept_in_nurture=sum(n for r, n in plan.nurture_reasons.items() if not is_set_aside(r)),
        set_aside=sum(n for r, n in plan.nurture_reasons.items() if is_set_aside(r)),
        nurture_reasons=dict(plan.nurture_reasons),
        tasks_created=counts["tasks_created"],
        tasks_already_existed=counts["tasks_existing"],
        people_created=counts["created"],
        people_updated=counts["updated"],
        api_calls={crm: sum(conn.calls.values()) for crm, conn in engine.connectors.items()},
        rate_limit_wait_seconds={
            crm: round(conn.rate_limit_waited, 3) for crm, conn in engine.connectors.items()
        },
        api_calls_split=split,
        api_calls_per_1000={
            crm: {
                "people_pulled": _per_1000(split[crm].pull, ctx.pulled.get(crm, 0)),
                "records_written": _per_1000(split[crm].write, written[crm]),
            }
            for crm in crms
        },
        errors=[RecordError(**e) for e in ctx.errors],
        plan=list(plan.handoffs),
        nurture=[NurtureShown(n.name, n.person_key, n.score, n.reason) for n in plan.nurture[:NURTURE_SHOWN]],
    )
