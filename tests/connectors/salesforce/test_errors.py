"""Salesforce error classification (``connectors/salesforce/errors.py``), driven through the
real connector against the TLS sandbox's faults: what the caller is told (one line, the
right error class), how often the call was tried and what the org ends up holding."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import trustme
from simple_salesforce.exceptions import SalesforceGeneralError

from connectors.salesforce.auth import SalesforceAuthSettings
from connectors.salesforce.connector import SalesforceConnector, SalesforceSettings
from connectors.salesforce.errors import classify, record_error
from connectors.salesforce.sandbox import Faults, SalesforceSandbox, SalesforceStore
from crm_handoff.errors import (
    AuthError,
    CrmConfigError,
    CrmError,
    CrmUnavailable,
    QuotaExhausted,
    RetriableCrmError,
)
from crm_handoff.records import PersonCreate, PersonUpdate, TaskRequest

QUERY = "GET /query"
ATTEMPTS = 4


@pytest.fixture(scope="module")
def server() -> Iterator[SalesforceSandbox]:
    box = SalesforceSandbox(SalesforceStore())
    box.start()
    yield box
    box.stop()


@pytest.fixture
def sandbox(server: SalesforceSandbox) -> SalesforceSandbox:
    server.faults = Faults()
    server.calls.clear()
    return server


def connector(box: SalesforceSandbox, **auth: object) -> SalesforceConnector:
    values: dict[str, object] = {
        "instance_url": box.instance_url,
        "access_token": box.token,
        "ca_bundle": box.ca_bundle,
        **auth,
    }
    settings = SalesforceSettings(
        auth=SalesforceAuthSettings(**values),  # type: ignore[arg-type]
        max_attempts=ATTEMPTS,
        max_wait=0.01,
        timeout=2.0,
    )
    return SalesforceConnector(settings)


def one_line(exc: BaseException) -> str:
    """The error's message (one line, naming Salesforce), without the ``salesforce: `` prefix."""
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text
    assert text.startswith("salesforce: ")
    return text.removeprefix("salesforce: ")


def users(conn: SalesforceConnector) -> list[dict[str, object]]:
    return list(conn.query("SELECT Id, Username FROM User"))


def rep_and_lead(box: SalesforceSandbox, n: int) -> tuple[str, list[str]]:
    user = box.store.insert(
        "User", {"Username": f"rep{n}@x.example", "Email": f"rep{n}@x.example", "LastName": "Rep"}
    )
    leads = [
        box.store.insert("Lead", {"LastName": f"L{n}-{i}", "Company": "Acme", "Email": f"l{n}-{i}@y.example"})
        for i in range(3)
    ]
    return user, leads


def task(key: str, owner: str, who: str, subject: str = "Follow up") -> TaskRequest:
    return TaskRequest(key, who, "lead", owner, subject, "why", date(2026, 1, 5), "high")


def tasks_by_key(box: SalesforceSandbox) -> dict[str, dict[str, object]]:
    return {str(t["Handoff_Key__c"]): t for t in box.store.all("Task") if t.get("Handoff_Key__c")}


# ----------------------------------------------------------------------------- whole calls


def test_server_unavailable_is_retried_until_it_answers(sandbox: SalesforceSandbox) -> None:
    conn = connector(sandbox)
    sandbox.faults.server_error_burst = ATTEMPTS - 1
    assert users(conn)
    assert sandbox.calls[QUERY] == ATTEMPTS


def test_a_5xx_that_outlasts_the_attempts_is_retriable_in_one_line(sandbox: SalesforceSandbox) -> None:
    conn = connector(sandbox)
    sandbox.faults.server_error_burst = 100
    with pytest.raises(RetriableCrmError) as info:
        users(conn)
    assert one_line(info.value) == "SERVER_UNAVAILABLE: Server unavailable (sandbox fault)"
    assert info.value.status == 503
    assert sandbox.calls[QUERY] == ATTEMPTS
    assert info.value.__cause__ is not None  # raised from the SDK's error, never "from None"


def test_request_limit_exceeded_stops_at_once(sandbox: SalesforceSandbox) -> None:
    conn = connector(sandbox)
    sandbox.faults.rate_limit_ratio = 1.0  # 429 REQUEST_LIMIT_EXCEEDED (concurrent requests)
    with pytest.raises(QuotaExhausted) as info:
        users(conn)
    assert one_line(info.value).startswith("API request limit reached (ConcurrentPerOrgLongTxn")
    assert sandbox.calls[QUERY] == 1  # not retried: the next run continues


def test_the_daily_allocation_used_up_stops_at_once(sandbox: SalesforceSandbox) -> None:
    conn = connector(sandbox)
    limit = sandbox.daily_api_limit
    sandbox.daily_api_limit = sandbox.api_usage  # 403 REQUEST_LIMIT_EXCEEDED
    try:
        with pytest.raises(QuotaExhausted, match=r"TotalRequests Limit exceeded") as info:
            users(conn)
    finally:
        sandbox.daily_api_limit = limit
    assert info.value.status == 403 and sandbox.calls[QUERY] == 1


def test_invalid_session_with_a_direct_token_is_an_auth_error(sandbox: SalesforceSandbox) -> None:
    conn = connector(sandbox)
    sandbox.faults.expire_session_next = 1
    with pytest.raises(AuthError) as info:
        users(conn)
    assert one_line(info.value) == (
        "INVALID_SESSION_ID: Session expired or invalid (check SALESFORCE_ACCESS_TOKEN)"
    )
    assert sandbox.token not in str(info.value)
    assert sandbox.calls[QUERY] == 1


def test_a_refused_request_is_a_final_crm_error_with_its_status(sandbox: SalesforceSandbox) -> None:
    conn = connector(sandbox)
    with pytest.raises(CrmError) as info:
        list(conn.query("SELECT Nope FROM User"))
    assert not isinstance(info.value, RetriableCrmError | AuthError | QuotaExhausted)
    assert one_line(info.value).startswith("HTTP 400: INVALID_FIELD: ")
    assert sandbox.calls[QUERY] == 1


def test_unable_to_lock_row_on_a_single_record_write_is_retried(sandbox: SalesforceSandbox) -> None:
    conn = connector(sandbox)
    _, leads = rep_and_lead(sandbox, 1)
    sandbox.faults.lock_error_next = 1  # HTTP 400 UNABLE_TO_LOCK_ROW, nothing written
    conn._call(conn.sf.Lead.update, leads[0], {"Title": "CTO"})
    assert sandbox.store.get("Lead", leads[0])["Title"] == "CTO"  # type: ignore[index]
    assert sandbox.calls["PATCH /sobjects/{sobject}/{record_id}"] == 2


def test_a_silent_instance_is_retried_then_given_up_in_one_line(sandbox: SalesforceSandbox) -> None:
    conn = connector(sandbox)
    sandbox.faults.timeout_next, sandbox.faults.timeout_seconds = 1, 2.5  # longer than the 2 s timeout
    assert users(conn)  # the timed-out read is tried again
    assert sandbox.calls[QUERY] == 2
    sandbox.faults.timeout_next, sandbox.faults.timeout_seconds = 100, 0.5
    conn = SalesforceConnector(replace_timeout(conn.settings, 0.2))
    with pytest.raises(CrmUnavailable) as info:
        users(conn)
    assert one_line(info.value).startswith(f"no answer from {sandbox.instance_url} (SALESFORCE_INSTANCE_URL)")
    sandbox.faults.timeout_next = 0


def replace_timeout(settings: SalesforceSettings, timeout: float) -> SalesforceSettings:
    from dataclasses import replace

    return replace(settings, timeout=timeout, max_attempts=10)


# ----------------------------------------------------------------------------- per record


def test_a_validation_error_fails_its_record_and_the_batch_goes_on(sandbox: SalesforceSandbox) -> None:
    conn = connector(sandbox)
    owner, leads = rep_and_lead(sandbox, 2)
    sandbox.faults.reject_field_values = {"Subject": {"REJECT-ME"}}
    batch = [
        task("k2-a", owner, leads[0]),
        task("k2-b", owner, leads[1], subject="REJECT-ME"),
        task("k2-c", owner, leads[2]),
    ]
    results = conn.write_tasks(batch)
    assert [(r.key, r.ok) for r in results] == [("k2-a", True), ("k2-b", False), ("k2-c", True)]
    bad = results[1]
    assert bad.code == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert bad.error == (
        "FIELD_CUSTOM_VALIDATION_EXCEPTION: Subject: value rejected by a validation rule: REJECT-ME [Subject]"
    )
    written = tasks_by_key(sandbox)
    assert {"k2-a", "k2-c"} <= set(written) and "k2-b" not in written
    assert sandbox.calls["PATCH /composite/sobjects/{sobject}/{field}"] == 1


def test_a_locked_batch_fails_per_record_and_a_rerun_writes_each_once(sandbox: SalesforceSandbox) -> None:
    conn = connector(sandbox)
    owner, leads = rep_and_lead(sandbox, 3)
    batch = [task(f"k3-{i}", owner, lead) for i, lead in enumerate(leads)]
    sandbox.faults.lock_error_next = 1  # HTTP 200, every record UNABLE_TO_LOCK_ROW
    first = conn.write_tasks(batch)
    assert [r.code for r in first] == ["UNABLE_TO_LOCK_ROW"] * 3 and not any(r.ok for r in first)
    assert first[0].error and first[0].error.startswith("UNABLE_TO_LOCK_ROW: unable to obtain exclusive")
    assert not any(k.startswith("k3-") for k in tasks_by_key(sandbox))
    again = conn.write_tasks(batch)
    assert all(r.ok for r in again)
    assert sorted(k for k in tasks_by_key(sandbox) if k.startswith("k3-")) == ["k3-0", "k3-1", "k3-2"]


def test_a_duplicate_rule_fails_one_created_lead_without_field_names(sandbox: SalesforceSandbox) -> None:
    conn = connector(sandbox)
    sandbox.faults.duplicate_rule_emails = {"dup@z.example"}
    people = [
        PersonCreate("hs-41", "lead", {"LastName": "Ok", "Company": "Z", "Email": "ok@z.example"}),
        PersonCreate("hs-42", "lead", {"LastName": "Dup", "Company": "Z", "Email": "dup@z.example"}),
    ]
    results = conn.create_people(people)
    assert [r.ok for r in results] == [True, False]
    assert results[1].code == "DUPLICATES_DETECTED"
    assert results[1].error == (
        "DUPLICATES_DETECTED: Use one of these records? You're creating a duplicate record."
    )
    emails = {r.get("Email") for r in sandbox.store.all("Lead")}
    assert "ok@z.example" in emails and "dup@z.example" not in emails


def test_an_update_of_a_missing_record_fails_that_record_only(sandbox: SalesforceSandbox) -> None:
    conn = connector(sandbox)
    _, leads = rep_and_lead(sandbox, 4)
    missing = "00Q" + "0" * 12
    updates = [PersonUpdate(missing, "lead", {"Title": "X"}), PersonUpdate(leads[0], "lead", {"Title": "Y"})]
    results = conn.update_people(updates)
    assert [r.ok for r in results] == [False, True]
    assert results[0].code and results[0].error and results[0].error.startswith(f"{results[0].code}: ")
    assert sandbox.store.get("Lead", leads[0])["Title"] == "Y"  # type: ignore[index]


# ----------------------------------------------------------------------------- no answer at all


def test_an_untrusted_certificate_names_the_ca_bundle_setting(sandbox: SalesforceSandbox) -> None:
    with pytest.raises(CrmConfigError) as info:
        users(connector(sandbox, ca_bundle=None))
    line = one_line(info.value)
    assert line.startswith(f"TLS verification of {sandbox.instance_url} (SALESFORCE_INSTANCE_URL) failed")
    assert "set SALESFORCE_CA_BUNDLE" in line


def test_a_ca_bundle_of_another_ca_says_it_does_not_trust_the_host(
    sandbox: SalesforceSandbox, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    with pytest.raises(CrmConfigError, match=rf"SALESFORCE_CA_BUNDLE \({other}\) does not trust it") as info:
        users(connector(sandbox, ca_bundle=str(other)))
    one_line(info.value)
    assert sandbox.calls[QUERY] == 0


def test_an_unreadable_ca_bundle_names_the_setting(sandbox: SalesforceSandbox, tmp_path: Path) -> None:
    with pytest.raises(CrmConfigError, match=r"\(SALESFORCE_CA_BUNDLE, or REQUESTS_CA_BUNDLE") as info:
        users(connector(sandbox, ca_bundle=str(tmp_path / "missing.pem")))
    one_line(info.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://exa mple.invalid", "SALESFORCE_INSTANCE_URL: not a usable URL"),
        (
            "https://no-such-host.invalid",
            "https://no-such-host.invalid (SALESFORCE_INSTANCE_URL): no such host",
        ),
    ],
)
def test_an_unusable_instance_url_fails_at_once(sandbox: SalesforceSandbox, url: str, expected: str) -> None:
    with pytest.raises(CrmConfigError) as info:
        users(connector(sandbox, instance_url=url))
    assert one_line(info.value).startswith(expected)


# ----------------------------------------------------------------------------- the helpers themselves


def test_classify_without_an_error_body() -> None:
    error = classify(ValueError("boom"))
    assert type(error) is CrmError and one_line(error) == "ValueError"
    proxy = SalesforceGeneralError("https://x.example/q", 418, "query", "<html>I'm a teapot</html>")
    assert one_line(classify(proxy)) == "HTTP 418: <html>I'm a teapot</html>"
    same = RetriableCrmError("salesforce", "x")
    assert classify(same) is same
    assert record_error([]) == ("failed without an error message", None)
