"""``python -m bench.run``: the real CLI against both sandboxes at several sizes.

For each size: seed both stores, start the sandboxes with per-call latency and
HubSpot's real limits (190 per 10 s, search 5 per second), then run ``handoff sync
--once --json`` as a child process four times, one schedule interval apart on the
sandboxes' clock: first full sync, settle (the echo of the first sync's own writes),
idle (nothing changed), incremental (~1% of people changed, one lead made sales-ready).
Prints the tables and writes them to ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench import core
from bench.child import REPO, child_env, run_cli
from bench.meter import MeteredHubSpot, MeteredSalesforce
from bench.report import (
    Cycle,
    SizeResult,
    calls_table,
    class_table,
    core_table,
    idle_table,
    latency_table,
    machine,
    markdown,
    memory_table,
    text,
    time_table,
)
from bench.world import SimClock, World, change_some, make_probe_ready, mapping_dir, probe_task_created, seed
from connectors.hubspot.connector import HubSpotConnector, HubSpotSettings, install
from connectors.hubspot.sandbox import HubSpotStore
from connectors.salesforce.sandbox import SalesforceStore
from sync.settings import Settings


def _schedule() -> tuple[float, str]:
    """The worker's default sync interval, or the issue's 300 s where there is no worker yet."""
    spec = Settings.model_fields.get("handoff_sync_interval_seconds")
    if spec is not None and isinstance(spec.default, int | float):
        return float(spec.default), "HANDOFF_SYNC_INTERVAL_SECONDS default"
    return 300.0, "assumed: this version has no HANDOFF_SYNC_INTERVAL_SECONDS"


INTERVAL, INTERVAL_SOURCE = _schedule()
CHILD_TIMEOUT = 3 * 3600.0


class Bench:
    """Both sandboxes for one size, and the CLI cycles run against them."""

    def __init__(self, people: int, latency_ms: float, workdir: Path) -> None:
        self.clock = SimClock()
        hs_store, sf_store = HubSpotStore(clock=self.clock), SalesforceStore(clock=self.clock)
        self.hs = MeteredHubSpot(
            hs_store,
            latency_ms=latency_ms,
            enforce_rate_limits=True,
            rate_limit_max=190,
            interval_ms=10_000,
            search_per_second=5,
        )
        self.sf = MeteredSalesforce(sf_store, latency_ms=int(latency_ms))
        self.world = World(hs_store, sf_store, self.clock)
        self.people, self.workdir = people, workdir

    def __enter__(self) -> Bench:
        self.hs.start()
        self.sf.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.hs.stop()
        self.sf.stop()

    def env(self, config: Path) -> dict[str, str]:
        return child_env(
            {
                "HUBSPOT_BASE_URL": self.hs.base_url,
                "HUBSPOT_ACCESS_TOKEN": self.hs.token,
                "SALESFORCE_INSTANCE_URL": str(self.sf.instance_url),
                "SALESFORCE_ACCESS_TOKEN": self.sf.token,
                "SALESFORCE_CA_BUNDLE": str(self.sf.ca_bundle),
                "HANDOFF_STATE_URL": f"sqlite:///{self.workdir / 'state.db'}",
                "HANDOFF_CONFIG": str(config),
            }
        )

    def cycle(self, name: str, env: dict[str, str]) -> Cycle:
        """One ``sync --once`` child, with fresh rate-limit windows (a schedule gap)."""
        self.hs.new_window()
        before = self._counts()
        run = run_cli(["sync", "--once", "--json", "--as-of", self.clock().isoformat()], env, CHILD_TIMEOUT)
        after = self._counts()
        if run.exit_code not in (0, 1) or not run.summary:
            raise RuntimeError(f"{name} cycle failed (exit {run.exit_code}):\n{run.stderr_tail}")
        calls = {crm: after[0][crm] - before[0][crm] for crm in after[0]}
        endpoints = {crm: after[1][crm] - before[1][crm] for crm in after[1]}
        return Cycle(name, run, calls, endpoints)

    def _counts(self) -> tuple[dict[str, Counter[str]], dict[str, Counter[str]]]:
        with self.hs._lock:
            hs_eps = Counter(self.hs.calls)
        with self.sf._meter:
            sf_eps = Counter(self.sf.calls)
        tallies = {"hubspot": self.hs.tally.snapshot(), "salesforce": self.sf.tally.snapshot()}
        return tallies, {"hubspot": hs_eps, "salesforce": sf_eps}


def bench_size(people: int, latency_ms: float, log: bool = True) -> SizeResult:
    """Seed ``people`` people and run the four cycles; return what was measured."""
    with (
        tempfile.TemporaryDirectory(prefix="handoff-bench-") as tmp,
        Bench(people, latency_ms, Path(tmp)) as b,
    ):
        install(HubSpotConnector(HubSpotSettings.with_token(b.hs.base_url, b.hs.token)))
        start = time.monotonic()
        seed(b.world, people)
        result = SizeResult(people, time.monotonic() - start)
        _say(log, f"[{people:,}] seeded in {result.seed_seconds:.1f} s")
        env = b.env(mapping_dir(Path(tmp) / "mappings"))
        for name in ("first", "settle", "idle", "incremental"):
            changed_at = None
            if name == "incremental":  # the edits land mid-interval, as an average change would
                b.clock.advance(INTERVAL / 2)
                result.changed = change_some(b.world)
                changed_at = make_probe_ready(b.world)
                b.clock.advance(INTERVAL / 2)
            elif name != "first":
                b.clock.advance(INTERVAL)
            c = result.cycles[name] = b.cycle(name, env)
            _say(log, f"[{people:,}] {name}: {c.run.wall:.1f} s, calls HS {c.total('hubspot')} SF {c.total('salesforce')}, "
                 f"{c.run.max_rss_mb:.0f} MB, exit {c.run.exit_code}")  # fmt: skip
            if changed_at is not None:
                created = probe_task_created(b.world, f"hs-{b.world.probe_contact}#1")
                result.probe_latency = (created - changed_at).total_seconds() if created else None
    return result


def _say(enabled: bool, line: str) -> None:
    if enabled:
        print(line, file=sys.stderr, flush=True)


def render(results: Sequence[SizeResult], cpu: core.CoreTimes, latency_ms: float, md: bool) -> str:
    """All tables, as aligned text or Markdown."""
    fmt = markdown if md else text
    sections = [
        ("API calls per 1,000 people pulled and per 1,000 handoff tasks written", calls_table(results)),
        ("Wall time against the rate-limit lower bound", time_table(results, latency_ms)),
        ("Idle cycles: settle (right after the first sync) and idle (nothing changed)", idle_table(results)),
        (
            f"Handoff latency at the default schedule ({INTERVAL:.0f} s, {INTERVAL_SOURCE})",
            latency_table(results, INTERVAL),
        ),
        ("Peak memory (RSS of the CLI process)", memory_table(results)),
        ("CPU time of the pure core", core_table(cpu)),
        ("Calls by class, every cycle (sandbox counts; 429s separate)", class_table(results)),
    ]
    out = []
    for title, (head, rows) in sections:
        out.append(f"### {title}\n" if md else f"\n== {title}")
        out.append(fmt(head, rows))
    return "\n\n".join(out) + "\n"


def write_results(path: Path, body: str, argv: Sequence[str], latency_ms: float) -> None:
    header = f"""# Benchmark results

Generated by `.venv/bin/python -m bench.run {" ".join(argv)}`. Machine: {machine()}.

Setup: both sandboxes on loopback with {latency_ms:g} ms latency per call, HubSpot's limits
enforced (190 requests per 10 s, search 5 per second); the real CLI (`handoff sync --once --json`)
as a child process per cycle; cycles one schedule interval ({INTERVAL:.0f} s) apart on the sandboxes'
clock. Minimums: HubSpot list 100 / search 200 / batch 100 per call; Salesforce 2,000 per query
page / 200 per Collections call. Bounds: HubSpot calls ÷ 19 per s (search ÷ 5 per s); Salesforce
has no per-second limit, so its bound is latency x calls made one after another. A cycle's bound
is the larger of the two (the CRMs can be driven in parallel). CPU time is not part of a bound.
See the README's Benchmarks section.

"""
    path.write_text(header + body)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000,10000", help="comma-separated people counts (default 1000,10000)")
    p.add_argument("--latency-ms", type=float, default=30.0, help="per-call latency of both sandboxes")
    p.add_argument("--quick", action="store_true", help="1,000 people only, core timed on 10k")
    p.add_argument("--core-people", type=int, default=100_000, help="people for the pure-core timing")
    p.add_argument("--out", default=str(REPO / "bench" / "RESULTS.md"), help="Markdown results file")
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = p.parse_args(argv)
    sizes = [1000] if args.quick else [int(x.replace("_", "")) for x in args.sizes.split(",") if x.strip()]
    core_people = 10_000 if args.quick else args.core_people
    results = [bench_size(n, args.latency_ms) for n in sizes]
    with tempfile.TemporaryDirectory() as tmp:
        cpu = core.measure(core_people, mapping_dir(Path(tmp) / "m"))
    print(render(results, cpu, args.latency_ms, md=False))
    if not args.no_write:
        raw = list(argv if argv is not None else sys.argv[1:])
        write_results(Path(args.out), render(results, cpu, args.latency_ms, md=True), raw, args.latency_ms)
        print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
