"""Runs left 'running' by a process that ended are marked failed when the next run starts;
a run some live process (here, another machine, another thread) is still running is not."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select

import sync.state.history as state_mod
from sync.state import INTERRUPTED, RUN_SILENT_SECONDS, StateStore, _proc_stat, _this_process, runs


@pytest.fixture
def state(state_url):
    s = StateStore(state_url)
    s.create_schema()
    yield s
    s.close()


def _row(state: StateStore, run_id: int) -> dict:
    with state.engine.connect() as conn:
        return dict(conn.execute(select(runs).where(runs.c.id == run_id)).one()._mapping)


def _running(state: StateStore, summary: dict | None, started: datetime | None = None) -> int:
    with state.engine.begin() as conn:
        result = conn.execute(
            insert(runs).values(started_at=started or datetime.now(UTC), status="running", summary=summary)
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]


def _owner(**kw) -> dict:
    return {**_this_process(), "beat": datetime.now(UTC).isoformat(), **kw}


def test_another_machines_run_is_marked_only_once_it_has_been_silent(state):
    now = datetime.now(UTC)
    talking = _running(state, {"owner": _owner(machine="pod-b|boot|ns", pid=7, beat=now.isoformat())})
    silent = _running(
        state,
        {
            "owner": _owner(
                machine="pod-c|boot|ns",
                pid=7,
                beat=(now - timedelta(seconds=RUN_SILENT_SECONDS + 5)).isoformat(),
            )
        },
    )
    mine = state.start_run(now)
    assert _row(state, talking)["status"] == "running"
    failed = _row(state, silent)
    assert failed["status"] == "failed" and failed["summary"]["reason"] == INTERRUPTED
    assert failed["finished_at"] is not None
    state.finish_run(mine, "ok", {}, now)


def test_a_run_recorded_without_an_owner_is_judged_by_its_age(state):
    now = datetime.now(UTC)
    fresh = _running(state, None, now - timedelta(seconds=10))
    old = _running(state, None, now - timedelta(hours=3))
    state.finish_run(state.start_run(now), "ok", {}, now)
    assert _row(state, fresh)["status"] == "running"
    assert _row(state, old)["status"] == "failed"


def test_a_process_on_this_machine_is_asked_whether_it_still_runs(state):
    parent = os.getppid()
    alive = _running(state, {"owner": _owner(pid=parent, since=_proc_stat(parent)[1])})
    reused = _running(state, {"owner": _owner(pid=parent, since="1")})  # same pid, another process
    gone = _running(state, {"owner": _owner(pid=2**22 + 12345, since="99")})
    # the worker's own failure path marks only the runs no live process owns
    assert state.fail_running_runs("boom", datetime.now(UTC)) == 2
    assert _row(state, alive)["status"] == "running"
    assert _row(state, reused)["status"] == "failed" and _row(state, gone)["status"] == "failed"


def test_in_one_process_another_threads_run_is_alive_this_threads_earlier_one_is_over(state):
    now = datetime.now(UTC)
    started: list[int] = []
    thread = threading.Thread(target=lambda: started.append(state.start_run(now)))
    thread.start()
    thread.join()
    left = state.start_run(now)  # this thread's cycle raised without finishing it
    again = state.start_run(now)
    assert _row(state, started[0])["status"] == "running"  # its thread may still be in it
    assert _row(state, left)["status"] == "failed" and _row(state, left)["summary"]["reason"] == INTERRUPTED
    state.finish_run(again, "ok", {"handed_off": 0}, now)
    assert _row(state, again)["status"] == "ok" and _row(state, again)["summary"] == {"handed_off": 0}


def test_a_running_run_beats_until_it_finishes(state, monkeypatch):
    if state.engine.url.database in (None, "", ":memory:"):
        pytest.skip("an in-memory state is not shared")
    monkeypatch.setattr(state_mod, "RUN_BEAT_SECONDS", 0.05)
    run_id = state.start_run(datetime.now(UTC))
    first = _row(state, run_id)["summary"]["owner"]["beat"]
    deadline = time.monotonic() + 10
    while _row(state, run_id)["summary"]["owner"]["beat"] == first and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _row(state, run_id)["summary"]["owner"]["beat"] > first
    state.finish_run(run_id, "ok", {"done": True}, datetime.now(UTC))
    time.sleep(0.3)
    assert _row(state, run_id)["summary"] == {"done": True}  # no beat after the finish
