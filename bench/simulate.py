"""``python -m bench.simulate``: ``handoff simulate`` at N mirrored people (time, peak RSS).

For each size, a state is seeded straight into SQLite as cycles leave it (``bench.core``'s
synthetic people: 70% HubSpot contacts, 45% Salesforce leads, 25% in both and linked by
identity; 12% with 1-6 activities in the scoring window; the owners cache with
``bench.world``'s reps; 1,000 handoffs this week in the ledger). Then the real CLI runs
``handoff simulate --config NEW --current CURRENT --json`` as a child process, NEW being the
shipped mapping with the threshold lowered by 10 points, with the CRM settings pointing at a
port where nothing listens (it must not call them). Prints a table: people, wall and CPU
seconds, peak RSS of the child, sales-ready and handed off under each mapping, the extra
handoffs. ``--sizes 10000,100000``.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from more_itertools import chunked

from bench.child import child_env, run_cli
from bench.core import _people
from bench.world import mapping_dir, rep_emails
from sync.migrations import upgrade
from sync.routing import week_start
from sync.state import Identity, LedgerEntry, StateStore

NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)  # a Wednesday


def seed(path: Path, n: int) -> None:
    """A state of ``n`` synthetic people (see the module), as cycles leave it."""
    state = StateStore(f"sqlite:///{path}")
    upgrade(state.engine)  # the schema a real state has (migrations applied)
    records, acts = _people(n, NOW, random.Random(5))
    by_email: dict[str, dict[str, str]] = {}
    for p in records:
        by_email.setdefault(p.email or "", {})[p.crm] = p.id
    for part in chunked(records, 5000):
        state.save_people(list(part))
    idents = [
        Identity(
            f"hs-{ids['hubspot']}" if "hubspot" in ids else f"sf-{ids['salesforce']}",
            ids.get("hubspot"),
            ids.get("salesforce"),
            "lead" if "salesforce" in ids else None,
            email,
        )
        for email, ids in by_email.items()
    ]
    for part in chunked(idents, 5000):
        state.save_identities(part)
    from crm_handoff.records import Activity

    flat = [
        Activity(a.crm, a.id, a.kind, a.occurred_at, None, email)
        for email, items in acts.items()
        for a in items
    ]
    state.save_activities(flat)
    owners = [{"id": f"o{i}", "email": e, "name": e, "active": True} for i, e in enumerate(rep_emails())]
    for crm in ("hubspot", "salesforce"):
        state.set_watermark(crm, "owners", json.dumps({"at": NOW.isoformat(), "owners": owners}))
    week = week_start(NOW, "UTC")
    reps = rep_emails()
    entries = [
        LedgerEntry(
            f"bench-{i}#1",
            "hubspot",
            f"bench-{i}",
            1,
            reps[i % len(reps)],
            week,
            "done",
            f"t{i}",
            70,
            [],
            NOW - timedelta(days=1),
        )
        for i in range(1000)
    ]
    state.record_intents(entries, None)
    state.close()


def lowered(current: Path, target: Path, by: int = 10) -> Path:
    """A copy of ``current`` with the threshold ``by`` points lower."""
    import shutil

    shutil.copytree(current, target)
    path = target / "sales_ready.yaml"
    data = yaml.safe_load(path.read_text())
    data["threshold"] = int(data["threshold"]) - by
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return target


def measure(n: int, tmp: Path) -> dict[str, Any]:
    """Seed ``n`` people and run ``handoff simulate`` on them; the row of the table."""
    db = tmp / f"state-{n}.db"
    seed(db, n)
    current = mapping_dir(tmp / f"current-{n}")
    new = lowered(current, tmp / f"new-{n}")
    env = child_env(
        {
            "HANDOFF_STATE_URL": f"sqlite:///{db}",
            "HUBSPOT_BASE_URL": "http://127.0.0.1:9",  # nothing listens there: no CRM call
            "HUBSPOT_ACCESS_TOKEN": "unused",
            "SALESFORCE_INSTANCE_URL": "https://127.0.0.1:9",
            "SALESFORCE_ACCESS_TOKEN": "unused",
        }
    )
    args = ["simulate", "--config", str(new), "--current", str(current), "--json", "--as-of", NOW.isoformat()]
    run = run_cli(args, env, timeout=3600)
    if run.exit_code != 0:
        raise SystemExit(f"handoff simulate failed ({run.exit_code}): {run.stderr_tail}")
    s = run.summary
    return {
        "people": n,
        "wall_s": round(run.wall, 1),
        "cpu_s": round(run.cpu, 1),
        "peak_rss_mb": round(run.max_rss_mb),
        "ready_current": s["current"]["sales_ready"],
        "ready_new": s["new"]["sales_ready"],
        "handed_current": s["current"]["handed_off"],
        "handed_new": s["new"]["handed_off"],
        "extra": s["only_new"]["count"],
        "state_mb": round(db.stat().st_size / 1e6),
        "run": asdict(run) | {"summary": None},
    }


def table(rows: Sequence[dict[str, Any]]) -> str:
    head = "| people | wall s | CPU s | peak RSS MB | sales-ready cur/new | handed off cur/new | extra |"
    lines = [head, "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['people']:,} | {r['wall_s']} | {r['cpu_s']} | {r['peak_rss_mb']} | "
            f"{r['ready_current']:,} / {r['ready_new']:,} | {r['handed_current']:,} / {r['handed_new']:,} | "
            f"{r['extra']:,} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.simulate", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000", help="comma-separated people counts")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-simulate-") as tmp:
        for n in [int(s) for s in args.sizes.split(",")]:
            rows.append(measure(n, Path(tmp)))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
