"""``python -m bench.webhooks``: form fill -> task latency with HubSpot webhooks on.

For each size: seed both stores as ``bench.run`` does and start the sandboxes with the
same per-call latency spread and HubSpot limits; run the first sync and its echo with the
real CLI (``handoff sync --once``); then start the real worker (``handoff run``) with
webhooks on and its schedule (a scheduled cycle at start and every ``--interval`` seconds)
while the HubSpot sandbox's ``WebhookSender`` delivers to it (signed, sometimes twice,
shuffled). Fit HubSpot contacts fill a form at random (seeded) moments of ``--span``
seconds; latency = the handoff task's creation time in the sandbox minus the form fill.
Also: HubSpot calls per webhook-triggered handoff (every micro-cycle's calls, echoes and
empty ones included, over the handoffs they made). Prints the figures; writes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.child import REPO
from bench.run import Bench, Latency
from bench.world import mapping_dir, seed, tasks_created
from connectors.hubspot.connector import HubSpotConnector, HubSpotSettings, install
from connectors.hubspot.sandbox import WebhookSender
from sync.state import StateStore

SECRET = "bench-webhook-client-secret"


@dataclass
class WebhookResult:
    """What one size measured."""

    people: int
    latencies: list[float] = field(default_factory=list)
    missed: int = 0
    micro_cycles: int = 0
    micro_calls: int = 0
    micro_handoffs: int = 0
    scheduled_cycles: int = 0
    scheduled_handoffs: int = 0
    deliveries: int = 0
    duplicates: int = 0

    def quantile(self, q: float) -> float:
        """Nearest-rank quantile of the latencies."""
        values = sorted(self.latencies)
        return values[max(0, min(len(values) - 1, int(-(-q * len(values) // 1)) - 1))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(env: dict[str, str], port: int, interval: int, log: Path) -> subprocess.Popen[bytes]:
    full = {
        **env,
        "HANDOFF_LOG_FORMAT": "json",
        "HANDOFF_METRICS_PORT": str(port),
        "HANDOFF_METRICS_HOST": "127.0.0.1",
        "HANDOFF_SYNC_INTERVAL_SECONDS": str(interval),
        "HUBSPOT_WEBHOOK_URL": f"http://127.0.0.1:{port}/webhooks/hubspot",
        "HUBSPOT_WEBHOOK_CLIENT_SECRET": SECRET,
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "sync.cli", "run"], env=full, cwd=REPO, stdout=out, stderr=out
        )


def _runs(url: str, after: int = 0) -> list[dict[str, Any]]:
    """Summaries of the finished cycles with a run id above ``after``, oldest first."""
    store = StateStore(url)
    try:
        rows = store.runs_by_status(["ok", "partial"], limit=100_000)
    finally:
        store.close()
    return [dict(r["summary"]) | {"id": r["id"]} for r in reversed(rows) if r["id"] > after]


def bench_size(
    people: int, latency: Latency, fills: int, span: float, interval: int, seed_n: int
) -> WebhookResult:
    """One size: seed, first sync, then the worker with webhooks while contacts fill forms."""
    result = WebhookResult(people)
    with (
        tempfile.TemporaryDirectory(prefix="handoff-bench-webhooks-") as tmp,
        Bench(people, latency, [5.0, 20.0], Path(tmp)) as b,
    ):
        install(HubSpotConnector(HubSpotSettings.with_token(b.hs.base_url, b.hs.token)))
        seed(b.world, people, probes=fills * 3 // 2 + 3)
        env = b.env(mapping_dir(Path(tmp) / "mappings"))
        print(f"[{people:,}] seeded; first sync ...", flush=True)
        for name in ("first", "settle"):
            c = b.cycle(name, env, incremental=name != "first")
            print(f"[{people:,}] {name}: {c.run.wall:.1f} s", flush=True)
        port = _free_port()
        url = env["HANDOFF_STATE_URL"]
        proc = _worker(env, port, interval, Path(tmp) / "worker.log")
        sender = WebhookSender(
            b.world.hs, f"http://127.0.0.1:{port}/webhooks/hubspot", SECRET, duplicate_rate=0.05, seed=seed_n
        )
        try:
            before = max((r["id"] for r in _runs(url)), default=0)
            _wait(lambda: _runs(url, before), 600, "the worker's first scheduled cycle")
            before = max(r["id"] for r in _runs(url))  # what the worker does from the first form fill on
            sender.start()
            filled = _fill_forms(b, fills, span, random.Random(f"webhooks-{people}-{seed_n}"))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not _all_done(b, filled):
                time.sleep(0.2)
            _wait(sender.idle, 60, "the sender to finish")
            time.sleep(2 * 0.5 + 1)  # the echo micro-cycles of the last writes
        finally:
            sender.stop()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        created = tasks_created(b.world)
        for person, at in filled.items():
            task = created.get(person.lower())
            if task is None:
                result.missed += 1
            else:
                result.latencies.append((task - at).total_seconds())
        _count(result, _runs(url, before), sender)
        if os.environ.get("BENCH_WEBHOOKS_LOG"):  # keep the worker's log (debugging)
            Path(os.environ["BENCH_WEBHOOKS_LOG"]).write_bytes((Path(tmp) / "worker.log").read_bytes())
    return result


def _fill_forms(b: Bench, fills: int, span: float, rnd: random.Random) -> dict[str, datetime]:
    """``fills`` fit HubSpot contacts attend a webinar and then fill a form, at random moments."""
    contacts = [pid for crm, pid in b.world.probes if crm == "hubspot"][:fills]
    start = time.monotonic()
    moments = sorted(rnd.uniform(0, span) for _ in contacts)
    filled: dict[str, datetime] = {}
    for cid, moment in zip(contacts, moments, strict=True):
        wait = start + moment - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        at = b.clock()
        b.world.hs.add_event("e_attended_webinar", cid, at, {"hs_title": "Webinar: Scaling revops"})
        b.world.hs.submit_form(cid, "Request a demo", at=at)  # the webhook: recent_conversion_date
        filled[cid] = at
    return filled


def _all_done(b: Bench, filled: dict[str, datetime]) -> bool:
    created = tasks_created(b.world)
    return all(p.lower() in created for p in filled)


def _wait(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def _count(result: WebhookResult, runs: Sequence[dict[str, Any]], sender: WebhookSender) -> None:
    for r in runs:
        calls = sum(int(v) for v in (r.get("api_calls") or {}).values())
        handed = int(r.get("handed_off") or 0)
        if r.get("job") == "webhooks":
            result.micro_cycles += 1
            result.micro_calls += calls
            result.micro_handoffs += handed
        else:
            result.scheduled_cycles += 1
            result.scheduled_handoffs += handed
    result.deliveries = len(sender.sent)
    result.duplicates = sum(1 for a in sender.sent if a.duplicate)


def render(results: Sequence[WebhookResult], latency: Latency, interval: int, span: float) -> str:
    rows = [
        f"Webhooks on: per-call latency {latency.describe()}, HubSpot limits enforced, worker schedule "
        f"{interval} s, form fills at random moments over {span:.0f} s, ~5% of deliveries sent twice.",
        "",
        "| size | form fills | handed off | missed | p50 s | p95 s | max s | micro-cycles | HubSpot+SF calls"
        " per webhook handoff | scheduled cycles (handoffs) | deliveries (duplicates) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        per = r.micro_calls / r.micro_handoffs if r.micro_handoffs else float("nan")
        rows.append(
            f"| {r.people:,} | {len(r.latencies) + r.missed} | {len(r.latencies)} | {r.missed} | "
            f"{r.quantile(0.5):.1f} | {r.quantile(0.95):.1f} | {max(r.latencies):.1f} | {r.micro_cycles} | "
            f"{per:.1f} ({r.micro_calls} / {r.micro_handoffs}) | {r.scheduled_cycles} ({r.scheduled_handoffs}) | "
            f"{r.deliveries} ({r.duplicates}) |"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__)
    p.add_argument("--sizes", default="10000,100000", help="people, comma-separated (default 10000,100000)")
    p.add_argument("--latency-ms", type=Latency.parse, default=Latency.parse("80,120,300"))
    p.add_argument("--fills", type=int, default=20, help="form fills per size (default 20)")
    p.add_argument("--span", type=float, default=120.0, help="seconds the form fills are spread over")
    p.add_argument("--interval", type=int, default=300, help="the worker's schedule (default 300 s)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="also print the raw figures as JSON")
    args = p.parse_args(argv)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    results = [
        bench_size(int(n), args.latency_ms, args.fills, args.span, args.interval, args.seed)
        for n in args.sizes.split(",")
    ]
    print(render(results, args.latency_ms, args.interval, args.span))
    if args.json:
        print(json.dumps([r.__dict__ for r in results], default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
