"""Requests that get no answer: which failures are final, and how long a silent host is tried."""

from __future__ import annotations

import socket
import ssl

import pytest
import requests
import urllib3

from connectors.hubspot.errors import classify as hubspot_classify
from connectors.network import MAX_UNANSWERED, SILENCE_TIMEOUTS, Silence, diagnose
from connectors.salesforce.errors import classify as salesforce_classify
from crm_handoff.errors import CrmConfigError, RetriableCrmError, exit_code


def _wrapped(cause: BaseException) -> requests.ConnectionError:
    """``cause`` as requests raises it: ConnectionError(MaxRetryError(reason=...from cause))."""
    try:
        try:
            raise cause
        except BaseException as exc:
            raise urllib3.exceptions.NewConnectionError(None, f"failed: {exc}") from exc  # type: ignore[arg-type]
    except urllib3.exceptions.NewConnectionError as inner:
        return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/x", inner))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "kind", "final"),
    [
        (_wrapped(ConnectionRefusedError(111, "refused")), "refused", False),
        (_wrapped(socket.gaierror(socket.EAI_NONAME, "Name or service not known")), "no_such_host", True),
        (_wrapped(socket.gaierror(socket.EAI_AGAIN, "Temporary failure")), "dns", False),
        (_wrapped(ssl.SSLCertVerificationError(1, "certificate verify failed")), "tls", True),
        (requests.exceptions.MissingSchema("no scheme"), "invalid_url", True),
        (requests.ReadTimeout("read timed out"), "timeout", False),
        (OSError("Could not find a suitable TLS CA certificate bundle, invalid path: /x"), "ca_bundle", True),
        (urllib3.exceptions.ProtocolError("aborted", ConnectionResetError(104, "reset")), "reset", False),
    ],
)
def test_failures_are_told_apart(exc, kind, final):
    failure = diagnose(exc)
    assert failure is not None and failure.kind == kind and failure.permanent is final


def test_final_failures_name_the_setting_and_exit_2_transient_ones_are_retried():
    tls = _wrapped(ssl.SSLCertVerificationError(1, "certificate verify failed"))
    error = salesforce_classify(tls, "https://acme.my.salesforce.com/services/data", "/etc/ca.pem")
    assert isinstance(error, CrmConfigError) and exit_code(error) == 2
    assert "SALESFORCE_CA_BUNDLE (/etc/ca.pem) does not trust it" in str(error)
    login = salesforce_classify(
        _wrapped(socket.gaierror(socket.EAI_NONAME, "x")), "https://x/services/oauth2/token"
    )
    assert isinstance(login, CrmConfigError) and "SALESFORCE_LOGIN_URL" in str(login)
    refused = hubspot_classify(_wrapped(ConnectionRefusedError(111, "refused")), "http://127.0.0.1:9/crm/v3")
    assert isinstance(refused, RetriableCrmError) and "http://127.0.0.1:9 (HUBSPOT_BASE_URL)" in str(refused)
    assert diagnose(ValueError("not a network failure")) is None


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_silent_host_is_given_up_after_its_budget_and_timeouts_shrink_to_it():
    clock = _Clock()
    silence = Silence(clock=clock)
    assert silence.before(3.0) == 3.0
    started, clock.now = clock.now, clock.now + 3.0  # timed out
    assert not silence.failed(started)
    clock.now += 1.0  # the connector's backoff
    assert silence.before(3.0) == 3.0  # 5 s of the 9 s budget left
    started, clock.now = clock.now, clock.now + 3.0
    assert not silence.failed(started)
    clock.now += 1.5
    assert silence.before(3.0) == pytest.approx(SILENCE_TIMEOUTS * 3.0 - 8.5)  # never past the budget
    started, clock.now = clock.now, clock.now + 0.5
    assert silence.failed(started)  # 9 s of silence: give up
    assert silence.before(3.0) is None  # and send nothing more
    silence.answered()
    assert silence.before(3.0) == 3.0


def test_fast_failures_are_given_up_after_a_few_in_a_row_and_an_answer_resets():
    clock = _Clock()
    silence = Silence(clock=clock)
    for _ in range(MAX_UNANSWERED - 1):
        assert silence.before(60.0) is not None and not silence.failed(clock.now)
    silence.answered()  # one answer in between: the host is there
    for _ in range(MAX_UNANSWERED - 1):
        assert not silence.failed(clock.now)
    assert silence.failed(clock.now)
