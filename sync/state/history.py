"""Stage history and run history (with the heartbeat of running runs)."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from sync.state.base import _Store
from sync.state.rows import (
    _parts,
    _upsert,
    _utc,
)
from sync.state.tables import (
    current_stage,
    record_errors,
    runs,
    stage_history,
)

INTERRUPTED = "interrupted: the process ended before the run finished"
RUN_BEAT_SECONDS = 30.0  # how often a running run's process says it is alive
RUN_SILENT_SECONDS = 300.0  # a run on another machine silent this long is dead


class RunStore(_Store):
    """Stage history and run history (with the heartbeat of running runs)."""

    def record_stages(
        self, stages: dict[str, str], at: datetime, entered: Mapping[str, datetime] | None = None
    ) -> None:
        """Remember each person's current stage and, the first time they are seen in it, an
        entry into it: at ``entered`` where the CRM says when (HubSpot's stage-date
        property), else ``at``. Only the stage seen is recorded: never earlier stages."""
        if not stages:
            return
        with self._begin() as conn:
            keys = list(stages)
            seen: set[tuple[str, str]] = set()
            for part in _parts(keys):
                seen |= {
                    (k, s)
                    for k, s in conn.execute(
                        select(stage_history.c.person_key, stage_history.c.stage).where(
                            stage_history.c.person_key.in_(part)
                        )
                    )
                }
            new = [
                {"person_key": k, "stage": s, "entered_at": (entered or {}).get(k, at)}
                for k, s in stages.items()
                if (k, s) not in seen
            ]
            if new:
                conn.execute(insert(stage_history), new)
            _upsert(
                conn,
                current_stage,
                [{"person_key": k, "stage": s, "updated_at": at} for k, s in stages.items()],
            )

    def current_stages(self) -> dict[str, int]:
        with self._connect() as conn:
            rows = conn.execute(
                select(current_stage.c.stage, func.count()).group_by(current_stage.c.stage)
            ).all()
        return {stage: int(n) for stage, n in rows}

    def stage_entries(self) -> dict[str, int]:
        """Stage -> how many people have a recorded entry into it (one GROUP BY)."""
        with self._connect() as conn:
            rows = conn.execute(
                select(stage_history.c.stage, func.count()).group_by(stage_history.c.stage)
            ).all()
        return {stage: int(n) for stage, n in rows}

    def stage_conversions(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """``(a, b)`` -> how many people have recorded entries into both ``a`` and ``b``, ``b``
        entered at or after ``a`` (one self-join on the history, grouped: no per-person rows)."""
        if not pairs:
            return {}
        a, b = stage_history.alias("a"), stage_history.alias("b")
        query = (
            select(a.c.stage, b.c.stage, func.count())
            .select_from(a.join(b, and_(a.c.person_key == b.c.person_key, b.c.entered_at >= a.c.entered_at)))
            .where(or_(*(and_(a.c.stage == x, b.c.stage == y) for x, y in pairs)))
            .group_by(a.c.stage, b.c.stage)
        )
        with self._connect() as conn:
            found = {(x, y): int(n) for x, y, n in conn.execute(query)}
        return {pair: found.get(pair, 0) for pair in pairs}

    def start_run(self, at: datetime) -> int:
        """Record a new run as 'running', owned by this process (``_RunBeat`` shows it alive);
        first, runs left 'running' by a process that ended (kill -9, a crash) are marked
        failed (``INTERRUPTED``). Another live process's run is never marked."""
        self.fail_running_runs(INTERRUPTED, datetime.now(UTC))
        owner = {**_this_process(), "beat": datetime.now(UTC).isoformat()}
        with self._begin() as conn:
            result = conn.execute(
                insert(runs).values(started_at=at, status="running", summary={"owner": owner})
            )
            run_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        _RunBeat(self, run_id, owner)
        return run_id

    def finish_run(self, run_id: int, status: str, summary: dict[str, Any], at: datetime) -> None:
        with self._begin() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(status=status, summary=json.loads(json.dumps(summary, default=str)), finished_at=at)
            )
        _RunBeat.end(self.url, run_id)

    def recent_runs(self, limit: int = 10) -> list[dict[str, Any]]:
        with self._connect() as conn:
            rows = conn.execute(select(runs).order_by(runs.c.id.desc()).limit(limit)).all()
        return [dict(r._mapping) for r in rows]

    def record_error(self, run_id: int | None, crm: str, record: str, reason: str, at: datetime) -> None:
        with self._begin() as conn:
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(record_errors).values(
                            run_id=run_id, crm=crm, record=record, reason=reason[:2000], at=at, resolved=False
                        )
                    )
            except IntegrityError:
                pass

    def open_errors(self, limit: int = 50) -> list[dict[str, Any]]:
        """Record errors of the latest run that had any."""
        with self._connect() as conn:
            last = conn.execute(select(func.max(record_errors.c.run_id))).scalar()
            if last is None:
                return []
            rows = conn.execute(
                select(record_errors)
                .where(and_(record_errors.c.run_id == last))
                .order_by(record_errors.c.id)
                .limit(limit)
            ).all()
        return [dict(r._mapping) for r in rows]

    def record_run(self, status: str, summary: dict[str, Any], at: datetime) -> int:
        """A finished run row written by the worker (a skipped or failed job, with its reason)."""
        clean = json.loads(json.dumps(summary, default=str))
        with self._begin() as conn:
            result = conn.execute(
                insert(runs).values(started_at=at, finished_at=at, status=status, summary=clean)
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def annotate_run(self, run_id: int, extra: dict[str, Any]) -> None:
        """Merge ``extra`` (job name, worker, run id) into a run's summary."""
        with self._begin() as conn:
            summary = conn.execute(select(runs.c.summary).where(runs.c.id == run_id)).scalar()
            merged = {**(summary or {}), **json.loads(json.dumps(extra, default=str))}
            conn.execute(update(runs).where(runs.c.id == run_id).values(summary=merged))

    def last_run_id(self) -> int:
        with self._connect() as conn:
            return int(conn.execute(select(func.max(runs.c.id))).scalar() or 0)

    def fail_running_runs(self, reason: str, at: datetime, after_id: int = 0) -> int:
        """Mark runs still 'running' (id > after_id) whose process is gone as failed with
        ``reason`` (``_run_alive``: a run of another live process or thread is left alone);
        how many."""
        me, wall = _this_process(), datetime.now(UTC)
        with self._begin() as conn:
            rows = conn.execute(
                select(runs.c.id, runs.c.started_at, runs.c.summary).where(
                    runs.c.status == "running", runs.c.id > after_id
                )
            ).all()
            dead = [r for r in rows if not _run_alive(self.url, r.id, r.started_at, r.summary, me, wall)]
            for run_id, _, summary in dead:
                conn.execute(
                    update(runs)
                    .where(runs.c.id == run_id, runs.c.status == "running")
                    .values(status="failed", finished_at=at, summary={**(summary or {}), "reason": reason})
                )
        for run_id, _, _ in dead:
            _RunBeat.end(self.url, run_id)
        return len(dead)

    def runs_by_status(
        self, statuses: Sequence[str], limit: int = 10, exclude: bool = False
    ) -> list[dict[str, Any]]:
        """Recent runs whose status is (or, with ``exclude``, is not) one of ``statuses``."""
        cond = runs.c.status.not_in(statuses) if exclude else runs.c.status.in_(statuses)
        with self._connect() as conn:
            rows = conn.execute(select(runs).where(cond).order_by(runs.c.id.desc()).limit(limit)).all()
        return [dict(r._mapping) for r in rows]

    def prune_runs(self, status: str, before: datetime) -> None:
        """Forget runs of ``status`` (e.g. skipped) started before ``before``."""
        with self._begin() as conn:
            conn.execute(delete(runs).where(runs.c.status == status, runs.c.started_at < before))


class _RunBeat:
    """The running runs of this process: each touches its row every ``RUN_BEAT_SECONDS``
    (a daemon thread) until it finishes, so other machines can tell it is alive."""

    active: dict[tuple[str, int], _RunBeat] = {}
    lock = threading.Lock()

    def __init__(self, store: _Store, run_id: int, owner: dict[str, Any]) -> None:
        self.store, self.thread, self.stop = store, threading.get_ident(), threading.Event()
        with self.lock:
            self.active[(store.url, run_id)] = self
        if store.engine.url.database not in (None, "", ":memory:"):  # others can see the row
            threading.Thread(
                target=self._beat, args=(run_id, owner), name=f"run-{run_id}-beat", daemon=True
            ).start()

    def _beat(self, run_id: int, owner: dict[str, Any]) -> None:
        while not self.stop.wait(RUN_BEAT_SECONDS):
            beat = {"owner": {**owner, "beat": datetime.now(UTC).isoformat()}}
            try:
                with self.store.engine.begin() as conn:
                    touched = conn.execute(
                        update(runs)
                        .where(runs.c.id == run_id, runs.c.status == "running")
                        .values(summary=beat)
                    ).rowcount
            except Exception:  # a busy or unreachable database: the next beat tries again
                continue
            if not touched:
                return

    @classmethod
    def end(cls, url: str, run_id: int) -> None:
        with cls.lock:
            beat = cls.active.pop((url, run_id), None)
        if beat is not None:
            beat.stop.set()

    @classmethod
    def running_elsewhere(cls, url: str, run_id: int) -> bool | None:
        """Whether this process runs ``run_id`` on a thread other than the caller's (the
        caller's own earlier run is over: a thread runs one cycle at a time); None: not ours."""
        with cls.lock:
            beat = cls.active.get((url, run_id))
        return None if beat is None else beat.thread != threading.get_ident()


def _stop_beats(store: _Store) -> None:
    with _RunBeat.lock:
        for beat in _RunBeat.active.values():
            if beat.store is store:
                beat.stop.set()


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _proc_stat(pid: int) -> tuple[str, str]:
    """(state, start time in ticks since boot) of process ``pid`` from /proc; '' unknown."""
    fields = _read(f"/proc/{pid}/stat").rsplit(")", 1)[-1].split()
    return (fields[0], fields[19]) if len(fields) > 19 else ("", "")


def _this_process() -> dict[str, Any]:
    """Who runs a run: the machine (host, boot, pid namespace), the pid and its start time."""
    try:
        ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        ns = ""
    machine = f"{socket.gethostname()}|{_read('/proc/sys/kernel/random/boot_id')}|{ns}"
    return {"machine": machine, "pid": os.getpid(), "since": _proc_stat(os.getpid())[1]}


def _pid_alive(pid: int, since: str) -> bool:
    """Whether process ``pid`` (started at ``since``, if known) still runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, run by another user
    state, started = _proc_stat(pid)
    return state not in ("Z", "X") and (not since or not started or started == since)


def _run_alive(
    url: str, run_id: int, started_at: datetime, summary: Any, me: dict[str, Any], now: datetime
) -> bool:
    """Whether a 'running' run's process may still be running it: this process's runs by its
    registry; another process on this machine by its pid; another machine's by its beat."""
    owner = (summary or {}).get("owner") if isinstance(summary, dict) else None
    if not isinstance(owner, dict):  # recorded before runs had owners: by its age
        return now - (_utc(started_at) or now) < timedelta(seconds=RUN_SILENT_SECONDS)
    here = _RunBeat.running_elsewhere(url, run_id)
    if here is not None:
        return here
    if owner.get("machine") == me["machine"] and os.name == "posix":
        if owner.get("pid") == me["pid"] and owner.get("since") == me["since"]:
            return False  # this process, no longer running it: its cycle ended unfinished
        return _pid_alive(int(owner.get("pid") or 0), str(owner.get("since") or ""))
    try:
        beat = _utc(datetime.fromisoformat(str(owner.get("beat"))))
    except ValueError:
        return False
    return beat is not None and now - beat < timedelta(seconds=RUN_SILENT_SECONDS)
