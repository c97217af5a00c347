"""Sandbox resources read as Salesforce documents them: the versions list and the list of
Bulk API 2.0 query jobs (``done`` / ``records`` / ``nextRecordsUrl``, 1,000 a page)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceResourceNotFound

from connectors.salesforce.sandbox import SalesforceSandbox, SalesforceStore
from connectors.salesforce.sandbox import app as sandbox_app


@pytest.fixture
def box() -> Iterator[SalesforceSandbox]:
    sandbox = SalesforceSandbox(SalesforceStore())
    sandbox.start()
    yield sandbox
    sandbox.stop()


def session(box: SalesforceSandbox) -> requests.Session:
    s = requests.Session()
    s.verify = box.ca_bundle or True
    s.trust_env = False
    return s


def client(box: SalesforceSandbox, version: str = "62.0") -> Salesforce:
    return Salesforce(
        instance_url=box.instance_url, session_id=box.token, version=version, session=session(box)
    )


def test_versions_list_needs_no_authentication_and_is_not_metered(box):
    res = session(box).get(f"{box.instance_url}/services/data/")
    assert res.status_code == 200
    versions = res.json()
    assert versions[0] == {"label": "Spring '18", "url": "/services/data/v42.0", "version": "42.0"}
    assert {"label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0"} in versions
    assert versions[-1]["version"] == box.latest_version
    assert [float(v["version"]) for v in versions] == sorted(float(v["version"]) for v in versions)
    assert "Sforce-Limit-Info" not in res.headers and box.api_usage == 0


def test_every_listed_version_is_served_and_no_other(box):
    versions = session(box).get(f"{box.instance_url}/services/data").json()
    for v in (versions[0], versions[-1]):
        assert client(box, v["version"]).restful("")["sobjects"] == f"{v['url']}/sobjects"
    newer = f"{float(box.latest_version) + 1:.1f}"
    for version in ("41.0", newer):
        with pytest.raises(SalesforceResourceNotFound):
            client(box, version).restful("limits/")


def test_query_jobs_list_pages_with_next_records_url(box, monkeypatch):
    monkeypatch.setattr(sandbox_app, "JOBS_PAGE", 2)  # 1,000 in Salesforce; 2 keeps this fast
    sf = client(box)
    ids = [
        sf.restful("jobs/query", method="POST", json={"operation": "query", "query": "SELECT Id FROM Lead"})[
            "id"
        ]
        for _ in range(5)
    ]
    seen, page = [], sf.restful("jobs/query")
    while True:
        assert set(page) <= {"done", "records", "nextRecordsUrl"}
        seen += page["records"]
        if page["done"]:
            assert "nextRecordsUrl" not in page
            break
        assert len(page["records"]) == 2
        assert page["nextRecordsUrl"].startswith("/services/data/v62.0/jobs/query?queryLocator=")
        page = sf.restful(page["nextRecordsUrl"].removeprefix("/services/data/v62.0/"))
    assert sorted(r["id"] for r in seen) == sorted(ids)
    job = seen[0]
    assert job["jobType"] == "V2Query" and job["operation"] == "query" and job["object"] == "Lead"
    assert job["state"] == "UploadComplete" and job["concurrencyMode"] == "Parallel"
    assert job["contentType"] == "CSV" and job["apiVersion"] == 62.0

    assert sf.restful("jobs/query", params={"jobType": "Classic"}) == {"done": True, "records": []}
    assert sf.restful("jobs/query", params={"isPkChunkingEnabled": "true"})["records"] == []
    assert len(sf.restful("jobs/query", params={"jobType": "V2Query"})["records"]) == 2
    with pytest.raises(SalesforceMalformedRequest):
        sf.restful("jobs/query", params={"queryLocator": "made-up"})
    with pytest.raises(SalesforceMalformedRequest):
        sf.restful("jobs/query", params={"jobType": "Nope"})
