"""People marked for evaluation are marked durably: a cycle that dies after saving new
activity but before evaluating the people it touched leaves them marked, and the next
run evaluates them, even though it never reads that activity again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import create_engine, select

from connectors.sandbox_server import serve
from sync.state import to_evaluate
from tests.integration.conftest import FIT, add_rep_users, mapping_dir, rep

SEARCH = "/crm/v3/objects/contacts/search"


class RefuseSearch:
    """WSGI middleware: HubSpot's contact search answers 400 (HubSpot's error body) while on."""

    def __init__(self, app: Any) -> None:
        self.app, self.on = app, False

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if self.on and environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"].rstrip("/") == SEARCH:
            body = json.dumps(
                {"status": "error", "message": "refused by the test", "category": "VALIDATION_ERROR"}
            )
            start_response("400 Bad Request", [("Content-Type", "application/json")])
            return [body.encode()]
        return self.app(environ, start_response)


def _sync(env: dict[str, str], cfg: str, **extra: str) -> tuple[int, dict[str, Any] | None, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "sync.cli", "sync", "--once", "--json", "--config", cfg],
        env={**os.environ, **env, "HANDOFF_LOG_LEVEL": "warning", **extra},
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        return proc.returncode, json.loads(proc.stdout), proc.stderr
    except json.JSONDecodeError:
        return proc.returncode, None, proc.stderr


def test_activity_saved_then_a_failed_cycle_the_touched_person_is_still_evaluated(crms, tmp_path, state_url):
    cfg = str(mapping_dir(tmp_path, reps=[rep("sam@northwind.example", "hubspot")]))
    add_rep_users(crms, "sam@northwind.example")
    cid = crms.hs_store.add_contact(
        {"email": "fit@acme.example", "firstname": "Fay", "lastname": "Fit", **FIT}
    )
    switch = RefuseSearch(crms.hs)
    server = serve(switch)
    env = {**crms.env, "HUBSPOT_BASE_URL": server.url}
    try:
        code, first, err = _sync(env, cfg)
        assert code == 0 and first is not None, err
        assert first["handed_off"] == 0  # fit alone is not sales-ready

        # a demo request that reached HubSpot late: ten minutes before the last cycle
        crms.hs_store.add_event(
            "e_submitted_form", cid, datetime.now(UTC) - timedelta(minutes=10), {"hs_title": "Request a demo"}
        )
        switch.on = True  # the cycle reads the event (a wide lookback), saves it, then fails
        code, _, err = _sync(env, cfg, HANDOFF_ACTIVITY_LOOKBACK_SECONDS="3600")
        assert code != 0 and "refused by the test" in err
        engine = create_engine(state_url)
        with engine.connect() as conn:
            marks = set(conn.execute(select(to_evaluate.c.kind, to_evaluate.c.ref)).all())
        engine.dispose()
        assert ("hubspot", cid) in marks  # durably marked: the crash lost nothing

        switch.on = False  # the default lookback (5 minutes) never reads that event again
        code, third, err = _sync(env, cfg)
        assert code == 0 and third is not None, err
    finally:
        server.stop()
    assert third["handed_off"] == 1 and third["plan"][0]["person_key"] == f"hs-{cid}"
    assert [t.properties["crm_handoff_key"] for t in crms.hs_tasks()] == [f"hs-{cid}#1"]
