"""The benchmark harness end to end at 200 people with no latency (not the benchmark itself)."""

from __future__ import annotations

import pytest

from bench.core import measure
from bench.report import ActivityNeed, burst_bound, percentile
from bench.run import Latency, bench_size, render, write_results
from bench.world import mapping_dir

pytestmark = pytest.mark.integration


def test_harness_measures_every_cycle(tmp_path):
    result = bench_size(200, Latency(None, 0), bulk_s=None, cycles=3, log=False)
    assert set(result.cycles) == {"first", "settle", "idle", "incremental", "echo"}
    first = result.cycles["first"]
    assert first.pulled("hubspot") > 100 and first.pulled("salesforce") > 50
    for crm in ("hubspot", "salesforce"):
        assert first.total(crm) == first.run.summary["api_calls"][crm]
        assert first.calls[crm]["people_pull"] >= 1
    assert first.run.max_rss_mb > 10
    # the activity minimum comes from the store: the first sync's window holds every seeded event type
    assert first.activity.read_events and sum(first.activity.by_type.values()) > 0
    assert first.activity.unfiltered_pages() <= first.activity.per_type_pages()
    # two gaps of three probes each, made sales-ready at random moments: every one handed off
    assert len(result.series) == 3
    assert len(result.latencies) == 6 and result.not_handed_off == 0
    assert all(x >= 0 for x in result.latencies)
    cpu = measure(500, mapping_dir(tmp_path / "m"))
    out = render([result], cpu, Latency(None, 0), md=True)
    assert "| 200 | hubspot | first |" in out
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\nnotes kept\n")
    for _ in range(2):
        write_results(results, "before", out, ["--sizes", "200"], "setup")
    text = results.read_text()
    assert text.count("<!-- bench:before -->") == 1 and "notes kept" in text


def test_floor_counts_the_burst_and_latency():
    # a fresh window admits 190 at once; the 191st waits a window
    assert burst_bound(0, 190, 10, 0.2) == 0
    assert burst_bound(190, 190, 10, 0.2) == pytest.approx(0.2)
    assert burst_bound(191, 190, 10, 0.2) == pytest.approx(10.2)
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0 and percentile([1.0, 2.0, 3.0], 100) == 3.0
    need = ActivityNeed(by_type=__import__("collections").Counter({"a": 150, "b": 10, "c": 0}),
                        configured=("a", "b", "c"), clicks=1500, read_events=True, read_email=True)  # fmt: skip
    assert need.per_type_pages() == 2 + 1 + 1 and need.unfiltered_pages() == 2
    assert need.event_pages() == (2, 2) and need.email_pages() == 2
