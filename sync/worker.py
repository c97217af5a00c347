"""``handoff run``: the long-running worker.

APScheduler 3 (BackgroundScheduler) fires the jobs of ``sync.schedule``: no two runs of
a job at once (``max_instances=1``), missed runs coalesced into one, late runs dropped
after ``HANDOFF_MISFIRE_GRACE_SECONDS``. Every run first takes the ``cycle`` lease in
the state database, so among several replicas exactly one runs a cycle at a time;
the others skip and say why. The lease is fenced: right before every CRM write batch
the cycle's connectors confirm (and extend) this run's tenure of it in the database
(holder + generation, ``sync.fence``), so a replica that was paused past its TTL and
resumed after another took over stops without writing. Each run binds a ``run_id`` to
every log line, records skipped and failed runs with their reason (``handoff status``),
and feeds the metrics.

On SIGTERM/SIGINT the worker stops accepting jobs, lets the cycle in flight finish
(at most ``HANDOFF_STOP_TIMEOUT_SECONDS``; past that it exits and the ledger's intents
let the next run complete the batch exactly once), releases its lease and exits.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobSubmissionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from crm_handoff.errors import CrmError, HandoffError
from mappings.loader import load_mappings
from sync import logs
from sync.lease import LOST, Fence, Heartbeat, Leases, default_holder
from sync.metrics import Metrics
from sync.schedule import Job, load_schedule
from sync.settings import Settings
from sync.state import StateStore

log = structlog.get_logger("handoff.worker")

LEASE = "cycle"  # every job runs a cycle over the same data: one lease for all of them
SKIP_RETENTION = timedelta(days=7)
EXIT_FORCED = 3


def _scrub(text: str) -> str:
    """One line, no secrets: safe for logs and the state store."""
    line = (text.strip().splitlines() or [""])[0][:500]
    return str(logs._redact(None, "", {"v": line})["v"])


def failure_reason(exc: BaseException) -> str:
    """A short, secret-free reason for a failed run."""
    if isinstance(exc, HandoffError):
        return _scrub(str(exc)) or type(exc).__name__
    return _scrub(f"{type(exc).__name__}: {exc}")


def _still_held(fence: Fence) -> bool:
    """Whether the database still says the lease is this tenure's (True if it cannot say)."""
    try:
        return fence.renew()
    except Exception as exc:
        log.warning("lease_renew_failed", lease=fence.name, error=type(exc).__name__)
        return True


class Worker:
    """Schedules cycles, guards them with the lease, records and measures every run."""

    def __init__(self, settings: Settings, state: StateStore, config: str | None = None) -> None:
        self.settings, self.state, self.config = settings, state, config
        self.holder = settings.handoff_worker_id or default_holder()
        self.leases = Leases(state.engine)
        self.metrics = Metrics()
        self.stopping = threading.Event()
        self._cycle = threading.Lock()
        self.last_run: dict[str, Any] = {}
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(2)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": settings.handoff_misfire_grace_seconds,
            },
        )
        self.scheduler.add_listener(self._missed, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)

    # --- one run ----------------------------------------------------------------
    def run_job(self, job: str) -> str:
        """Run ``job`` once if this worker may: returns ok, partial, failed or skipped."""
        if self.stopping.is_set():
            return self._skip(job, "stopping", "the worker is stopping")
        if not self._cycle.acquire(blocking=False):
            return self._skip(job, "busy", "another cycle is running in this worker")
        try:
            return self._leased(job)
        finally:
            self._cycle.release()

    def _leased(self, job: str) -> str:
        ttl = self.settings.handoff_lease_ttl_seconds
        try:
            lease = self.leases.acquire(LEASE, self.holder, ttl)
        except Exception as exc:
            return self._failed(job, uuid.uuid4().hex[:12], exc, 0)
        if not lease.acquired:
            return self._skip(job, "lease_held", lease.reason())
        if lease.previous:
            self._abandon(lease.previous)
        fence = Fence(self.leases, LEASE, self.holder, lease.generation, ttl)
        try:
            with Heartbeat(fence):
                return self._run(job, lambda: self._stop_reason(fence), fence)
        finally:
            try:
                fence.release()
            except Exception as exc:  # it expires on its own
                log.warning("lease_release_failed", error=type(exc).__name__)

    def _stop_reason(self, fence: Fence) -> str | None:
        """Why the cycle in flight should stop at its next safe point, if it should.

        The lease is confirmed in the database here too (not only by the heartbeat), so a
        replica resumed after a pause stops at once; a database error leaves the decision
        to the write fence, which never writes unconfirmed.
        """
        if fence.lost.is_set() or not _still_held(fence):
            return LOST
        if self.stopping.is_set():
            return "stopped: the worker is shutting down (SIGTERM/SIGINT)"
        return None

    def _run(
        self, job: str, should_stop: Callable[[], str | None] | None = None, fence: Fence | None = None
    ) -> str:
        from sync.cycle import run_cycle
        from sync.wiring import build_engine

        run_uid = uuid.uuid4().hex[:12]
        structlog.contextvars.bind_contextvars(run_id=run_uid, job=job)
        started, last_id = time.monotonic(), self.state.last_run_id()
        try:
            log.info("run_started", worker=self.holder)
            mapping = load_mappings(self.config or self.settings.handoff_config)
            engine = build_engine(self.settings, mapping, self.state, fence=fence.check if fence else None)
            result = run_cycle(engine, datetime.now(UTC), should_stop=should_stop)
        except Exception as exc:
            return self._failed(job, run_uid, exc, last_id)
        finally:
            structlog.contextvars.unbind_contextvars("run_id", "job")
        s = result.summary
        status = "stopped" if s.stopped else ("partial" if result.exit_code else "ok")
        if s.run_id:
            self.state.annotate_run(s.run_id, {"job": job, "worker": self.holder, "run_uid": run_uid})
        self.metrics.observe(s, job, status, time.monotonic() - started)
        self.last_run = {"job": job, "status": status, "run": s.run_id, "at": s.at}
        log.info(
            "run_finished",
            run_id=run_uid,
            job=job,
            run=s.run_id,
            status=status,
            people_pulled=s.people_pulled,
            handed_off=s.handed_off,
            kept_in_nurture=s.kept_in_nurture,
            tasks_created=s.tasks_created,
            api_calls=s.api_calls,
            errors=len(s.errors),
        )
        return status

    # --- skipped, failed, abandoned ---------------------------------------------
    def _skip(self, job: str, why: str, reason: str) -> str:
        log.info("run_skipped", job=job, reason=reason, worker=self.holder)
        self.metrics.skipped(job, why)
        now = datetime.now(UTC)
        try:
            self.state.record_run("skipped", {"job": job, "reason": reason, "worker": self.holder}, now)
            self.state.prune_runs("skipped", now - SKIP_RETENTION)
        except Exception as exc:
            log.warning("skip_not_recorded", job=job, error=type(exc).__name__)
        return "skipped"

    def _failed(self, job: str, run_uid: str, exc: Exception, last_id: int) -> str:
        reason = failure_reason(exc)
        crm = exc.crm if isinstance(exc, CrmError) else ""
        log.error("run_failed", run_id=run_uid, job=job, reason=reason, error_kind=type(exc).__name__)
        self.metrics.failed(job, type(exc).__name__, crm)
        self.last_run = {"job": job, "status": "failed", "reason": reason}
        now = datetime.now(UTC)
        extra = {"job": job, "reason": reason, "worker": self.holder, "run_uid": run_uid}
        try:
            if not self.state.fail_running_runs(reason, now, after_id=last_id):
                self.state.record_run("failed", extra, now)
        except Exception as db_exc:
            log.warning("failure_not_recorded", job=job, error=type(db_exc).__name__)
        return "failed"

    def _abandon(self, previous: str) -> None:
        reason = f"abandoned: worker {previous} stopped renewing the lease (it died or hung)"
        n = self.state.fail_running_runs(reason, datetime.now(UTC))
        log.warning("lease_taken_over", previous=previous, worker=self.holder, abandoned_runs=n)

    def _missed(self, event: JobSubmissionEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            grace = self.settings.handoff_misfire_grace_seconds
            self._skip(event.job_id, "missed", f"missed its start time by more than {grace} s")
        else:
            self._skip(event.job_id, "busy", "the previous run of this job is still going")

    # --- the process --------------------------------------------------------------
    def health(self) -> tuple[bool, dict[str, Any]]:
        ok = self.scheduler.running and not self.stopping.is_set()
        return ok, {
            "status": "ok" if ok else "stopping",
            "worker": self.holder,
            "running_cycle": self._cycle.locked(),
            "last_run": self.last_run,
        }

    def schedule(self, jobs: list[Job]) -> None:
        """Add the jobs; interval jobs also run once right away."""
        now = datetime.now(UTC)
        for job in jobs:
            first: dict[str, Any] = {"next_run_time": now} if job.run_at_start else {}
            self.scheduler.add_job(
                self.run_job, job.trigger, args=[job.name], id=job.name, name=job.name, **first
            )

    def stop(self, *_: Any) -> None:
        self.stopping.set()

    def wait_idle(self, timeout: float) -> bool:
        """Wait for the cycle in flight (if any) to finish; False on timeout."""
        if not self._cycle.acquire(timeout=timeout):
            return False
        self._cycle.release()
        return True


def serve(settings: Settings, state: StateStore, config: str | None = None) -> int:
    """Run the worker until SIGTERM/SIGINT; the process exit code."""
    mapping = load_mappings(config or settings.handoff_config)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # its events are logged by the listeners
    worker = Worker(settings, state, config)
    jobs = load_schedule(settings, mapping)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, worker.stop)
    http = None
    if settings.handoff_metrics_port:  # /metrics, /healthz and /report (sync.report_http)
        from sync.report import report_page
        from sync.report_http import ReportServer

        http = ReportServer(
            lambda: report_page(state, mapping),
            worker.metrics,
            worker.health,
            settings.handoff_metrics_host,
            settings.handoff_metrics_port,
        ).start()
    worker.schedule(jobs)
    worker.scheduler.start()
    log.info(
        "worker_started",
        worker=worker.holder,
        jobs=[j.describe() for j in jobs],
        metrics_port=http.port if http else None,
        lease_ttl_seconds=settings.handoff_lease_ttl_seconds,
    )
    worker.stopping.wait()
    log.info("worker_stopping", worker=worker.holder)
    worker.scheduler.shutdown(wait=False)
    finished = worker.wait_idle(settings.handoff_stop_timeout_seconds)
    if http:
        http.stop()
    if not finished:
        log.error(
            "stop_timeout",
            worker=worker.holder,
            detail="the cycle in flight was cut short; the next run completes its batch from the ledger",
        )
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_FORCED)  # the cycle thread cannot be joined: leave without waiting for it
    log.info("worker_stopped", worker=worker.holder)
    return 0
