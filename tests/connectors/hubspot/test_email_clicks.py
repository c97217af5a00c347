"""Marketing email clicks (the legacy v1 email events API, which the SDK has no API class
for) go through the same metered transport as every other call: counted, bounded by the
timeout, classified, and never printed to stdout (which would corrupt ``--json``)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from connectors.hubspot.connector import HubSpotConnector, HubSpotSettings
from connectors.hubspot.sandbox import HubSpotSandbox, HubSpotStore
from crm_handoff.errors import CrmUnavailable
from crm_handoff.records import Activity

EVENTS = "GET /email/public/v1/events"
TIMEOUT = 0.5
#: README: a silent host is given up after 3 x its timeout (or 4 unanswered requests).
GIVE_UP = 3 * TIMEOUT


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback socket that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield int(s.getsockname()[1])


def connector(base_url: str, token: str = "pat-na1-clicks-0000") -> HubSpotConnector:
    return HubSpotConnector(replace_timeout(HubSpotSettings.with_token(base_url, token), TIMEOUT))


def replace_timeout(settings: HubSpotSettings, timeout: float) -> HubSpotSettings:
    from dataclasses import replace

    return replace(settings, timeout=timeout, max_wait=0.01)


def clicks_within(conn: HubSpotConnector, seconds: float) -> tuple[list[Activity] | BaseException, float]:
    """Email clicks of the last day, or what they raised; gives up waiting after ``seconds``."""
    out: list[list[Activity] | BaseException] = []

    def read() -> None:
        try:
            out.append(list(conn._email_clicks(datetime.now(UTC) - timedelta(days=1))))
        except BaseException as exc:
            out.append(exc)

    started = time.monotonic()
    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    worker.join(seconds)
    assert out, f"email clicks still waiting for a silent host after {seconds} s"
    return out[0], time.monotonic() - started


def test_a_silent_host_is_given_up_in_time_and_nothing_reaches_stdout(
    silent_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = connector(f"http://127.0.0.1:{silent_port}")
    result, took = clicks_within(conn, GIVE_UP + 10)
    assert isinstance(result, CrmUnavailable), result
    assert str(result).startswith(
        f"hubspot: no answer from http://127.0.0.1:{silent_port} (HUBSPOT_BASE_URL)"
    )
    assert GIVE_UP * 0.8 <= took <= GIVE_UP + 3
    assert conn.calls[EVENTS] >= 2  # retried, every attempt counted by the meter
    assert capsys.readouterr().out == ""


def test_a_refused_connection_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    result, _ = clicks_within(connector(f"http://127.0.0.1:{port}"), 30)
    assert capsys.readouterr().out == ""  # the SDK's raw request printed "HTTP error occurred: ..."
    assert isinstance(result, CrmUnavailable), result
    assert "last: connection refused" in str(result)


def test_clicks_are_read_through_the_meter_with_the_connector_token() -> None:
    store = HubSpotStore()
    box = HubSpotSandbox(store)
    box.start()
    try:
        at = datetime.now(UTC) - timedelta(hours=1)
        store.add_email_event("Clicker@Acme.example", "CLICK", at, "https://acme.example/pricing")
        store.add_email_event("Clicker@Acme.example", "OPEN", at)
        conn = connector(box.base_url, box.token)
        result, _ = clicks_within(conn, 30)
    finally:
        box.stop()
    assert isinstance(result, list), result
    assert [(a.kind, a.email, a.title) for a in result] == [
        ("email_click", "clicker@acme.example", "https://acme.example/pricing")
    ]
    assert conn.calls[EVENTS] == 1
