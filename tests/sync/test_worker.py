"""The worker's decisions without CRMs: skips and failures recorded with their reason,
takeover from a dead holder, schedules, metrics and the health endpoint."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from crm_handoff.errors import ConfigError
from mappings.loader import load_mappings
from sync.lease import Leases
from sync.metrics import Metrics, MetricsServer
from sync.outcome_figures import outcome_figures
from sync.report import print_status, status_data
from sync.schedule import load_schedule, rep_zones
from sync.settings import Settings
from sync.state import OutcomeRow
from sync.summary import CycleSummary
from sync.wiring import open_state
from sync.worker import LEASE, Worker


def _settings(url: str, **kw) -> Settings:
    return Settings(handoff_state_url=url, handoff_worker_id="me", **kw)  # type: ignore[call-arg]


@pytest.fixture
def state(state_url):
    s = open_state(_settings(state_url))
    yield s
    s.close()


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_replica_without_the_lease_skips_and_says_why(state, capsys):
    Leases(state.engine).acquire(LEASE, "other-replica", ttl=60)
    worker = Worker(_settings(state.url), state)
    assert worker.run_job("sync") == "skipped"
    data = status_data(state)
    (skip,) = data["skipped"]
    assert skip["job"] == "sync" and skip["worker"] == "me"
    assert skip["reason"].startswith("lease held by other-replica until ")
    assert data["runs"] == []  # a skip is not a cycle
    assert _sample(worker.metrics, "handoff_runs_skipped_total", job="sync", why="lease_held") == 1
    print_status(data)
    assert "skipped sync at" in capsys.readouterr().out


def test_failed_run_is_recorded_with_its_reason_and_frees_the_lease(state):
    worker = Worker(_settings(state.url), state, config="/nonexistent/mappings")
    assert worker.run_job("sync") == "failed"
    (run,) = status_data(state)["runs"]
    assert run["status"] == "failed" and run["job"] == "sync"
    assert run["reason"] == "/nonexistent/mappings: no such file or directory"
    assert Leases(state.engine).holder(LEASE) is None
    assert _sample(worker.metrics, "handoff_errors_total", kind="ConfigError", crm="") == 1
    assert _sample(worker.metrics, "handoff_runs_total", job="sync", status="failed") == 1


def test_takeover_marks_the_dead_holders_run_abandoned(state):
    clock_past = datetime(2020, 1, 1, tzinfo=UTC)
    Leases(state.engine, clock=lambda: clock_past).acquire(LEASE, "dead:123:abc", ttl=30)
    dead_run = state.start_run(clock_past)
    worker = Worker(_settings(state.url), state, config="/nonexistent/mappings")
    assert worker.run_job("sync") == "failed"  # took the lease over, then failed on the config
    runs = {r["id"]: r for r in status_data(state)["runs"]}
    assert runs[dead_run]["status"] == "failed"
    assert "abandoned: worker dead:123:abc stopped renewing the lease" in runs[dead_run]["reason"]


def test_busy_worker_skips_a_second_job():
    worker = Worker(_settings("sqlite://"), open_state(_settings("sqlite://"), read_only=True))
    with worker._cycle:
        assert worker.run_job("weekly-reset@UTC") == "skipped"
    worker.stop()
    assert worker.run_job("sync") == "skipped"
    assert _sample(worker.metrics, "handoff_runs_skipped_total", job="sync", why="stopping") == 1


def test_default_schedule_sync_interval_and_monday_8am_per_rep_zone():
    mapping = load_mappings(None)
    jobs = {j.name: j for j in load_schedule(Settings(handoff_sync_interval_seconds=120), mapping)}  # type: ignore[call-arg]
    assert jobs["sync"].run_at_start
    assert jobs["sync"].trigger.interval.total_seconds() == 120
    zones = rep_zones(mapping)
    assert {f"weekly-reset@{z}" for z in zones} <= set(jobs)
    sunday = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    fire = jobs["weekly-reset@America/New_York"].trigger.get_next_fire_time(None, sunday)
    assert fire.isoformat() == "2026-03-02T08:00:00-05:00"


def test_schedule_file_jobs_and_one_line_errors(tmp_path):
    mapping = load_mappings(None)
    good = tmp_path / "schedule.yaml"
    good.write_text(
        textwrap.dedent(
            """
            version: 1
            jobs:
              sync: {every_seconds: 60}
              nightly: {cron: "30 2 * * *", timezone: Europe/Berlin}
              weekly-reset: {cron: "0 8 * * mon", enabled: false}
              salesforce-fast: {every_seconds: 30, crms: [salesforce]}
            """
        )
    )
    jobs = load_schedule(Settings(handoff_schedule_file=good), mapping)  # type: ignore[call-arg]
    assert [j.name for j in jobs] == ["sync", "nightly", "salesforce-fast"]
    assert [j.crms for j in jobs] == [None, None, ("salesforce",)]
    bad = tmp_path / "bad.yaml"
    for text, pattern in [
        ("version: 1\njobs: {sync: {every_seconds: 5, cron: '* * * * *'}}", "jobs.sync: .*exactly one"),
        ("version: 1\njobs: {x: {cron: 'not cron'}}", r"jobs\.x\.cron: "),
        ("version: 1\njobs: {x: {cron: '0 8 * * mon', timezone: Mars/Base}}", "unknown IANA time zone"),
        ("version: 1\njobs: {x: {every_secs: 5}}", r"jobs\.x\.every_secs: Extra inputs"),
        (
            "version: 1\njobs: {x: {every_seconds: 5, crms: [pipedrive]}}",
            r"jobs\.x\.crms\.0: Input should be",
        ),
        ("version: 1\njobs: {x: {every_seconds: 5, crms: []}}", r"jobs\.x\.crms: "),
    ]:
        bad.write_text(text)
        with pytest.raises(ConfigError, match=pattern) as err:
            load_schedule(Settings(handoff_schedule_file=bad), mapping)  # type: ignore[call-arg]
        assert all(line.startswith(str(bad)) for line in err.value.problems)


SUMMARY = {
    "run_id": 7,
    "people_pulled": {"hubspot": 10, "salesforce": 4},
    "handed_off_per_rep": {"dana@x.example": 2},
    "capacity_per_rep": {"dana@x.example": {"capacity": 6, "used_before": 1, "assigned": 2, "left": 3}},
    "tasks_created": {"hubspot": 0, "salesforce": 2},
    "api_calls": {"hubspot": 5, "salesforce": 3},
    "errors": [{"crm": "salesforce", "record": "task k", "reason": "bad"}],
    "kept_in_nurture": 4,
}


T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
OUTCOME_ROWS = [
    OutcomeRow(
        "a#1", "a", "dana@x.example", T0, T0 + timedelta(hours=8), "acted", "met", T0 + timedelta(hours=2)
    ),
    OutcomeRow(
        "b#1", "b", "dana@x.example", T0, T0 + timedelta(hours=8), "rejected", "open", reason="Not a fit"
    ),
]


def test_metrics_and_health_over_http():
    metrics = Metrics()
    summary = CycleSummary.from_json(SUMMARY)  # as a run stored it, keys missing included
    metrics.observe(summary, "sync", "partial", 1.5)
    metrics.observe(summary, "sync", "partial", 1.5)
    metrics.outcomes(outcome_figures(OUTCOME_ROWS))
    server = MetricsServer(metrics, lambda: (True, {"status": "ok"}), "127.0.0.1", 0).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert requests.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
        text = requests.get(f"{base}/metrics", timeout=5).text
        assert requests.get(f"{base}/nope", timeout=5).status_code == 404
    finally:
        server.stop()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("handoff_records_pulled_total", (("crm", "hubspot"),))] == 20
    assert samples[("handoff_handoffs_total", (("rep", "dana@x.example"),))] == 4
    assert samples[("handoff_rep_capacity_used", (("rep", "dana@x.example"),))] == 3
    assert samples[("handoff_api_calls_total", (("crm", "salesforce"),))] == 6
    assert samples[("handoff_errors_total", (("crm", "salesforce"), ("kind", "record_failed")))] == 2
    assert samples[("handoff_runs_total", (("job", "sync"), ("status", "partial")))] == 2
    dana = "dana@x.example"
    assert samples[("handoff_rejections", (("reason", "Not a fit"), ("rep", dana)))] == 1
    assert samples[("handoff_acted_on", (("outcome", "acted_on_within_sla"), ("rep", dana)))] == 1
    assert samples[("handoff_first_touch_hours", (("quantile", "0.5"), ("rep", dana)))] == 2.0
