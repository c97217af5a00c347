"""``python -m bench.run``: the real CLI against both sandboxes at several sizes.

For each size: seed both stores, start the sandboxes with a seeded per-call latency spread,
Bulk API 2.0 jobs that take time to complete and HubSpot's real limits (190 per rolling
10 s, search 5 per second), then run ``handoff sync --once --json`` as a child process on
the worker's schedule (a cycle every interval, start to start, on the sandboxes' clock):
first full sync, settle (the echo of the first sync's own writes), idle (nothing changed),
incremental (~1% of people changed at a random moment), echo (nothing changed: the echo of
the incremental cycle's writes), then a series of cycles with people made sales-ready at
random (seeded) moments, some while a cycle runs, to measure change -> task latency.
Prints the tables and writes them to a labelled section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import math
import random
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from bench import core
from bench.child import REPO, child_env, run_cli
from bench.meter import ActivityWindow, MeteredHubSpot, MeteredSalesforce
from bench.report import (
    PAGE,
    ActivityNeed,
    Cycle,
    SizeResult,
    activity_table,
    calls_table,
    class_table,
    core_table,
    echo_table,
    latency_table,
    machine,
    markdown,
    memory_table,
    series_table,
    text,
    time_table,
)
from bench.world import (
    SimClock,
    World,
    activity_in_window,
    change_some,
    make_probe_ready,
    make_ready,
    mapping_dir,
    seed,
    tasks_created,
)
from connectors.hubspot.connector import DEFAULT_EVENT_KINDS, HubSpotConnector, HubSpotSettings, install
from connectors.hubspot.sandbox import Faults as HubSpotFaults
from connectors.hubspot.sandbox import HubSpotStore
from connectors.salesforce.sandbox import Faults as SalesforceFaults
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
PROBES_PER_GAP = 3  # two HubSpot contacts and one Salesforce lead become sales-ready per gap
BACKGROUND_SHARE = 0.001  # people edited per gap during the series


@dataclass(frozen=True)
class Latency:
    """Per-call latency: fixed (``ms``) or a triangular spread (low, mode, high) in ms."""

    spread: tuple[float, float, float] | None
    fixed_ms: float = 0.0

    @classmethod
    def parse(cls, raw: str) -> Latency:
        parts = [float(x) for x in raw.split(",") if x.strip()]
        if len(parts) == 1:
            return cls(None, parts[0])
        if len(parts) == 2:
            parts.insert(1, parts[0] + (parts[1] - parts[0]) / 5)
        if len(parts) != 3 or not parts[0] <= parts[1] <= parts[2]:
            raise argparse.ArgumentTypeError(f"latency: MS or LOW,HIGH or LOW,MODE,HIGH, got {raw!r}")
        return cls((parts[0], parts[1], parts[2]))

    @property
    def mean_s(self) -> float:
        """Mean seconds per call (the triangular mean, (low + mode + high) / 3)."""
        return (sum(self.spread) / 3 if self.spread else self.fixed_ms) / 1000

    def describe(self) -> str:
        if self.spread is None:
            return f"{self.fixed_ms:g} ms per call"
        low, mode, high = self.spread
        return f"{low:g}-{high:g} ms per call (triangular, mode {mode:g} ms, mean {self.mean_s * 1000:.0f} ms; seeded)"


def _range(raw: str) -> list[float] | None:
    parts = [float(x) for x in raw.split(",") if x.strip()]
    return None if not parts or max(parts) <= 0 else [parts[0], parts[-1]]


class Bench:
    """Both sandboxes for one size, and the CLI cycles run against them."""

    def __init__(self, people: int, latency: Latency, bulk_s: list[float] | None, workdir: Path) -> None:
        self.clock = SimClock()
        hs_store, sf_store = HubSpotStore(clock=self.clock), SalesforceStore(clock=self.clock)
        spread = list(latency.spread) if latency.spread else None
        self.hs = MeteredHubSpot(
            hs_store,
            faults=HubSpotFaults(latency_spread_ms=spread, seed=7),
            latency_ms=latency.fixed_ms,
            enforce_rate_limits=True,
            rate_limit_max=190,
            interval_ms=10_000,
            search_per_second=5,
        )
        sf_faults = SalesforceFaults(latency_spread_ms=spread, bulk_job_seconds=bulk_s, seed=7)
        self.sf = MeteredSalesforce(sf_store, faults=sf_faults, latency_ms=int(latency.fixed_ms))
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

    def cycle(self, name: str, env: dict[str, str], incremental: bool = True) -> Cycle:
        """One ``sync --once`` child, with fresh rate-limit windows (a schedule gap)."""
        self.hs.new_window()
        self.hs.take_chains()
        before = self._counts()
        started = self.clock()
        run = run_cli(["sync", "--once", "--json", "--as-of", started.isoformat()], env, CHILD_TIMEOUT)
        after = self._counts()
        chains, window = self.hs.take_chains()
        if run.exit_code not in (0, 1) or not run.summary:
            raise RuntimeError(f"{name} cycle failed (exit {run.exit_code}):\n{run.stderr_tail}")
        calls = {crm: after[0][crm] - before[0][crm] for crm in after[0]}
        endpoints = {crm: after[1][crm] - before[1][crm] for crm in after[1]}
        c = Cycle(name, run, calls, endpoints, chains, self._need(window, started), incremental=incremental)
        c.sf_chain_min = self._sf_chain(c)
        return c

    def _need(self, window: ActivityWindow, started: datetime) -> ActivityNeed:
        by_type, clicks = activity_in_window(self.world.hs, window.events_after, window.email_after)
        reach = 0.0
        if window.events_after is not None:
            reach = started.timestamp() - window.events_after / 1000
        return ActivityNeed(
            by_type,
            tuple(DEFAULT_EVENT_KINDS),
            clicks,
            read_events=window.events_after is not None,
            read_email=window.email_after is not None,
            window_s=reach,
        )

    def _sf_chain(self, c: Cycle) -> int:
        """Pages of the longest query a minimal Salesforce pull needs (Lead and Contact
        queries run side by side): every lead or contact on a first sync, else what was pulled."""
        if c.incremental:
            return max(1, math.ceil(c.pulled("salesforce") / PAGE["sf_query"]))
        contacts = len(self.world.sf._table("Contact").rows)
        return max(1, math.ceil(max(len(self.world.sf_leads), contacts) / PAGE["sf_query"]))

    def _counts(self) -> tuple[dict[str, Counter[str]], dict[str, Counter[str]]]:
        with self.hs._lock:
            hs_eps = Counter(self.hs.calls)
        with self.sf._meter:
            sf_eps = Counter(self.sf.calls)
        tallies = {"hubspot": self.hs.tally.snapshot(), "salesforce": self.sf.tally.snapshot()}
        return tallies, {"hubspot": hs_eps, "salesforce": sf_eps}

    def wait_until(self, at: datetime) -> None:
        """Move the sandboxes' clock to ``at`` (never back): the schedule's next start."""
        gap = (at - self.clock()).total_seconds()
        if gap > 0:
            self.clock.advance(gap)


Change = tuple[datetime, Callable[[], None]]


class Injector:
    """Makes changes at their moments on the sandboxes' clock while a cycle runs; whatever
    is still due when the cycle ends is made afterwards, the clock moved to each moment."""

    def __init__(self, bench: Bench, changes: list[Change]) -> None:
        self.bench, self.changes = bench, sorted(changes, key=lambda c: c[0])
        self.done = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Injector:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for at, change in self.changes[self.done :]:
            self.bench.wait_until(at)
            change()

    def _run(self) -> None:
        for at, change in self.changes:
            while (wait := (at - self.bench.clock()).total_seconds()) > 0:
                if self._stop.wait(min(wait, 0.05)):
                    return
            change()
            self.done += 1


def bench_size(
    people: int,
    latency: Latency,
    bulk_s: list[float] | None = None,
    cycles: int = 20,
    log: bool = True,
    first_only: bool = False,
) -> SizeResult:
    """Seed ``people`` people and run the named cycles and the latency series
    (``first_only``: the first sync alone, for sizes where the rest would take hours)."""
    with (
        tempfile.TemporaryDirectory(prefix="handoff-bench-") as tmp,
        Bench(people, latency, bulk_s, Path(tmp)) as b,
    ):
        install(HubSpotConnector(HubSpotSettings.with_token(b.hs.base_url, b.hs.token)))
        start = time.monotonic()
        gaps = 0 if first_only else max(0, cycles - 1)
        seed(b.world, people, probes=gaps * PROBES_PER_GAP)
        result = SizeResult(people, time.monotonic() - start)
        _say(log, f"[{people:,}] seeded in {result.seed_seconds:.1f} s")
        env = b.env(mapping_dir(Path(tmp) / "mappings"))
        rnd = random.Random(f"schedule-{people}")
        at = b.clock()
        for name in ("first",) if first_only else ("first", "settle", "idle", "incremental", "echo"):
            if name == "incremental":  # ~1% edited and the probe made ready at random moments
                first, second = sorted(_moments(rnd, b.clock(), at, 2))  # after idle ended
                b.wait_until(first)
                result.changed += change_some(b.world)
                b.wait_until(second)
                make_probe_ready(b.world)
            b.wait_until(at)
            c = result.cycles[name] = b.cycle(name, env, incremental=name != "first")
            _report(log, people, c)
            at += timedelta(seconds=INTERVAL)
        if first_only:
            return result
        changed_at = _series(b, result, env, rnd, at, cycles, log)
        created = tasks_created(b.world)
        for person, when in changed_at.items():
            task = created.get(person.lower())
            if task is None:
                result.not_handed_off += 1
            else:
                result.latencies.append((task - when).total_seconds())
    return result


def _series(
    b: Bench,
    result: SizeResult,
    env: dict[str, str],
    rnd: random.Random,
    at: datetime,
    cycles: int,
    log: bool,
) -> dict[str, datetime]:
    """``cycles`` cycles one interval apart; before each but the first, three probes become
    sales-ready and ~0.1% of people are edited, each at a random moment of the gap."""
    changed_at: dict[str, datetime] = {}
    probes = iter(b.world.probes)

    def ready(crm: str, person: str) -> Callable[[], None]:
        return lambda: changed_at.__setitem__(person, make_ready(b.world, crm, person))

    for k in range(cycles):
        b.wait_until(at)
        nxt = at + timedelta(seconds=INTERVAL)
        changes: list[Change] = []
        if k < cycles - 1:
            moments = _moments(rnd, at, nxt, PROBES_PER_GAP + 1)
            changes = [(m, ready(*next(probes))) for m in moments[:PROBES_PER_GAP]]
            changes.append((moments[-1], lambda: _count(result, change_some(b.world, BACKGROUND_SHARE))))
        with Injector(b, changes):
            c = b.cycle(f"series {k + 1}", env)
        result.series.append(c)
        _report(log, result.people, c)
        at = nxt
    return changed_at


def _moments(rnd: random.Random, start: datetime, end: datetime, n: int) -> list[datetime]:
    span = (end - start).total_seconds()
    return [start + timedelta(seconds=rnd.uniform(0, span)) for _ in range(n)]


def _count(result: SizeResult, changed: int) -> None:
    result.changed += changed


def _report(log: bool, people: int, c: Cycle) -> None:
    _say(log, f"[{people:,}] {c.name}: {c.run.wall:.1f} s, calls HS {c.total('hubspot')} SF {c.total('salesforce')}, "
         f"{c.run.max_rss_mb:.0f} MB, exit {c.run.exit_code}")  # fmt: skip


def _say(enabled: bool, line: str) -> None:
    if enabled:
        print(line, file=sys.stderr, flush=True)


def render(results: Sequence[SizeResult], cpu: core.CoreTimes, latency: Latency, md: bool) -> str:
    """All tables, as aligned text or Markdown."""
    fmt = markdown if md else text
    sections = [
        ("API calls against the documented minimum", calls_table(results)),
        ("HubSpot activity: what the windows read hold, and the fewest calls", activity_table(results)),
        ("Wall time against the floor", time_table(results, latency.mean_s)),
        (
            f"Handoff latency over the series ({INTERVAL:.0f} s schedule, {INTERVAL_SOURCE}; "
            "changes at random moments)",
            latency_table(results, INTERVAL),
        ),
        ("Echo: cycles with nothing changed since the cycle before", echo_table(results)),
        ("The series, cycle by cycle", series_table(results)),
        ("Peak memory (RSS of the CLI process)", memory_table(results)),
        ("CPU time of the pure core", core_table(cpu)),
        ("Calls by class, every named cycle (sandbox counts; 429s separate)", class_table(results)),
    ]
    out = []
    for title, (head, rows) in sections:
        out.append(f"#### {title}\n" if md else f"\n== {title}")
        out.append(fmt(head, rows))
    return "\n\n".join(out) + "\n"


SETUP = """Setup: both sandboxes on loopback, per-call latency {latency}; Salesforce Bulk API 2.0
query jobs complete {bulk}; HubSpot's limits enforced (190 requests per rolling 10 s, search
5 per second); the real CLI (`handoff sync --once --json`) as a child process per cycle, one
schedule interval ({interval:.0f} s) apart start to start on the sandboxes' clock; latency
series of {cycles} cycles."""


def write_results(path: Path, label: str, body: str, argv: Sequence[str], setup: str) -> None:
    """Replace the ``label`` section of ``path`` (between its markers), keep everything else."""
    text = (
        f"## {label}\n\nGenerated by `.venv/bin/python -m bench.run {' '.join(argv)}`. "
        f"Machine: {machine()}.\n\n{setup}\n\n{body}"
    )
    replace_section(path, label, text)


def replace_section(path: Path, label: str, text: str) -> None:
    """``text`` as the ``label`` section of ``path`` (between ``<!-- bench:label -->``
    markers), replacing the old one or appended; the rest of the file is kept."""
    begin, end = f"<!-- bench:{label} -->", f"<!-- /bench:{label} -->"
    section = f"{begin}\n{text}{end}"
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    new = (
        pattern.sub(lambda _: section, old) if pattern.search(old) else old.rstrip() + "\n\n" + section + "\n"
    )
    path.write_text(new)


def first_only_table(results: Sequence[SizeResult]) -> str:
    """The sizes that ran their first sync alone: its wall time, peak RSS and API calls."""
    if not results:
        return ""
    rows = ["", "First sync only (the other cycles and the latency series not run at this size):", "",
            "| people | first sync | peak RSS | HubSpot calls | Salesforce calls | exit |",
            "|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in results:
        c = r.cycles["first"]
        rows.append(
            f"| {r.people:,} | {c.run.wall:.1f} s | {c.run.max_rss_mb:.0f} MB | {c.total('hubspot'):,} "
            f"| {c.total('salesforce'):,} | {c.run.exit_code} |"
        )
    return "\n".join(rows) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000,10000", help="comma-separated people counts (default 1000,10000)")
    p.add_argument("--latency-ms", type=Latency.parse, default=Latency.parse("80,120,300"),
                   help="per-call latency: MS, or LOW,HIGH / LOW,MODE,HIGH (triangular; default 80,120,300)")  # fmt: skip
    p.add_argument("--bulk-seconds", type=_range, default=[5.0, 20.0],
                   help="Bulk API 2.0 query job time to complete, LOW,HIGH (default 5,20; 0: at once)")  # fmt: skip
    p.add_argument("--cycles", type=int, default=20, help="cycles in the latency series (default 20)")
    p.add_argument("--quick", action="store_true", help="1,000 people only, core timed on 10k")
    p.add_argument("--first-only", default="", metavar="SIZES",
                   help="comma-separated sizes (of --sizes) that run the first sync only, e.g. 1000000")  # fmt: skip
    p.add_argument("--core-people", type=int, default=100_000, help="people for the pure-core timing")
    p.add_argument("--label", default="latest", help="RESULTS.md section to replace (default latest)")
    p.add_argument("--out", default=str(REPO / "bench" / "RESULTS.md"), help="Markdown results file")
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = p.parse_args(argv)
    sizes = [1000] if args.quick else [int(x.replace("_", "")) for x in args.sizes.split(",") if x.strip()]
    core_people = 10_000 if args.quick else args.core_people
    first_only = {int(x.replace("_", "")) for x in args.first_only.split(",") if x.strip()}
    results = [
        bench_size(n, args.latency_ms, args.bulk_seconds, args.cycles, first_only=n in first_only)
        for n in sizes
    ]
    full = [r for r in results if r.people not in first_only]
    alone = [r for r in results if r.people in first_only]
    with tempfile.TemporaryDirectory() as tmp:
        cpu = core.measure(core_people, mapping_dir(Path(tmp) / "m"))
    body = (render(full, cpu, args.latency_ms, md=True) if full else "") + first_only_table(alone)
    print((render(full, cpu, args.latency_ms, md=False) if full else "") + first_only_table(alone))
    if not args.no_write:
        raw = list(argv if argv is not None else sys.argv[1:])
        bulk = (
            "at once"
            if not args.bulk_seconds
            else "after {:g}-{:g} s (uniform, seeded)".format(*args.bulk_seconds)
        )
        setup = SETUP.format(
            latency=args.latency_ms.describe(), bulk=bulk, interval=INTERVAL, cycles=args.cycles
        )
        write_results(Path(args.out), args.label, body, raw, setup)
        print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
