"""Kill the real CLI at points inside its write batches; a rerun leaves exactly one task per handoff."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from typing import Any

import pytest

from connectors.sandbox_server import serve
from tests.integration.conftest import add_ready_contact, add_rep_users, mapping_dir, rep

SF = "/services/data/v62.0/composite/sobjects"


class KillSwitch:
    """WSGI middleware: SIGKILL the CLI process at the n-th request matching a pattern."""

    def __init__(
        self, app: Any, method: str, path: str, nth: int = 1, before: bool = False, drop: bool = False
    ) -> None:
        self.app, self.method, self.path, self.nth, self.before = app, method, path, nth, before
        self.drop = drop  # killed before the request reaches the CRM: the write never happens
        self.seen = 0
        self.proc: subprocess.Popen[str] | None = None
        self.fired = threading.Event()
        self.lock = threading.Lock()

    def _kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.fired.set()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        hit = False
        if environ["REQUEST_METHOD"] == self.method and environ["PATH_INFO"].rstrip("/") == self.path:
            with self.lock:
                self.seen += 1
                hit = self.seen == self.nth and not self.fired.is_set()
        if hit and (self.before or self.drop):
            self._kill()
        if hit and self.drop:
            start_response("503 Service Unavailable", [("Content-Length", "0")])
            return [b""]
        body = b"".join(self.app(environ, start_response))  # the sandbox applies the write here
        if hit and not self.before:
            self._kill()
        return [body]


def _cli(env: dict[str, str], cfg: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sync.cli", "sync", "--once", "--json", "--config", cfg],
        env={**os.environ, **env, "HANDOFF_LOG_LEVEL": "warning"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


KILL_POINTS = [
    ("salesforce", "PATCH", f"{SF}/Lead/HubSpot_Contact_Id__c", 1, False),
    ("salesforce", "PATCH", f"{SF}/Task/Handoff_Key__c", 1, True),
    ("salesforce", "PATCH", f"{SF}/Task/Handoff_Key__c", 1, False),
    ("hubspot", "POST", "/crm/v3/objects/tasks/batch/create", 1, True),
    ("hubspot", "POST", "/crm/v3/objects/tasks/batch/create", 1, False),
    ("hubspot", "POST", "/crm/v3/objects/contacts/batch/update", 1, False),
    ("salesforce", "PATCH", SF, 1, False),
]


@pytest.mark.parametrize(
    ("crm", "method", "path", "nth", "before"),
    KILL_POINTS,
    ids=[
        f"{c}-{p.rsplit('/', 2)[-2]}/{p.rsplit('/', 1)[-1]}-{'before' if b else 'after'}"
        for c, _, p, _, b in KILL_POINTS
    ],
)
def test_kill_mid_batch_then_rerun_exactly_one_task_each(crms, tmp_path, crm, method, path, nth, before):
    cfg = str(
        mapping_dir(
            tmp_path,
            reps=[
                rep("dana@northwind.example", "salesforce", 120, 20),
                rep("sam@northwind.example", "hubspot", 100, 20),
            ],
        )
    )
    add_rep_users(crms, "dana@northwind.example")
    add_rep_users(crms, "sam@northwind.example")
    for i in range(14):
        add_ready_contact(crms, i, extra_events=i % 3)

    target = crms.sf if crm == "salesforce" else crms.hs
    switch = KillSwitch(target, method, path, nth, before)
    server = serve(switch, tls=crm == "salesforce")
    env = dict(crms.env)
    if crm == "salesforce":
        env |= {"SALESFORCE_INSTANCE_URL": server.url, "SALESFORCE_CA_BUNDLE": server.ca_bundle or ""}
    else:
        env["HUBSPOT_BASE_URL"] = server.url
    try:
        switch.proc = _cli(env, cfg)
        switch.proc.communicate(timeout=120)
        assert switch.fired.is_set(), "the kill point was never reached"
        assert switch.proc.returncode == -signal.SIGKILL

        rerun = _cli(env, cfg)
        out, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err
        summary = json.loads(out)
    finally:
        server.stop()

    sf_keys = Counter(t["Handoff_Key__c"] for t in crms.sf_tasks())
    hs_keys = Counter(t.properties["crm_handoff_key"] for t in crms.hs_tasks())
    assert sf_keys and max(sf_keys.values()) == 1
    assert hs_keys and max(hs_keys.values()) == 1
    assert len(sf_keys) == 6 and len(hs_keys) == 5  # every handoff exists: capacity 6 + 5
    leads = crms.salesforce().query("SELECT HubSpot_Contact_Id__c FROM Lead")["records"]
    assert len(leads) == len({r["HubSpot_Contact_Id__c"] for r in leads}) == 6
    assert summary["errors"] == []
    statuses = Counter(
        c.properties.get("crm_handoff_status")
        for c in crms.hubspot().crm.contacts.get_all(properties=["crm_handoff_status"])
    )  # what reps and marketers see: the handed-off as handed off, only the overflow waiting
    assert statuses == {"handed off": 11, "waiting: rep capacity": 3}, statuses


def test_kill_before_a_chunks_person_writes_then_rerun_writes_them(crms, tmp_path):
    """A chunk enters the mirror only once its writes are done: killed before them, the
    rerun pulls the chunk again and decides it again (it is not skipped as an echo)."""
    from tests.integration.conftest import add_lead

    cfg = str(mapping_dir(tmp_path, reps=[rep("dana@northwind.example", "salesforce")]))
    add_rep_users(crms, "dana@northwind.example")
    cids = [
        crms.hs_store.add_contact(
            {"email": f"lead{i}@acme{i}.example", "lastname": f"Buyer{i}", "jobtitle": "Analyst"}
        )
        for i in range(3)
    ]
    leads = [add_lead(crms, i, Title="Analyst", Status="Open - Not Contacted") for i in range(3)]
    env = {**crms.env, "HANDOFF_LOOKBACK_SECONDS": "600"}
    first = _cli(env, cfg)
    assert first.communicate(timeout=120) and first.returncode == 0  # linked, titles equal
    sf = crms.salesforce()
    for lead in leads:  # a rep edits the leads: the title flows to HubSpot (two-way)
        sf.Lead.update(lead, {"Title": "Chief Data Officer"})

    switch = KillSwitch(crms.hs, "POST", "/crm/v3/objects/contacts/batch/update", 1, drop=True)
    server = serve(switch)
    env["HUBSPOT_BASE_URL"] = server.url
    try:
        switch.proc = _cli(env, cfg)
        switch.proc.communicate(timeout=120)
        assert switch.fired.is_set(), "the kill point was never reached"
        rerun = _cli(env, cfg)
        _out, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err
    finally:
        server.stop()
    titles = {
        c.id: c.properties.get("jobtitle")
        for c in crms.hubspot().crm.contacts.get_all(properties=["jobtitle"])
    }
    assert [titles[c] for c in cids] == ["Chief Data Officer"] * 3  # the killed cycle's writes, made
