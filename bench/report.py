"""Turn measured cycles into the issue's figures and render them as text and Markdown."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bench.child import ChildRun
from bench.core import CoreTimes
from bench.meter import CLASSES, THROTTLED, THROTTLED_SEARCH

#: HubSpot's limits: a rolling 10-second window of 190 calls (a fresh window admits all 190
#: at once), and search 5 per rolling second. Salesforce has no per-second limit.
HS_BURST, HS_WINDOW_S = 190, 10.0
HS_SEARCH_BURST, HS_SEARCH_WINDOW_S = 5, 1.0
#: Documented page and batch maxima. The events API documents no maximum ``limit``: 100 is
#: assumed (the sandbox serves up to 1,000); legacy email events: 1,000 (documented maximum).
PAGE = {
    "hubspot_list": 100,
    "hubspot_search": 200,
    "hubspot_batch": 100,
    "hubspot_events": 100,
    "hubspot_email_events": 1000,
    "hubspot_assoc_batch": 1000,
    "sf_query": 2000,
    "sf_collection": 200,
}
CRMS = ("hubspot", "salesforce")
#: Classes whose minimum is computed; the others (Salesforce activity, "other") count as made.
COMPUTED = ("people_pull", "people_read", "activity", "owners", "task_lookup", "task_write",
            "person_write", "person_create")  # fmt: skip
WRITES = ("task_write", "person_write", "person_create")


def burst_bound(calls: int, burst: int, window_s: float, latency_s: float) -> float:
    """Seconds until ``calls`` calls are answered under a rolling window of ``burst`` calls:
    a fresh window admits ``burst`` at once, each further ``burst`` waits one window; the
    last call still takes its latency. 0 for no calls."""
    return 0.0 if calls <= 0 else window_s * ((calls - 1) // burst) + latency_s


def _pages(items: int, page: int, at_least: int = 1) -> int:
    return max(at_least, math.ceil(items / page))


@dataclass
class ActivityNeed:
    """What a cycle's HubSpot activity reads had to page through (from the store, for the
    windows the cycle asked for), and the engagement calls it made."""

    by_type: Counter[str] = field(default_factory=Counter)  # events in the window, every type
    configured: tuple[str, ...] = ()
    clicks: int = 0
    read_events: bool = False
    read_email: bool = False
    window_s: float = 0.0  # how far back the events read reached, seconds before the cycle

    def per_type_pages(self) -> int:
        """One filtered pass per configured event type."""
        return sum(_pages(self.by_type[t], PAGE["hubspot_events"]) for t in self.configured)

    def unfiltered_pages(self) -> int:
        """One pass without ``eventType``: every event type in the window comes back."""
        return _pages(sum(self.by_type.values()), PAGE["hubspot_events"])

    def event_pages(self) -> tuple[int, int]:
        """(calls, longest chain) of the cheaper plan: unfiltered, or per type."""
        if not self.read_events:
            return 0, 0
        unfiltered, per_type = self.unfiltered_pages(), self.per_type_pages()
        if unfiltered <= per_type:
            return unfiltered, unfiltered
        return per_type, max(_pages(self.by_type[t], PAGE["hubspot_events"]) for t in self.configured)

    def email_pages(self) -> int:
        return _pages(self.clicks, PAGE["hubspot_email_events"]) if self.read_email else 0


@dataclass
class Cycle:
    """One measured CLI cycle: the run plus what each sandbox saw (by class and endpoint)."""

    name: str
    run: ChildRun
    calls: dict[str, Counter[str]]  # crm -> class counts (plus search:/429 keys)
    endpoints: dict[str, Counter[str]]  # crm -> sandbox endpoint counts
    chains: Counter[str] = field(default_factory=Counter)  # HubSpot cursor-paged reads: pages
    activity: ActivityNeed = field(default_factory=ActivityNeed)
    sf_chain_min: int = 1  # pages of the longest Salesforce query a minimal pull needs
    incremental: bool = True

    def total(self, crm: str) -> int:
        return sum(self.endpoints[crm].values())

    def pulled(self, crm: str) -> int:
        return int(self.run.summary.get("people_pulled", {}).get(crm, 0))

    def tasks(self, crm: str) -> int:
        s = self.run.summary
        return int(s.get("tasks_created", {}).get(crm, 0)) + int(
            s.get("tasks_already_existed", {}).get(crm, 0)
        )

    def writes(self, crm: str) -> int:
        return sum(self.calls[crm][c] for c in WRITES)

    def hs_activity_made(self) -> tuple[int, int]:
        """(events + email calls, engagement calls) HubSpot activity calls made."""
        paged = sum(n for k, n in self.chains.items() if k.startswith(("events", "email")))
        return paged, self.calls["hubspot"]["activity"] - paged

    def min_calls(self, crm: str) -> dict[str, int]:
        """Fewest calls the documented page sizes and filters allow for this cycle's data."""
        s = self.run.summary
        updated = int(s.get("people_updated", {}).get(crm, 0))
        created = int(s.get("people_created", {}).get(crm, 0))
        if crm == "hubspot":
            page = PAGE["hubspot_search"] if self.incremental else PAGE["hubspot_list"]
            events, _ = self.activity.event_pages()
            return {
                "people_pull": _pages(self.pulled(crm), page),
                "activity": events + self.activity.email_pages() + self.hs_activity_made()[1],
                "owners": min(1, self.calls[crm]["owners"]),
                "task_write": math.ceil(self.tasks(crm) / PAGE["hubspot_batch"]),
                "person_write": math.ceil(updated / PAGE["hubspot_batch"]),
                "person_create": math.ceil(created / PAGE["hubspot_batch"]),
            }
        return {
            "people_pull": max(2, math.ceil(self.pulled(crm) / PAGE["sf_query"])),  # Lead and Contact
            "activity": self.calls[crm]["activity"],
            "owners": min(1, self.calls[crm]["owners"]),
            "task_write": math.ceil(self.tasks(crm) / PAGE["sf_collection"]),
            "person_write": math.ceil(updated / PAGE["sf_collection"]),
            "person_create": math.ceil(created / PAGE["sf_collection"]),
        }

    def floor(self, latency_s: float) -> tuple[float, str]:
        """The least wall time the limits and latency allow the minimal calls (see RESULTS.md):
        per CRM max(latency x longest chain, burst-limited rate), the larger CRM; and which binds."""
        hs = self.min_calls("hubspot")
        search = hs["people_pull"] if self.incremental else 0
        general = sum(hs.values()) - search + self.calls["hubspot"]["other"]
        rate = max(
            burst_bound(general, HS_BURST, HS_WINDOW_S, latency_s),
            burst_bound(search, HS_SEARCH_BURST, HS_SEARCH_WINDOW_S, latency_s),
        )
        chain = max(hs["people_pull"], self.activity.event_pages()[1], self.activity.email_pages())
        hs_writes = sum(hs[c] for c in WRITES)
        hs_latency = latency_s * (chain + (1 if hs_writes else 0))
        sf = self.min_calls("salesforce")
        sf_latency = latency_s * (self.sf_chain_min + (1 if sum(sf[c] for c in WRITES) else 0))
        return _binding(hs_latency, rate, sf_latency)

    def bound_made(self, latency_s: float) -> tuple[float, str]:
        """The same model over the calls actually made (admitted; 429s are waste)."""
        hs = self.calls["hubspot"]
        search = sum(hs[f"search:{c}"] for c in CLASSES)
        general = sum(hs[c] for c in CLASSES) - search
        rate = max(
            burst_bound(general, HS_BURST, HS_WINDOW_S, latency_s),
            burst_bound(search, HS_SEARCH_BURST, HS_SEARCH_WINDOW_S, latency_s),
        )
        chain = max(self.chains.values(), default=0) + (1 if self.writes("hubspot") else 0)
        sf = self.calls["salesforce"]
        sf_chain = sf["people_pull"] + (1 if self.writes("salesforce") else 0)
        return _binding(latency_s * chain, rate, latency_s * sf_chain)


def _binding(hs_latency: float, hs_rate: float, sf_latency: float) -> tuple[float, str]:
    parts = {"HubSpot latency": hs_latency, "HubSpot rate": hs_rate, "Salesforce latency": sf_latency}
    name = max(parts, key=lambda k: parts[k])
    return parts[name], name


@dataclass
class SizeResult:
    people: int
    seed_seconds: float
    cycles: dict[str, Cycle] = field(default_factory=dict)
    series: list[Cycle] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # change -> task, seconds
    not_handed_off: int = 0
    changed: int = 0


# --------------------------------------------------------------------------- tables

Table = tuple[list[str], list[list[str]]]
NAMED = ("first", "settle", "idle", "incremental", "echo")


def _per_k(calls: int, items: int) -> str:
    return f"{calls * 1000 / items:.1f}" if items else "-"


def calls_table(results: Sequence[SizeResult]) -> Table:
    head = ["size", "CRM", "cycle", "people", "pull calls", "min", "/1k", "min /1k"]
    head += ["tasks", "task calls", "min", "all calls", "all min"]
    rows = []
    for r in results:
        for name in ("first", "incremental"):
            c = r.cycles[name]
            for crm in CRMS:
                k = c.calls[crm]
                pull = k["people_pull"] + k["people_read"]
                page = (
                    (PAGE["hubspot_search"] if c.incremental else PAGE["hubspot_list"])
                    if crm == "hubspot"
                    else PAGE["sf_query"]
                )
                least = c.min_calls(crm)
                rows.append([
                    f"{r.people:,}", crm, name, f"{c.pulled(crm):,}", str(pull), str(least["people_pull"]),
                    _per_k(pull, c.pulled(crm)), f"{1000 / page:.1f}", f"{c.tasks(crm):,}", str(k["task_write"]),
                    str(least["task_write"]), str(c.total(crm)), str(sum(least.values()) + k["other"]),
                ])  # fmt: skip
    return head, rows


def activity_table(results: Sequence[SizeResult]) -> Table:
    head = ["size", "cycle", "events window h", "events in window", "per-type pages", "unfiltered pages"]
    head += ["email clicks", "email pages", "engagement calls", "activity min", "activity made"]
    rows = []
    for r in results:
        for name in ("first", "idle", "incremental"):
            c = r.cycles[name]
            a = c.activity
            made, engagement = c.hs_activity_made()
            kinds = ", ".join(f"{t.removeprefix('e_')} {n:,}" for t, n in sorted(a.by_type.items()))
            rows.append([
                f"{r.people:,}", name, f"{a.window_s / 3600:.1f}", kinds or "0", str(a.per_type_pages()),
                str(a.unfiltered_pages()), f"{a.clicks:,}", str(a.email_pages()), str(engagement),
                str(c.min_calls("hubspot")["activity"]), str(made + engagement),
            ])  # fmt: skip
    return head, rows


def class_table(results: Sequence[SizeResult]) -> Table:
    classes = ["people_pull", "people_read", "activity", "owners", "task_lookup", "task_write"]
    classes += ["person_create", "person_write", "other", THROTTLED, THROTTLED_SEARCH]
    head = ["size", "cycle", "CRM", "total", *classes, "summary api_calls"]
    rows = []
    for r in results:
        for name, c in r.cycles.items():
            for crm in CRMS:
                k = c.calls[crm]
                rows.append([f"{r.people:,}", name, crm, str(c.total(crm)), *(str(k[x]) for x in classes),
                             str(c.run.summary.get("api_calls", {}).get(crm, "-"))])  # fmt: skip
    return head, rows


def time_table(results: Sequence[SizeResult], latency_s: float) -> Table:
    head = ["size", "cycle", "wall s", "CPU s", "HubSpot calls", "429s", "Salesforce calls"]
    head += ["bound s (calls made)", "ratio", "floor s (min calls)", "ratio", "floor set by"]
    rows = []
    for r in results:
        for name in ("first", "incremental"):
            c = r.cycles[name]
            (made, _), (least, why) = c.bound_made(latency_s), c.floor(latency_s)
            hs = c.calls["hubspot"]
            rows.append([
                f"{r.people:,}", name, f"{c.run.wall:.1f}", f"{c.run.cpu:.1f}", str(c.total("hubspot")),
                str(hs[THROTTLED] + hs[THROTTLED_SEARCH]), str(c.total("salesforce")), f"{made:.1f}",
                f"{c.run.wall / made:.2f}" if made else "-", f"{least:.1f}",
                f"{c.run.wall / least:.2f}" if least else "-", why,
            ])  # fmt: skip
    return head, rows


def _endpoints(counts: Counter[str]) -> str:
    return ", ".join(f"{n} x {ep}" for ep, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def echo_table(results: Sequence[SizeResult]) -> Table:
    """Cycles with nothing changed since the one before: what they read is that cycle's echo."""
    head = ["size", "cycle", "after", "wall s", "HubSpot calls", "Salesforce calls", "above idle (HS/SF)"]
    head += ["people re-pulled (HS/SF)", "writes (HS/SF)", "endpoints"]
    after = {"settle": "first sync", "idle": "settle", "echo": "incremental"}
    rows = []
    for r in results:
        idle = r.cycles["idle"]
        for name in ("settle", "idle", "echo"):
            c = r.cycles[name]
            eps = "; ".join(f"{crm}: {_endpoints(c.endpoints[crm])}" for crm in CRMS)
            above = "/".join(str(c.total(crm) - idle.total(crm)) for crm in CRMS)
            rows.append([
                f"{r.people:,}", name, after[name], f"{c.run.wall:.1f}", str(c.total("hubspot")),
                str(c.total("salesforce")), above, f"{c.pulled('hubspot')}/{c.pulled('salesforce')}",
                f"{c.writes('hubspot')}/{c.writes('salesforce')}", eps,
            ])  # fmt: skip
    return head, rows


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def latency_table(results: Sequence[SizeResult], interval: float) -> Table:
    head = ["size", "cycles", "handoffs", "not handed off", "p50 s", "p95 s", "max s", "mean s"]
    head += ["model: interval/2 + cycle s", "cycle wall s (median)"]
    rows = []
    for r in results:
        lat = r.latencies
        walls = sorted(c.run.wall for c in r.series)
        mid = walls[len(walls) // 2] if walls else 0.0
        stats = [f"{percentile(lat, q):.1f}" for q in (50, 95, 100)] if lat else ["-"] * 3
        mean = f"{sum(lat) / len(lat):.1f}" if lat else "-"
        rows.append([f"{r.people:,}", str(len(r.series)), str(len(lat)), str(r.not_handed_off), *stats, mean,
                     f"{interval / 2 + mid:.1f}", f"{mid:.1f}"])  # fmt: skip
    return head, rows


def series_table(results: Sequence[SizeResult]) -> Table:
    """Calls per cycle over the latency series (changes at random moments, echo included)."""
    head = ["size", "cycles", "HubSpot calls min/median/max", "Salesforce calls min/median/max"]
    head += ["429s", "wall s min/median/max", "peak MB"]
    rows = []
    for r in results:
        if not r.series:
            continue

        def spread(values: list[float], fmt: str = "{:.0f}") -> str:
            v = sorted(values)
            return "/".join(fmt.format(x) for x in (v[0], v[len(v) // 2], v[-1]))

        throttled = sum(
            c.calls["hubspot"][THROTTLED] + c.calls["hubspot"][THROTTLED_SEARCH] for c in r.series
        )
        rows.append([
            f"{r.people:,}", str(len(r.series)), spread([c.total("hubspot") for c in r.series]),
            spread([c.total("salesforce") for c in r.series]), str(throttled),
            spread([c.run.wall for c in r.series], "{:.1f}"), f"{max(c.run.max_rss_mb for c in r.series):.0f}",
        ])  # fmt: skip
    return head, rows


def memory_table(results: Sequence[SizeResult]) -> Table:
    head = ["size", *(f"{n} MB" for n in NAMED), "series max MB", "peak MB", "peak vs previous size"]
    rows, prev = [], None
    for r in results:
        rss = [r.cycles[n].run.max_rss_mb for n in NAMED]
        series = max((c.run.max_rss_mb for c in r.series), default=0.0)
        peak = max(*rss, series)
        ratio = f"{peak / prev:.2f}x" if prev else "-"
        rows.append([f"{r.people:,}", *(f"{x:.0f}" for x in rss), f"{series:.0f}", f"{peak:.0f}", ratio])
        prev = peak
    return head, rows


def core_table(core: CoreTimes) -> Table:
    head = ["stage", f"CPU s for {core.people:,}", "CPU s per 100k"]
    parts = [
        ("stage mapping (mappings.lifecycle)", core.stages),
        ("merge + resolve (sync.profiles)", core.merge_resolve),
        ("qualification (sync.qualify)", core.qualify),
        (f"routing (sync.routing, {core.qualified:,} candidates)", core.routing),
        ("total", core.total),
    ]
    return head, [[n, f"{s:.2f}", f"{core.per_100k(s):.2f}"] for n, s in parts]


def text(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    line = "  ".join
    out = [line(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    out.append(line("-" * w for w in widths))
    out += [
        line(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    ]
    return "\n".join(out)


def markdown(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out)


def machine() -> str:
    """One line: date, CPUs, memory, Python, OS, commit."""
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        mem = "RAM unknown"
    commit = os.environ.get("BENCH_COMMIT", "")
    try:
        commit = (
            commit
            or subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
            ).stdout.strip()
        )
        dirty = subprocess.run(
            ["git", "diff", "--name-only", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.split()
        if dirty and not os.environ.get("BENCH_COMMIT"):
            commit += f" plus uncommitted changes to {', '.join(dirty)}"
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    load = "/".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {os.cpu_count()} CPUs (nproc) · {mem} · "
        f"Python {sys.version.split()[0]} · {platform.system()} {platform.release()} · commit {commit} · "
        f"load average (1/5/15 min) {load} at the end of the run"
    )
