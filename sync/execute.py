"""Stage 4, execute: the only stage that writes to a CRM.

Entry point: ``Executor(engine, ctx)``, with one method per kind of work the other
stages hand it:

- ``updates(evaluation)``: an evaluated batch's field writes, sent one batch per CRM
  (CRMs in parallel); then the batch enters the mirror with what was written (a pulled
  chunk enters it only with its writes done: until then a re-pull of it is decided
  again, never skipped as an echo);
- ``recover()``: handoffs a stopped or crashed run did not finish (open ledger intents);
- ``handoffs(step)``: a plan step's handoffs, exactly once (``sync.tasks``), then the
  people's stage, status and owner; tasks go out in whole pages, a step's remainder
  waiting as intents for the next (``finish`` writes the last part-page);
- ``nurture(step)``: the people the plan deferred, their waiting status shown once.

A CRM whose daily API budget runs out (``QuotaExhausted``) stops the cycle cleanly:
pull checkpoints and ledger intents are saved, so the next run continues from there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from crm_handoff.records import Person, TaskClose
from sync import queue
from sync.context import PLAN_BATCH, CycleContext, PlannedHandoff, record_error
from sync.engine import Engine
from sync.evaluate import Evaluation, entered, load_profiles
from sync.items import QueueItem
from sync.notify import queue_handoffs
from sync.plan import Deferred, PlanStep, brief_for
from sync.send import mirror_written, send
from sync.setaside import is_set_aside
from sync.state import LedgerEntry
from sync.tasks import create_missing_people, intents, write_tasks
from sync.writes import (
    STATUS_HANDED_OFF,
    STATUS_NO_REP,
    STATUS_SET_ASIDE,
    STATUS_WAITING,
    Writes,
    handoff_values,
    stage_values,
)

NURTURE_FLUSH = 5000  # nurture writes gathered before whole pages of them are sent


@dataclass
class _Pending:
    """Handoffs whose tasks wait for a full page (tasks are written a whole page a call)."""

    entries: list[LedgerEntry] = field(default_factory=list)
    handoffs: dict[str, PlannedHandoff] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    written: list[tuple[str, str, str]] = field(default_factory=list)  # to confirm once finished
    finished: list[PlannedHandoff] = field(default_factory=list)  # tasks written, people not yet


class Executor:
    """Sends one cycle's writes (see the module)."""

    def __init__(self, engine: Engine, ctx: CycleContext) -> None:
        self.engine = engine
        self.ctx = ctx
        self.state = engine.state
        self._pending = _Pending()
        self._nurture = Writes()  # nurture statuses gathered until a whole page per CRM
        self._shown: list[tuple[QueueItem, set[tuple[str, str, str]]]] = []  # and whose they are

    # --- field writes ----------------------------------------------------------
    def updates(self, evaluation: Evaluation) -> None:
        """Send an evaluated batch's field writes; then save it and them in one transaction."""
        if self.ctx.dry_run:
            return
        profiles = evaluation.profiles
        known: dict[tuple[str, str], Person] = {
            (q.crm, q.id): q for prof in profiles.values() for q in (prof.hubspot, prof.salesforce) if q
        }
        written = send(self.engine, self.ctx, evaluation.writes, mirror=False)
        pulled = [p for p in evaluation.batch.people if not p.deleted] if evaluation.batch.fresh else []
        state = self.state
        with state.batch(lazy_sync=True):
            state.save_people(pulled)
            for crm, values in written.items():
                mirror_written(self.engine, crm, values, known)  # the chunk and its counterparts, in memory
            state.save_identities([p.identity() for p in profiles.values()])
            state.save_field_values(
                {k: dict(p.values) for k, p in profiles.items() if p.hubspot and p.salesforce}
            )
            stages = {k: p.stage for k, p in profiles.items() if p.stage}
            state.record_stages(stages, self.ctx.now, entered(profiles))

    # --- handoffs --------------------------------------------------------------
    def recover(self) -> None:
        """Handoffs a stopped or crashed run did not finish: their tasks found in the CRM if
        written, else written now; then, like any handoff, the people's stage and status."""
        engine, ctx = self.engine, self.ctx
        recovered = self.state.open_intents()
        if not recovered:
            return
        written: list[tuple[str, str, str]] = []
        done = write_tasks(engine, ctx, recovered, {(e.key, e.crm) for e in recovered}, written)
        keys = sorted({e.person_key for e in recovered if e.key in done})
        load_profiles(engine, ctx, keys)
        reps = {r.email: r for r in engine.mapping.reps.reps}
        handoffs: dict[str, PlannedHandoff] = {}
        for e in recovered:
            prof, q, rep = (
                ctx.profiles.get(e.person_key),
                ctx.qualifications.get(e.person_key),
                reps.get(e.rep_email),
            )
            if (
                e.key in done
                and e.key not in handoffs
                and prof is not None
                and q is not None
                and rep is not None
            ):
                brief = brief_for(engine, ctx, e.person_key, rep)
                handoffs[e.key] = PlannedHandoff(
                    e.key, e.episode, prof, rep, "recovered", q, brief, engine.task_crms(rep)
                )
        self._complete(list(handoffs.values()), done, keys, written)
        ctx.forget(keys)

    def handoffs(self, step: PlanStep, last: bool = False) -> None:
        """One plan step's handoffs: missing people created, intents recorded, tasks
        written (exactly once), then the handed-off people's stage and status.

        Tasks are written in whole pages; a step's remainder waits, recorded as intents,
        for the next step (``last``: written now), so batching costs no extra write call.
        """
        engine, ctx, pending = self.engine, self.ctx, self._pending
        create_missing_people(engine, ctx, step.handoffs)
        entries = intents(engine, ctx, step.handoffs)
        self.state.record_intents(entries, ctx.run_id)
        pending.entries += entries
        pending.handoffs.update({h.key: h for h in step.handoffs})
        pending.done |= write_tasks(engine, ctx, self._whole_pages(last), set(), pending.written)
        waiting = {e.key for e in pending.entries}
        for h in [h for k, h in pending.handoffs.items() if k not in waiting]:
            del pending.handoffs[h.key]
            pending.finished.append(h)
        if len(pending.finished) < PLAN_BATCH and not last:
            return  # their people's writes go out together: whole pages, as the tasks did
        finished, pending.finished = pending.finished, []
        handed = sorted({h.profile.key for h in finished if h.key in pending.done})
        ended = {h.key for h in finished}
        self._complete(finished, pending.done, handed, [w for w in pending.written if w[0] in ended])
        pending.written = [w for w in pending.written if w[0] not in ended]

    def _whole_pages(self, last: bool) -> list[LedgerEntry]:
        """The waiting intents that fill whole task pages per CRM (``last``: all of them),
        taken off the waiting list."""
        pending, now = self._pending, []
        for crm, conn in self.engine.connectors.items():
            mine = [e for e in pending.entries if e.crm == crm]
            now += mine if last else mine[: len(mine) - len(mine) % conn.task_page]
        sent = {(e.key, e.crm) for e in now}
        pending.entries = [e for e in pending.entries if (e.key, e.crm) not in sent]
        return now

    def finish(self) -> None:
        """The tasks and nurture statuses still waiting for a full page are written now."""
        if self._pending.entries or self._pending.handoffs or self._pending.finished:
            self.handoffs(PlanStep(), last=True)
        if self._shown or self._nurture.values:
            self._flush_nurture(everything=True)

    def _complete(
        self,
        handoffs: Sequence[PlannedHandoff],
        done: set[str],
        handed: Sequence[str],
        written: Sequence[tuple[str, str, str]],
    ) -> None:
        """The people of handoffs whose tasks exist: stage and status written, out of the
        queue; only then are the tasks confirmed in the ledger (the handoffs are complete)."""
        send(self.engine, self.ctx, self._handoff_writes(handoffs, done))
        self.state.dequeue(handed)
        self.state.record_stages(dict.fromkeys(handed, "sql"), self.ctx.now)
        with self.state.batch():  # confirmed and their notifications recorded together (sync.notify)
            self.state.confirm_many(written, self.ctx.now)
            queue_handoffs(self.engine, self.ctx, handoffs, done)

    def _handoff_writes(self, handoffs: Sequence[PlannedHandoff], done: set[str]) -> Writes:
        """Handed off: stage SQL, handoff status/reason/score/rep and the owner, both CRMs."""
        writes = Writes()
        for h in handoffs:
            if h.key not in done:
                continue
            reason = "; ".join(f"{r.rule} (+{r.points})" for r in h.qualification.reasons)
            for person, own, other in (
                (h.profile.hubspot, h.profile.hubspot_stage, h.profile.salesforce),
                (h.profile.salesforce, h.profile.salesforce_stage, h.profile.hubspot),
            ):
                if person is None or person.crm not in self.engine.connectors:
                    continue
                values = self._handed_off(
                    h, person, own, other, f"score {h.qualification.score}: {reason}", writes
                )
                writes.put(person.crm, person.id, person.object_type, values)
        return writes

    def _handed_off(
        self,
        h: PlannedHandoff,
        person: Person,
        own: str | None,
        other: Person | None,
        reason: str,
        writes: Writes,
    ) -> dict[str, Any]:
        crm, conn = person.crm, self.engine.connectors[person.crm]
        values = stage_values(self.engine.mapping, crm, person, own, "sql", writes)
        values |= handoff_values(
            conn, STATUS_HANDED_OFF, reason, h.qualification.score, h.rep.name, self.ctx.now
        )
        if other and person.linked_id != other.id:  # e.g. the lead just created for this handoff
            values[conn.handoff_fields["link"]] = other.id
        owner = self.ctx.owner_ids(crm).get(h.rep.email)
        if self.engine.mapping.handoff.set_owner and owner and not person.converted_to:
            values[conn.owner_field] = owner
        return values

    # --- follow-up (sync.followup) ---------------------------------------------
    def close_tasks(self, closes: Mapping[str, Sequence[TaskClose]]) -> None:
        """Close tasks with their note (idempotent: one already closed is left); a task a CRM
        refused is a record error."""
        for crm, items in closes.items():
            for res in self.engine.connectors[crm].close_tasks(items) if items else []:
                if not res.ok:
                    record_error(self.state, self.ctx, crm, f"task {res.key}", res.error or "not closed")

    def people(self, writes: Writes) -> None:
        """Send field writes on people (one batch per CRM) and mirror them."""
        if writes.values or writes.clear_first:
            send(self.engine, self.ctx, writes)

    # --- nurture ---------------------------------------------------------------
    def nurture(self, step: PlanStep) -> None:
        """Deferred people stay in nurture, visibly: their waiting status written once.

        The writes gather across steps and go out in whole pages per CRM (``finish``
        sends the rest), so reading the queue page by page costs no extra write call.
        """
        if self.ctx.dry_run or not step.deferred:
            return
        for d in step.deferred:
            if d.item.status_written == _shown(d.reason):
                continue
            if d.is_error:  # said once, when first set aside
                self._set_aside_error(d)
            before = set(self._nurture.values)
            self._nurture_writes(d, self._nurture)
            self._shown.append(
                (d.item.with_status(_shown(d.reason), d.reason), set(self._nurture.values) - before)
            )
        if len(self._nurture.values) >= NURTURE_FLUSH:
            self._flush_nurture(everything=False)

    def _flush_nurture(self, everything: bool) -> None:
        """Send the gathered nurture writes (only whole pages per CRM unless ``everything``);
        the people all of whose writes went out are remembered as shown."""
        now, keep = Writes(), Writes()
        for crm, conn in self.engine.connectors.items():
            keys = [k for k in self._nurture.values if k[0] == crm]
            cut = len(keys) if everything else len(keys) - len(keys) % max(1, conn.task_page)
            for i, k in enumerate(keys):
                target = now if i < cut else keep
                target.values[k] = self._nurture.values[k]
                if k in self._nurture.clear_first:
                    target.clear_first.add(k)
        send(self.engine, self.ctx, now)
        done = [item for item, keys in self._shown if not keys & set(keep.values)]
        self._shown = [(item, keys) for item, keys in self._shown if keys & set(keep.values)]
        self._nurture = keep
        self.state.mark_shown(done)

    def prune(self) -> None:
        """Activity older than the longest behaviour window leaves the state."""
        if not self.ctx.dry_run:
            window = self.ctx.now - timedelta(days=self.engine.window_days)
            self.state.prune_activities(window - timedelta(days=1))

    def _nurture_writes(self, d: Deferred, writes: Writes) -> None:
        ctx, key = self.ctx, d.item.person_key
        status = _waiting_status(d.reason)
        shown = f"{d.reason} (score {d.item.score})"
        prof = ctx.profiles.get(key)
        for crm, conn in self.engine.connectors.items():
            person = getattr(prof, crm, None) if prof else None
            if person is not None and person.converted_to:
                continue
            values = handoff_values(conn, status, shown, d.item.score, "", ctx.now)
            if person is not None and prof is not None:
                own = prof.hubspot_stage if crm == "hubspot" else prof.salesforce_stage
                if own == "lead" and not is_set_aside(d.reason):  # waiting to be worked: an MQL
                    values |= stage_values(self.engine.mapping, crm, person, own, "mql", writes)
                writes.put(crm, person.id, person.object_type, values)
            elif crm in d.item.snapshot.records:
                pid, kind = d.item.snapshot.records[crm]
                writes.put(crm, pid, kind or "contact", values)  # older rows: no HubSpot type

    def _set_aside_error(self, d: Deferred) -> None:
        """A person set aside for their records' data: a record error on each of those records."""
        records = {crm: r for crm, r in d.item.snapshot.records.items() if crm in self.engine.connectors}
        for crm, (pid, kind) in records.items():
            record_error(self.state, self.ctx, crm, f"{crm}:{kind or 'contact'}/{pid}", d.reason)
        if not records:
            record_error(self.state, self.ctx, "state", d.item.person_key, d.reason)


def _waiting_status(reason: str) -> str:
    """The status written for a deferred person: one of ``HANDOFF_STATUSES`` (the reason says why)."""
    if is_set_aside(reason):
        return STATUS_SET_ASIDE
    return STATUS_WAITING if reason.startswith("rep capacity") else STATUS_NO_REP


def _shown(reason: str) -> str:
    """What the queue remembers was written for a deferred person (status and reason)."""
    return f"{_waiting_status(reason)}: {reason}"


def queued_keys(engine: Engine, ctx: CycleContext, keys: Sequence[str]) -> set[str]:
    """Which of these people are on the queue."""
    return set(queue.items(engine.state, ctx, keys))
