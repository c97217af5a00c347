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

With webhooks on (``HUBSPOT_WEBHOOK_URL``), the HTTP server also takes HubSpot's
deliveries (``sync.webhooks``: verified, stored, acknowledged) and a thread of the worker
runs the ``webhooks`` job, a micro-cycle, soon after a delivery stored something new
(``HANDOFF_WEBHOOK_DELAY_SECONDS``), at start (deliveries a killed worker acknowledged),
after each scheduled cycle, and every ``HANDOFF_WEBHOOK_POLL_SECONDS`` while events another
replica stored are pending. It takes the same lease as every job: only its holder writes.

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
from typing import TYPE_CHECKING, Any

import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobSubmissionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from crm_handoff.errors import ConfigError, CrmError, HandoffError
from mappings.loader import load_mappings
from sync import logs
from sync.lease import LOST, Fence, Heartbeat, Leases, default_holder
from sync.metrics import Metrics
from sync.outcome_figures import outcome_figures
from sync.schedule import Job, load_schedule
from sync.settings import Settings
from sync.state import StateStore

if TYPE_CHECKING:
    from mappings.models import MappingSet
    from sync.metrics import MetricsServer
    from sync.webhooks import Receiver

log = structlog.get_logger("handoff.worker")

LEASE = "cycle"  # every job runs a cycle over the same data: one lease for all of them
WEBHOOK_JOB = "webhooks"  # the micro-cycle after webhook deliveries
WEBHOOK_RETENTION = timedelta(days=3)  # processed events kept to recognise HubSpot's retries (24 h)
RETRY_BUSY = 0.5  # seconds before a micro-cycle that found the lease or the worker busy tries again
RETRY_MAX = 300.0  # the longest back-off after failed micro-cycles
MICRO_WAIT = 120.0  # how long a scheduled job waits for a micro-cycle to finish
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
        self.deliveries = threading.Event()  # set: webhook events may be pending
        self.deliveries.set()  # at start: what a killed worker acknowledged
        self._pruned = 0.0
        self._cycle = threading.Lock()
        self._running: str | None = None  # the job holding ``_cycle``
        self._pulls: dict[str, tuple[str, ...] | None] = {}  # job -> the CRMs it pulls
        self._scheduled_waiting = threading.Event()  # a scheduled job waits for a micro-cycle
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
        if job == WEBHOOK_JOB and self._scheduled_waiting.is_set():
            return self._skip(job, "busy", "a scheduled cycle goes first")
        if not self._acquire(job):
            return self._skip(job, "busy", "another cycle is running in this worker")
        self._running = job
        try:
            return self._leased(job)
        finally:
            self._running = None
            self._cycle.release()
            if job != WEBHOOK_JOB:
                self.deliveries.set()  # events that arrived meanwhile may be waiting

    def _acquire(self, job: str) -> bool:
        """This worker's cycle lock. A scheduled job that finds a micro-cycle running waits
        for it (it ends within seconds; no micro-cycle starts meanwhile), so a steady flow
        of webhooks never crowds out the scheduled safety net."""
        if self._cycle.acquire(blocking=False):
            return True
        if job == WEBHOOK_JOB or self._running != WEBHOOK_JOB:
            return False
        self._scheduled_waiting.set()
        try:
            return self._cycle.acquire(timeout=MICRO_WAIT)
        finally:
            self._scheduled_waiting.clear()

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
            if job == WEBHOOK_JOB:
                engine.trigger = "webhooks"
            engine.pulls = self._pulls.get(job)  # a job may pull some CRMs only (sync.schedule)
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
        self.metrics.outcomes(outcome_figures(self.state.outcome_rows()))
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
        self.metrics.skipped(job, why)
        if job == WEBHOOK_JOB:  # tried again within a second: not a run to record
            log.debug("run_skipped", job=job, reason=reason, worker=self.holder)
            return "skipped"
        log.info("run_skipped", job=job, reason=reason, worker=self.holder)
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

    # --- webhooks -------------------------------------------------------------------
    def delivered(self) -> None:
        """The receiver stored new webhook events: a micro-cycle soon."""
        self.deliveries.set()

    def webhook_loop(self) -> None:
        """Run micro-cycles while webhook events are pending (see the module), until stopping.

        A micro-cycle that failed or stopped is run again (nothing need be pending: its
        people wait on the queue) after a back-off from ``HANDOFF_WEBHOOK_POLL_SECONDS``
        doubling up to ``RETRY_MAX``, until one succeeds.
        """
        s = self.settings
        backoff = 0.0
        while not self.stopping.is_set():
            if self.deliveries.wait(timeout=backoff or s.handoff_webhook_poll_seconds):
                self.stopping.wait(s.handoff_webhook_delay_seconds)  # a burst gathers
            self.deliveries.clear()  # a delivery stored from here on wakes the next round
            if self.stopping.is_set() or not (backoff or self._pending()):
                continue
            backoff = self._micro_cycle(backoff)

    def _micro_cycle(self, backoff: float) -> float:
        """Run the webhooks job once; the back-off before running it again (0: none)."""
        status = self.run_job(WEBHOOK_JOB)
        if status == "skipped":  # the lease or this worker busy: soon again
            self.stopping.wait(RETRY_BUSY)
            self.deliveries.set()
            return backoff
        if status in ("failed", "stopped"):
            return min(max(2 * backoff, self.settings.handoff_webhook_poll_seconds), RETRY_MAX)
        self._prune_deliveries()
        return 0.0

    def _pending(self) -> bool:
        try:
            return self.state.pending_event_count() > 0
        except Exception as exc:  # the state unreachable: the next round asks again
            log.warning("webhook_pending_unknown", error=type(exc).__name__)
            return False

    def _prune_deliveries(self) -> None:
        if time.monotonic() - self._pruned < 3600:
            return
        self._pruned = time.monotonic()
        try:
            self.state.prune_events(datetime.now(UTC) - WEBHOOK_RETENTION)
        except Exception as exc:
            log.warning("webhook_prune_failed", error=type(exc).__name__)

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
            self._pulls[job.name] = job.crms
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


def _check_webhooks(settings: Settings) -> None:
    """Webhooks need the HTTP server they arrive at."""
    if settings.webhooks_enabled and not settings.handoff_metrics_port:
        raise ConfigError(
            "setting HUBSPOT_WEBHOOK_URL: deliveries arrive at the worker's HTTP server, "
            "which HANDOFF_METRICS_PORT=0 turns off; give it a port"
        )


def _http(settings: Settings, state: StateStore, mapping: MappingSet, worker: Worker) -> MetricsServer | None:
    """/metrics, /healthz, /report and the webhook deliveries (sync.report_http), unless off."""
    if not settings.handoff_metrics_port:
        return None
    from sync.report import report_page
    from sync.report_http import ReportServer

    return ReportServer(
        lambda: report_page(state, mapping),
        worker.metrics,
        worker.health,
        settings.handoff_metrics_host,
        settings.handoff_metrics_port,
        receiver=_receiver(settings, state, worker),
    ).start()


def _receiver(settings: Settings, state: StateStore, worker: Worker) -> Receiver | None:
    """The webhook receiver when webhooks are on."""
    secret, url = settings.webhook_secret(), settings.hubspot_webhook_url
    if not (settings.webhooks_enabled and secret and url):
        return None
    from sync.webhooks import Receiver

    return Receiver(state, secret, url, on_stored=worker.delivered)


def serve(settings: Settings, state: StateStore, config: str | None = None) -> int:
    """Run the worker until SIGTERM/SIGINT; the process exit code."""
    _check_webhooks(settings)
    mapping = load_mappings(config or settings.handoff_config)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # its events are logged by the listeners
    worker = Worker(settings, state, config)
    jobs = load_schedule(settings, mapping)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, worker.stop)
    http = _http(settings, state, mapping, worker)
    worker.schedule(jobs)
    worker.scheduler.start()
    if settings.webhooks_enabled:
        threading.Thread(target=worker.webhook_loop, name="webhooks", daemon=True).start()
    log.info(
        "worker_started",
        worker=worker.holder,
        jobs=[j.describe() for j in jobs],
        metrics_port=http.port if http else None,
        webhooks=settings.hubspot_webhook_url if settings.webhooks_enabled else None,
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
