"""``python -m bench.outcomes``: the outcome check's API calls per cycle at N open handoffs.

For each size: N handoffs (half HubSpot contacts with their task, half Salesforce leads
with theirs, two reps) are seeded straight into both sandboxes and the state, as a first
sync leaves them; then ``sync.followup.follow_up`` (the step every cycle runs) is measured
through the real connectors and sandboxes in three situations:

- *idle*: nothing changed since the last look (one hour after the handoffs);
- *1% worked*: reps completed 1% of the tasks (half in each CRM) since then;
- *all due*: every handoff's first touch falls due at once (the worst case: each is read
  again before its breach is acted on, and the SLA outcome written to HubSpot).

Each row gives the calls made per CRM (reads / writes) next to the minimum the endpoints
allow for the same reads and writes (the outcome properties go to HubSpot contacts only): HubSpot search 200 a page, batch read 100, v4 association batch
read 1,000 inputs, batch update 100; Salesforce Composite 5 queries a call, 2,000 records a
query page, 200 ids per statement (our statement size), Collections 200. Prints a table;
``--write`` puts it in bench/RESULTS.md (section ``outcomes``).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bench.run import replace_section
from connectors.hubspot.connector import HubSpotConnector, HubSpotSettings
from connectors.hubspot.sandbox import HubSpotSandbox, HubSpotStore
from connectors.salesforce.sandbox import SalesforceSandbox, SalesforceStore
from crm_handoff.records import Person
from mappings.loader import load_mappings
from sync.context import CycleContext
from sync.execute import Executor
from sync.followup import follow_up
from sync.settings import Settings
from sync.state import Identity, LedgerEntry, StateStore
from sync.wiring import build_engine

A, B = "ana@bench.example", "ben@bench.example"
RESULTS = Path(__file__).with_name("RESULTS.md")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


@dataclass
class Row:
    """One situation's calls per CRM, as made and the endpoints' minimum."""

    size: int
    situation: str
    calls: dict[str, Counter[str]]
    minimum: dict[str, int]
    seconds: float


def _seed(n: int, hs: HubSpotStore, sf: SalesforceStore, state: StateStore) -> None:
    hs_owner = hs.add_owner(A, "Ana", "Rep")
    sf.insert("User", {"Username": A, "Email": A, "LastName": "Ana", "IsActive": True})
    sf_user = sf.insert("User", {"Username": B, "Email": B, "LastName": "Ben", "IsActive": True})
    hs.add_owner(B, "Ben", "Rep")
    people, idents, entries = [], [], []
    for i in range(n):
        key, email = f"p{i:07d}", f"p{i}@bench{i % 97}.example"
        if i % 2 == 0:
            cid = hs.add_contact({"email": email, "lastname": f"P{i}", "hubspot_owner_id": hs_owner}, T0)
            tid = hs.add_object(
                "tasks",
                {"hs_task_subject": "Sales-ready lead", "hs_task_status": "NOT_STARTED",
                 "hubspot_owner_id": hs_owner, "crm_handoff_key": f"{key}#1", "hs_timestamp": T0.isoformat()},
                T0,
            )  # fmt: skip
            hs.associate("tasks", tid, "contacts", cid)
            people.append(Person("hubspot", cid, "contact", email, {"email": email}, T0, hs_owner))
            idents.append(Identity(key, cid, None, None, email))
            entries.append(_entry(key, "hubspot", A, tid))
        else:
            lead = sf.insert(
                "Lead", {"LastName": f"P{i}", "Company": "Bench", "Email": email, "OwnerId": sf_user}, T0
            )
            tid = sf.insert(
                "Task",
                {"Subject": "Sales-ready lead", "Status": "Not Started", "OwnerId": sf_user, "WhoId": lead,
                 "Handoff_Key__c": f"{key}#1"},
                T0,
            )  # fmt: skip
            people.append(Person("salesforce", lead, "lead", email, {"Email": email}, T0, sf_user))
            idents.append(Identity(key, None, lead, "lead", email))
            entries.append(_entry(key, "salesforce", B, tid))
    state.save_people(people)
    state.save_identities(idents)
    state.record_intents([e for e, _ in entries], None)
    state.confirm_many([(e.key, e.crm, tid) for e, tid in entries], T0)


def _entry(key: str, crm: str, rep: str, task_id: str) -> tuple[LedgerEntry, str]:
    entry = LedgerEntry(f"{key}#1", crm, key, 1, rep, T0.date(), "intent", None, 50, [], T0)
    return entry, task_id


def _calls(engine: Any) -> dict[str, Counter[str]]:
    return {crm: Counter(conn.calls) for crm, conn in engine.connectors.items()}


def _split(before: dict[str, Counter[str]], after: dict[str, Counter[str]]) -> dict[str, Counter[str]]:
    """Calls made between two snapshots, per CRM: reads and writes."""
    out: dict[str, Counter[str]] = {}
    for crm in after:
        made = after[crm] - before[crm]
        writes = sum(n for name, n in made.items() if _is_write(name))
        out[crm] = Counter(read=sum(made.values()) - writes, write=writes)
    return out


def _is_write(name: str) -> bool:
    return any(
        m in name for m in ("batch/update", "batch/create", "composite/sobjects")
    ) and not name.startswith("GET")


def _step(engine: Any, now: datetime) -> tuple[dict[str, Counter[str]], float, Any]:
    ctx = CycleContext(now=now, dry_run=False)
    ctx.owners = {crm: conn.pull_owners() for crm, conn in engine.connectors.items()}
    before = _calls(engine)
    started = time.perf_counter()
    counts = follow_up(engine, ctx, Executor(engine, ctx))
    return _split(before, _calls(engine)), time.perf_counter() - started, counts


def measure(n: int, config: Path) -> list[Row]:
    """The three situations at ``n`` open handoffs (see the module)."""
    hs_store, sf_store = HubSpotStore(), SalesforceStore()
    hs, sf = HubSpotSandbox(hs_store), SalesforceSandbox(sf_store)
    hs.start()
    sf.start()
    mapping = load_mappings(config)
    with tempfile.TemporaryDirectory() as tmp:
        state = StateStore(f"sqlite:///{tmp}/state.db")
        state.create_schema()
        HubSpotConnector(HubSpotSettings.with_token(hs.base_url, hs.token)).install(
            [(c.value, c.display) for c in mapping.handoff.outcomes.choices]
        )
        _seed(n, hs_store, sf_store, state)
        settings = Settings(
            handoff_state_url=f"sqlite:///{tmp}/state.db",
            hubspot_base_url=hs.base_url,
            hubspot_access_token=SecretStr(hs.token),
            salesforce_instance_url=sf.instance_url,
            salesforce_access_token=SecretStr(sf.token),
            salesforce_ca_bundle=Path(sf.ca_bundle or ""),
        )  # type: ignore[call-arg]
        rows = []
        try:
            engine = build_engine(settings, mapping, state)
            _step(engine, T0 + timedelta(minutes=5))  # opens the outcome rows, sets the watermark
            idle, took, _ = _step(engine, T0 + timedelta(hours=1))
            rows.append(Row(n, "idle", idle, {"hubspot": 1, "salesforce": 1}, took))
            worked = _work(hs_store, sf_store, n // 100, T0 + timedelta(hours=1, minutes=30))
            changed, took, _ = _step(engine, T0 + timedelta(hours=2))
            hs_min = max(1, math.ceil(worked["hubspot"] / 200)) + math.ceil(
                worked["hubspot"] / 100
            )  # + outcomes
            sf_min = max(1, math.ceil(worked["salesforce"] / 2000))
            rows.append(Row(n, "1% worked", changed, {"hubspot": hs_min, "salesforce": sf_min}, took))
            due, took, _ = _step(engine, T0 + timedelta(days=3))
            rows.append(Row(n, "all due", due, _due_minimum(n - sum(worked.values()), n), took))
        finally:
            state.close()
            hs.stop()
            sf.stop()
    return rows


def _work(hs: HubSpotStore, sf: SalesforceStore, k: int, at: datetime) -> dict[str, int]:
    """Reps complete ``k`` tasks, half in each CRM."""
    done = {"hubspot": 0, "salesforce": 0}
    for task in hs.tasks()[: k // 2]:
        hs.complete_task(task["id"], at=at)
        done["hubspot"] += 1
    for task in sf.all("Task")[: k - k // 2]:
        sf.update("Task", task["Id"], {"Status": "Completed"}, at=at)
        done["salesforce"] += 1
    return done


def _due_minimum(open_: int, n: int) -> dict[str, int]:
    """The least calls to read every due handoff again, and write its SLA to HubSpot."""
    half = open_ // 2
    hs = (
        1 + math.ceil(half / 100) + 3 * math.ceil(half / 1000) + math.ceil(half / 100)
    )  # search, tasks, assoc, update
    statements = math.ceil((open_ - half) / 200)
    sf = 1 + math.ceil(3 * statements / 5)  # the changes, then tasks + calls + meetings by id
    return {"hubspot": hs, "salesforce": sf}


def table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| open handoffs | situation | HubSpot calls (read / write) | minimum | Salesforce calls (read / write) | minimum | seconds |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        hs, sf = r.calls["hubspot"], r.calls["salesforce"]
        lines.append(
            f"| {r.size:,} | {r.situation} | {hs['read'] + hs['write']} ({hs['read']} / {hs['write']}) | "
            f"{r.minimum['hubspot']} | {sf['read'] + sf['write']} ({sf['read']} / {sf['write']}) | "
            f"{r.minimum['salesforce']} | {r.seconds:.1f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.outcomes", description=__doc__)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument(
        "--config", default=None, help="mapping directory (default: the shipped one, reps Ana and Ben)"
    )
    parser.add_argument("--write", action="store_true", help="replace the outcomes section of RESULTS.md")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(args.config) if args.config else _mapping(Path(tmp))
        for size in (int(s) for s in args.sizes.split(",")):
            rows += measure(size, config)
    text = table(rows)
    print(text)
    if args.write:
        _write(text)
    return 0


def _mapping(tmp: Path) -> Path:
    """The shipped mapping files with the bench's two reps (capacity to spare)."""
    import shutil

    import yaml

    from mappings.loader import default_dir

    target = tmp / "mappings"
    shutil.copytree(default_dir(), target)
    reps = [
        {
            "name": "Ana",
            "email": A,
            "works_in": "hubspot",
            "weekly_followup_minutes": 10080,
            "minutes_per_lead": 1,
        },
        {
            "name": "Ben",
            "email": B,
            "works_in": "salesforce",
            "weekly_followup_minutes": 10080,
            "minutes_per_lead": 1,
        },
    ]
    (target / "reps.yaml").write_text(yaml.safe_dump({"version": 1, "reps": reps}))
    return target


def _write(text: str) -> None:
    replace_section(RESULTS, "outcomes", text + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
