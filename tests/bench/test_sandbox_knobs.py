"""The sandboxes' latency spread and Bulk API 2.0 job delay knobs the benchmark uses."""

from __future__ import annotations

import time

import pytest

from connectors.hubspot.sandbox import Faults as HubSpotFaults
from connectors.salesforce.sandbox import Faults as SalesforceFaults
from connectors.salesforce.sandbox import SalesforceSandbox, SalesforceStore


@pytest.mark.parametrize("faults", [HubSpotFaults, SalesforceFaults])
def test_latency_spread_is_seeded_and_within_range(faults):
    draws = [[faults(latency_spread_ms=[80, 120, 300], seed=3).latency_seconds(30)] for _ in range(2)]
    assert draws[0] == draws[1]
    f = faults(latency_spread_ms=[80, 120, 300], seed=3)
    values = [f.latency_seconds(30) for _ in range(2000)]
    assert min(values) >= 0.080 and max(values) <= 0.300
    assert 0.150 < sum(values) / len(values) < 0.185  # triangular mean: 166.7 ms
    assert faults().latency_seconds(30) == pytest.approx(0.030)  # no spread: the fixed latency


def test_bulk_query_job_takes_its_time_to_complete():
    sandbox = SalesforceSandbox(SalesforceStore(), faults=SalesforceFaults(bulk_job_seconds=[0.4, 0.4]))
    sandbox.start()
    try:
        session = sandbox.requests_session()
        session.headers["Authorization"] = f"Bearer {sandbox.token}"
        base = f"{sandbox.instance_url}/services/data/v62.0/jobs/query"
        job = session.post(base, json={"operation": "query", "query": "SELECT Id FROM Lead"}).json()
        assert job["state"] == "UploadComplete"
        assert session.get(f"{base}/{job['id']}").json()["state"] == "InProgress"
        time.sleep(0.45)
        assert session.get(f"{base}/{job['id']}").json()["state"] == "JobComplete"
    finally:
        sandbox.stop()
