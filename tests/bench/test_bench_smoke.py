"""The benchmark harness end to end at 200 people with no latency (not the benchmark itself)."""

from __future__ import annotations

import pytest

from bench.core import measure
from bench.run import bench_size, render
from bench.world import mapping_dir

pytestmark = pytest.mark.integration


def test_harness_measures_every_cycle(tmp_path):
    result = bench_size(200, latency_ms=0, log=False)
    assert set(result.cycles) == {"first", "settle", "idle", "incremental"}
    first = result.cycles["first"]
    assert first.pulled("hubspot") > 100 and first.pulled("salesforce") > 50
    for crm in ("hubspot", "salesforce"):
        assert first.total(crm) == first.run.summary["api_calls"][crm]
        assert first.calls[crm]["people_pull"] >= 1
    assert first.run.max_rss_mb > 10
    assert result.probe_latency is not None and result.probe_latency >= 0
    cpu = measure(500, mapping_dir(tmp_path / "m"))
    out = render([result], cpu, 0, md=True)
    assert "| 200 | hubspot | first |" in out
