"""``python -m bench.report_time``: how long ``handoff report`` takes at 100k and 1M people.

For each size and backend (SQLite always; PostgreSQL when ``HANDOFF_TEST_POSTGRES_URL`` is
set), a fresh state database is filled straight through SQLAlchemy Core, as a year of
cycles would leave it: every person's identity (60% HubSpot only, 25% both CRMs, 15%
Salesforce only) and current stage, 1 to 5 stage entries each over the last year along
the funnel (subscriber -> lead -> mql -> sql -> opportunity -> customer), a handoff with
its outcome row for 5% of the people, 2% waiting on the queue, and a run a day. Then the
report's figures (``sync.report.report_data``: everything ``report --json`` and the page
show, aggregated in SQL) are computed three times; the table gives the median seconds and
the whole page's time (``report_page``: the figures again, the charts' specs checked
against the Vega-Lite schema, the HTML), measured after a first page has built the inlined
Vega bundle that every later page of the process reuses. Prints a table; ``--write`` puts it in
bench/RESULTS.md (section ``report``).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from bench.run import replace_section
from mappings.loader import load_mappings
from sync.report import report_data, report_page
from sync.state import StateStore
from sync.state.tables import current_stage, identities, ledger, outcomes, queue, runs, stage_history

RESULTS = Path(__file__).with_name("RESULTS.md")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
FUNNEL = ("subscriber", "lead", "mql", "sql", "opportunity", "customer")
CHUNK = 20_000
REPS = ("dana.cruz@northwind.example", "lee.park@northwind.example", "sam.okafor@northwind.example")


def _people(n: int, rnd: random.Random) -> Iterator[dict[str, list[dict[str, Any]]]]:
    """Rows for ``n`` people, a chunk at a time, by table."""
    for start in range(0, n, CHUNK):
        rows: dict[str, list[dict[str, Any]]] = {
            t: [] for t in ("identities", "current", "history", "ledger", "outcomes", "queue")
        }
        for i in range(start, min(n, start + CHUNK)):
            key = f"p{i:08d}"
            kind = rnd.random()
            rows["identities"].append(
                {
                    "person_key": key,
                    "hubspot_id": None if kind > 0.85 else str(10_000_000 + i),
                    "salesforce_id": f"00Q{i:015d}" if kind > 0.6 else None,
                    "salesforce_type": "lead" if kind > 0.6 else None,
                    "email": f"{key}@bench.example",
                }
            )
            reached = min(len(FUNNEL), 1 + int(rnd.expovariate(0.9)))
            at = NOW - timedelta(days=rnd.uniform(1, 365))
            for stage in FUNNEL[:reached]:
                rows["history"].append({"person_key": key, "stage": stage, "entered_at": at})
                at += timedelta(days=rnd.uniform(0.5, 30))
            rows["current"].append({"person_key": key, "stage": FUNNEL[reached - 1], "updated_at": at})
            if rnd.random() < 0.05:
                _handoff(rows, key, at, rnd)
            elif rnd.random() < 0.02:
                rows["queue"].append(
                    {"person_key": key, "score": rnd.randint(60, 100), "snapshot": {}, "reason": "rep capacity",
                     "status_written": None, "queued_at": NOW - timedelta(days=rnd.uniform(0, 40)),
                     "updated_at": NOW, "valid_until": None}
                )  # fmt: skip
        yield rows


def _handoff(rows: dict[str, list[dict[str, Any]]], key: str, at: datetime, rnd: random.Random) -> None:
    rep = rnd.choice(REPS)
    touched = at + timedelta(hours=rnd.uniform(0.5, 30)) if rnd.random() < 0.7 else None
    rows["ledger"].append(
        {"key": f"{key}#1", "crm": "salesforce", "person_key": key, "episode": 1, "rep_email": rep,
         "week_start": (at - timedelta(days=at.weekday())).date(), "status": "done", "task_id": f"00T{key}",
         "score": 70, "reasons": [], "payload": {}, "planned_at": at, "confirmed_at": at, "error": None,
         "run_id": None}
    )  # fmt: skip
    rows["outcomes"].append(
        {"key": f"{key}#1", "person_key": key, "rep_email": rep, "assigned_at": at, "due_at": at + timedelta(hours=16),
         "state": "worked" if touched else "open", "sla": "met" if touched and touched <= at + timedelta(hours=16) else "missed",
         "first_touch_at": touched, "first_touch_kind": "call" if touched else None, "reassignments": 0,
         "gave_back": False, "updated_at": NOW}
    )  # fmt: skip


def seed(state: StateStore, n: int, seed_value: int = 7) -> float:
    """Fill the state with ``n`` people (see the module); returns the seconds it took."""
    started = time.perf_counter()
    rnd = random.Random(seed_value)
    tables = {"identities": identities, "current": current_stage, "history": stage_history, "ledger": ledger,
              "outcomes": outcomes, "queue": queue}  # fmt: skip
    for chunk in _people(n, rnd):
        with state.engine.begin() as conn:
            for name, table in tables.items():
                if chunk[name]:
                    conn.execute(insert(table), chunk[name])
    with state.engine.begin() as conn:
        day_rows = [
            {"started_at": NOW - timedelta(days=d), "finished_at": NOW - timedelta(days=d), "status": "ok",
             "summary": {"kept_in_nurture": 50 + d % 17, "handed_off": 15, "handed_off_from_nurture": d % 9}}
            for d in range(365)
        ]  # fmt: skip
        conn.execute(insert(runs), day_rows)
    return time.perf_counter() - started


def measure(url: str, n: int, config: Path | None) -> dict[str, Any]:
    """Seed a fresh state at ``url`` with ``n`` people and time the report."""
    state = StateStore(url)
    state.create_schema()
    try:
        seeded = seed(state, n)
        mapping = load_mappings(config)
        took = []
        for _ in range(3):
            started = time.perf_counter()
            report_data(state, mapping, NOW)
            took.append(time.perf_counter() - started)
        report_page(state, mapping, NOW)  # the first builds the inlined Vega bundle (once a process)
        started = time.perf_counter()
        report_page(state, mapping, NOW)
        page = time.perf_counter() - started
    finally:
        state.close()
    backend = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    return {"backend": backend, "people": n, "seed": seeded, "report": statistics.median(took), "page": page}


def _postgres(base: str, n: int) -> str:
    """A fresh database on the test server for one size."""
    from sqlalchemy import create_engine, text

    name = f"bench_report_{n}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.rsplit("/", 1)[0] + f"/{name}"


def table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| backend | people | report figures (s, median of 3) | whole page (s) | seeding (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['people']:,} | {r['report']:.2f} | {r['page']:.2f} | {r['seed']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report_time", description=__doc__)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--config", default=None)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    pg = os.environ.get("HANDOFF_TEST_POSTGRES_URL")
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(measure(f"sqlite:///{tmp}/state.db", n, Path(args.config) if args.config else None))
            print(table(rows), flush=True)
        if pg:
            rows.append(measure(_postgres(pg, n), n, Path(args.config) if args.config else None))
            print(table(rows), flush=True)
    text = table(rows)
    if args.write:
        _write(text)
    return 0


def _write(text: str) -> None:
    replace_section(RESULTS, "report", text + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
