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

HS_RATE, HS_SEARCH_RATE = 19.0, 5.0  # 190 per 10 s; search 5 per second
PAGE = {
    "hubspot_list": 100,
    "hubspot_search": 200,
    "hubspot_batch": 100,
    "sf_query": 2000,
    "sf_collection": 200,
}
CRMS = ("hubspot", "salesforce")
REPLACED = ("people_pull", "people_read", "task_lookup", "task_write", "person_write", "person_create")


@dataclass
class Cycle:
    """One measured CLI cycle: the run plus what each sandbox saw (by class and endpoint)."""

    name: str
    run: ChildRun
    calls: dict[str, Counter[str]]  # crm -> class counts (plus search:/429 keys)
    endpoints: dict[str, Counter[str]]  # crm -> sandbox endpoint counts

    def total(self, crm: str) -> int:
        return sum(self.endpoints[crm].values())

    def pulled(self, crm: str) -> int:
        return int(self.run.summary.get("people_pulled", {}).get(crm, 0))

    def tasks(self, crm: str) -> int:
        s = self.run.summary
        return int(s.get("tasks_created", {}).get(crm, 0)) + int(
            s.get("tasks_already_existed", {}).get(crm, 0)
        )

    def min_calls(self, crm: str, incremental: bool) -> dict[str, int]:
        """Fewest calls the endpoints allow for this cycle's people, tasks and updates."""
        s = self.run.summary
        updated = int(s.get("people_updated", {}).get(crm, 0))
        created = int(s.get("people_created", {}).get(crm, 0))
        if crm == "hubspot":
            page = PAGE["hubspot_search"] if incremental else PAGE["hubspot_list"]
            return {
                "people_pull": max(1, math.ceil(self.pulled(crm) / page)),
                "task_write": math.ceil(self.tasks(crm) / PAGE["hubspot_batch"]),
                "person_write": math.ceil(updated / PAGE["hubspot_batch"]),
                "person_create": math.ceil(created / PAGE["hubspot_batch"]),
            }
        return {
            "people_pull": max(2, math.ceil(self.pulled(crm) / PAGE["sf_query"])),  # Lead and Contact
            "task_write": math.ceil(self.tasks(crm) / PAGE["sf_collection"]),
            "person_write": math.ceil(updated / PAGE["sf_collection"]),
            "person_create": math.ceil(created / PAGE["sf_collection"]),
        }

    def bound(self, latency_ms: float, incremental: bool, minimal: bool) -> float:
        """Seconds the limits impose: HubSpot by its rates, Salesforce by latency (sequential).

        Counts admitted calls only (429s are waste, not need). ``minimal``: people pulls and
        writes at their minimum, task lookups dropped, activity and owner calls as made
        (their endpoints already use full pages).
        """
        hs, sf = self.calls["hubspot"], self.calls["salesforce"]
        search = {c: hs[f"search:{c}"] for c in CLASSES}
        general = {c: hs[c] - search[c] for c in CLASSES}
        sf_need = {c: sf[c] for c in CLASSES}
        if minimal:
            for counts in (search, general, sf_need):
                for c in REPLACED:
                    counts[c] = 0
            hs_min, sf_min = self.min_calls("hubspot", incremental), self.min_calls("salesforce", incremental)
            (search if incremental else general)["people_pull"] = hs_min.pop("people_pull")
            general.update(hs_min)
            sf_need.update(sf_min)
        hs_bound = max(sum(general.values()) / HS_RATE, sum(search.values()) / HS_SEARCH_RATE)
        return max(hs_bound, sum(sf_need.values()) * latency_ms / 1000)


@dataclass
class SizeResult:
    people: int
    seed_seconds: float
    cycles: dict[str, Cycle] = field(default_factory=dict)
    probe_latency: float | None = None
    changed: int = 0


# --------------------------------------------------------------------------- tables


def _per_k(calls: int, items: int) -> str:
    return f"{calls * 1000 / items:.1f}" if items else "-"


def calls_table(results: Sequence[SizeResult]) -> tuple[list[str], list[list[str]]]:
    head = ["size", "CRM", "cycle", "people", "pull calls", "min", "/1k", "min /1k"]
    head += ["tasks", "task calls", "min", "/1k", "min /1k"]
    rows = []
    for r in results:
        for name, incremental in (("first", False), ("incremental", True)):
            c = r.cycles[name]
            for crm in CRMS:
                k = c.calls[crm]
                pull = k["people_pull"] + k["people_read"]
                page = (
                    (PAGE["hubspot_search"] if incremental else PAGE["hubspot_list"])
                    if crm == "hubspot"
                    else PAGE["sf_query"]
                )
                batch = PAGE["hubspot_batch"] if crm == "hubspot" else PAGE["sf_collection"]
                least = c.min_calls(crm, incremental)
                rows.append([
                    f"{r.people:,}", crm, name, f"{c.pulled(crm):,}", str(pull), str(least["people_pull"]),
                    _per_k(pull, c.pulled(crm)), f"{1000 / page:.1f}", f"{c.tasks(crm):,}", str(k["task_write"]),
                    str(least["task_write"]), _per_k(k["task_write"], c.tasks(crm)), f"{1000 / batch:.1f}",
                ])  # fmt: skip
    return head, rows


def class_table(results: Sequence[SizeResult]) -> tuple[list[str], list[list[str]]]:
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


def time_table(results: Sequence[SizeResult], latency_ms: float) -> tuple[list[str], list[list[str]]]:
    head = ["size", "cycle", "wall s", "CPU s", "HubSpot calls", "429s", "Salesforce calls"]
    head += ["bound s (calls made)", "ratio", "bound s (min calls)", "ratio"]
    rows = []
    for r in results:
        for name in ("first", "incremental"):
            c = r.cycles[name]
            inc = name == "incremental"
            made, least = c.bound(latency_ms, inc, False), c.bound(latency_ms, inc, True)
            hs = c.calls["hubspot"]
            rows.append([
                f"{r.people:,}", name, f"{c.run.wall:.1f}", f"{c.run.cpu:.1f}", str(c.total("hubspot")),
                str(hs[THROTTLED] + hs[THROTTLED_SEARCH]), str(c.total("salesforce")), f"{made:.1f}",
                f"{c.run.wall / made:.2f}" if made else "-", f"{least:.1f}", f"{c.run.wall / least:.2f}" if least else "-",
            ])  # fmt: skip
    return head, rows


def _endpoints(counts: Counter[str]) -> str:
    return ", ".join(f"{n} x {ep}" for ep, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def idle_table(results: Sequence[SizeResult]) -> tuple[list[str], list[list[str]]]:
    head = [
        "size",
        "cycle",
        "wall s",
        "HubSpot calls",
        "Salesforce calls",
        "people re-pulled (HS/SF)",
        "endpoints",
    ]
    rows = []
    for r in results:
        for name in ("settle", "idle"):
            c = r.cycles[name]
            eps = "; ".join(f"{crm}: {_endpoints(c.endpoints[crm])}" for crm in CRMS)
            rows.append([f"{r.people:,}", name, f"{c.run.wall:.1f}", str(c.total("hubspot")),
                         str(c.total("salesforce")), f"{c.pulled('hubspot')}/{c.pulled('salesforce')}", eps])  # fmt: skip
    return head, rows


def latency_table(results: Sequence[SizeResult], interval: float) -> tuple[list[str], list[list[str]]]:
    head = ["size", "incremental cycle s", "modelled average s", "modelled worst s", "measured change→task s"]
    rows = []
    for r in results:
        wall = r.cycles["incremental"].run.wall
        probe = f"{r.probe_latency:.1f}" if r.probe_latency is not None else "task not found"
        rows.append(
            [f"{r.people:,}", f"{wall:.1f}", f"{interval / 2 + wall:.1f}", f"{interval + wall:.1f}", probe]
        )
    return head, rows


def memory_table(results: Sequence[SizeResult]) -> tuple[list[str], list[list[str]]]:
    head = [
        "size",
        "first sync MB",
        "settle MB",
        "idle MB",
        "incremental MB",
        "peak MB",
        "peak vs previous size",
    ]
    rows, prev = [], None
    for r in results:
        rss = [r.cycles[n].run.max_rss_mb for n in ("first", "settle", "idle", "incremental")]
        peak = max(rss)
        ratio = f"{peak / prev:.2f}x" if prev else "-"
        rows.append([f"{r.people:,}", *(f"{x:.0f}" for x in rss), f"{peak:.0f}", ratio])
        prev = peak
    return head, rows


def core_table(core: CoreTimes) -> tuple[list[str], list[list[str]]]:
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
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {os.cpu_count()} CPUs (nproc) · {mem} · "
        f"Python {sys.version.split()[0]} · {platform.system()} {platform.release()} · commit {commit}"
    )
