"""Prometheus metrics of the worker, fed from each cycle's summary, and its HTTP endpoint.

One dedicated ``CollectorRegistry`` per worker (no global state). ``/metrics`` serves
the Prometheus text format, ``/healthz`` a small JSON status (503 while stopping).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from werkzeug.serving import BaseWSGIServer, make_server

from sync.summary import CycleSummary

HealthFn = Callable[[], tuple[bool, dict[str, Any]]]


class Metrics:
    """The worker's counters and gauges in their own registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.runs = Counter("handoff_runs", "Jobs run, by job and outcome", ["job", "status"], registry=r)
        self.skips = Counter(
            "handoff_runs_skipped", "Jobs skipped, by job and why", ["job", "why"], registry=r
        )
        self.pulled = Counter("handoff_records_pulled", "People pulled, per CRM", ["crm"], registry=r)
        self.handoffs = Counter("handoff_handoffs", "Leads handed off, per rep", ["rep"], registry=r)
        self.tasks = Counter("handoff_tasks_created", "Handoff tasks created, per CRM", ["crm"], registry=r)
        self.api_calls = Counter("handoff_api_calls", "CRM API calls, per CRM", ["crm"], registry=r)
        self.rate_waits = Counter(
            "handoff_rate_limit_wait_seconds",
            "Seconds spent waiting for rate limits, per CRM",
            ["crm"],
            registry=r,
        )
        self.errors = Counter("handoff_errors", "Errors, by kind and CRM", ["kind", "crm"], registry=r)
        self.capacity = Gauge("handoff_rep_capacity", "Weekly capacity per rep", ["rep"], registry=r)
        self.capacity_used = Gauge(
            "handoff_rep_capacity_used", "Handoffs counted against this week's capacity", ["rep"], registry=r
        )
        self.nurture = Gauge(
            "handoff_kept_in_nurture", "Sales-ready people waiting after the last run", registry=r
        )
        self.follow_up = Counter(
            "handoff_follow_up",
            "What became of handoffs, as the follow-up saw it (acted, worked, rejected, reassigned, ...)",
            ["event"],
            registry=r,
        )
        self.first_touch = Gauge(
            "handoff_first_touch_hours",
            "Hours from handoff to the rep's first touch, per rep (quantile 0.5 and 0.9)",
            ["rep", "quantile"],
            registry=r,
        )
        self.acted_on = Gauge(
            "handoff_acted_on", "Handoffs per rep by what became of them", ["rep", "outcome"], registry=r
        )
        self.rejections = Gauge(
            "handoff_rejections",
            "Leads reps handed back, per rep and the reason they gave",
            ["rep", "reason"],
            registry=r,
        )
        self.duration = Histogram(
            "handoff_run_duration_seconds",
            "Duration of cycles",
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800),
            registry=r,
        )
        self.last_success = Gauge(
            "handoff_last_success_timestamp_seconds", "Unix time of the last successful cycle", registry=r
        )

    def observe(self, summary: CycleSummary, job: str, status: str, seconds: float) -> None:
        """Count one finished cycle from its summary."""
        self.runs.labels(job, status).inc()
        self.duration.observe(seconds)
        _add(self.pulled, summary.people_pulled.items())
        _add(self.handoffs, summary.handed_off_per_rep.items())
        _add(self.tasks, summary.tasks_created.items())
        _add(self.api_calls, summary.api_calls.items())
        _add(self.rate_waits, summary.rate_limit_wait_seconds.items())
        for err in summary.errors:
            self.errors.labels("record_failed", err.crm).inc()
        for rep, cap in summary.capacity_per_rep.items():
            self.capacity.labels(rep).set(cap.capacity)
            self.capacity_used.labels(rep).set(cap.used_before + cap.assigned)
        self.nurture.set(summary.kept_in_nurture)
        _add(self.follow_up, ((k, v) for k, v in summary.follow_up.items() if k != "checked"))
        if status == "ok":
            self.last_success.set_to_current_time()

    def outcomes(self, figures: dict[str, Any]) -> None:
        """Set the per-rep outcome gauges from ``sync.outcome_figures.outcome_figures``."""
        for rep, f in figures.get("per_rep", {}).items():
            times = f["time_to_first_touch_hours"]
            for q, key in (("0.5", "median"), ("0.9", "p90")):
                if times[key] is not None:
                    self.first_touch.labels(rep, q).set(times[key])
            for what in ("handoffs", "acted_on", "acted_on_within_sla", "rejected", "reassigned", "open"):
                self.acted_on.labels(rep, what).set(f[what])
            for reason, n in f["rejection_reasons"].items():
                self.rejections.labels(rep, reason).set(n)

    def failed(self, job: str, kind: str, crm: str = "") -> None:
        self.runs.labels(job, "failed").inc()
        self.errors.labels(kind, crm).inc()

    def skipped(self, job: str, why: str) -> None:
        self.skips.labels(job, why).inc()


def _add(counter: Counter, items: Iterable[tuple[str, Any]]) -> None:
    for label, value in items:
        counter.labels(label).inc(float(value or 0))


class MetricsServer:
    """``/metrics`` and ``/healthz`` on a background thread (werkzeug)."""

    def __init__(self, metrics: Metrics, health: HealthFn, host: str, port: int) -> None:
        self._metrics_app = make_wsgi_app(metrics.registry)
        self._health = health
        self.server: BaseWSGIServer = make_server(host, port, self._app, threaded=True)
        self.port = int(self.server.server_port)
        self._thread = threading.Thread(target=self.server.serve_forever, name="metrics-http", daemon=True)

    def _app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            served: Iterable[bytes] = self._metrics_app(environ, start_response)
            return served
        if path == "/healthz":
            ok, body = self._health()
            start_response(
                "200 OK" if ok else "503 Service Unavailable", [("Content-Type", "application/json")]
            )
            return [json.dumps(body, default=str).encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics or /healthz\n"]

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
