"""Sandboxes that count calls by what they are for (pull, write, lookup) and 429s.

HubSpot's endpoint says what a call is for. For Salesforce the SOQL's ``FROM`` does:
each query is classified, and its ``nextRecordsUrl`` locator remembers the class so
``queryMore`` pages count with the query that opened them.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from werkzeug.wrappers import Request, Response

from connectors.hubspot.sandbox import HubSpotSandbox
from connectors.hubspot.sandbox.app import RateLimiter
from connectors.hubspot.sandbox.store import parse_time
from connectors.salesforce.sandbox import SalesforceSandbox

#: Call classes, in table order.
CLASSES = (
    "people_pull",
    "people_read",
    "activity",
    "owners",
    "task_lookup",
    "task_write",
    "person_create",
    "person_write",
    "other",
)
THROTTLED = "429"
THROTTLED_SEARCH = "429:search"
_NEXT = re.compile(rb'"nextRecordsUrl":\s*"[^"]*/query(?:All)?/([^"]+)"')
_FROM = re.compile(r"\bFROM\s+(\w+)", re.IGNORECASE)

_HS_RULES: tuple[tuple[str, str], ...] = (
    (r"GET /crm/v3/owners", "owners"),
    (r"GET /crm/v3/objects/contacts$", "people_pull"),
    (r"POST /crm/v3/objects/contacts/search", "people_pull"),
    (r"POST /crm/v3/objects/contacts/batch/read", "people_read"),
    (r"POST /crm/v3/objects/contacts/batch/update", "person_write"),
    (r"POST /crm/v3/objects/contacts/batch/upsert", "person_create"),
    (r"POST /crm/v3/objects/tasks/search", "task_lookup"),
    (r"POST /crm/v3/objects/tasks/batch/create", "task_write"),
    (r"GET /events/|GET /email/|/objects/(meetings|calls)/search|/crm/v4/associations/", "activity"),
)


def hubspot_class(method: str, path: str) -> str:
    """What a HubSpot call is for, from its method and path."""
    line = f"{method} {path.rstrip('/')}"
    return next((cls for pattern, cls in _HS_RULES if re.search(pattern, line)), "other")


def soql_class(soql: str) -> str:
    """What a Salesforce query is for, from its FROM and WHERE."""
    match = _FROM.search(soql)
    obj = match.group(1).lower() if match else ""
    by_id = re.search(r"\bWHERE\s+Id\s+IN\b", soql, re.IGNORECASE) is not None
    if obj in ("lead", "contact"):
        return "people_read" if by_id else "people_pull"
    if obj == "opportunity":
        return "people_read" if by_id else "people_pull"
    if obj == "user":
        return "owners"
    if obj == "task" and "Handoff_Key__c IN" in soql:
        return "task_lookup"
    if obj in ("task", "event", "campaignmember", "campaign"):
        return "activity"
    return "other"


def composite_class(body: str) -> str:
    """A Composite request of prefetched first pages: a people pull when it carries the
    Lead/Contact queries (or their getDeleted), activity when it carries Task/Event ones."""
    text = unquote_plus(body)
    if re.search(r"FROM (Lead|Contact)\b|/sobjects/(Lead|Contact)/deleted", text):
        return "people_pull"
    if re.search(r"FROM (Task|Event|CampaignMember)\b", text):
        return "activity"
    return "other"


def salesforce_write_class(path: str) -> str:
    """What a Salesforce Collections write is for."""
    if "/composite/sobjects/Task/" in path:
        return "task_write"
    if "/composite/sobjects/Lead/" in path or "/composite/sobjects/Contact/" in path:
        return "person_create"
    if path.rstrip("/").endswith("/composite/sobjects"):
        return "person_write"
    return "other"


class _Tally:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def add(self, cls: str, throttled: bool, search: bool = False) -> None:
        """Count an admitted call under its class (and ``search:`` class); a 429 only as a 429."""
        with self.lock:
            if throttled:
                self.counts[THROTTLED_SEARCH if search else THROTTLED] += 1
                return
            self.counts[cls] += 1
            if search:
                self.counts[f"search:{cls}"] += 1

    def snapshot(self) -> Counter[str]:
        with self.lock:
            return Counter(self.counts)


def hubspot_chain(method: str, path: str, args: Mapping[str, str]) -> str | None:
    """The cursor-paged read a HubSpot call belongs to (its pages come one after another),
    or None for a call that needs no earlier answer (batches, lookups, writes)."""
    line = f"{method} {path.rstrip('/')}"
    if re.search(r"GET /events/", line):
        return f"events:{args.get('eventType') or '*'}"
    if line.endswith("/email/public/v1/events"):
        return f"email:{args.get('eventType') or '*'}"
    if re.search(r"GET /crm/v3/objects/contacts$", line):
        return "contacts:archived" if args.get("archived") == "true" else "contacts:list"
    if re.search(r"POST /crm/v3/objects/contacts/search$", line):
        return "contacts:search"
    return None


@dataclass
class ActivityWindow:
    """The earliest occurrence time (ms) each activity read of a cycle asked for."""

    events_after: int | None = None
    email_after: int | None = None

    def note(self, chain: str, args: Mapping[str, str]) -> None:
        raw = args.get("occurredAfter") if chain.startswith("events") else args.get("startTimestamp")
        ms = parse_time(raw) if raw else None
        if ms is None:
            return
        if chain.startswith("events"):
            self.events_after = ms if self.events_after is None else min(self.events_after, ms)
        else:
            self.email_after = ms if self.email_after is None else min(self.email_after, ms)


class MeteredHubSpot(HubSpotSandbox):
    """HubSpotSandbox counting calls by class, 429 answers, cursor chains and the activity
    windows asked for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tally = _Tally()
        self.chains: Counter[str] = Counter()
        self.window = ActivityWindow()
        self._limits: tuple[int, int, int, int] = (
            kwargs.get("rate_limit_max", 190),
            kwargs.get("interval_ms", 10_000),
            kwargs.get("daily_limit", 1_000_000),
            kwargs.get("search_per_second", 5),
        )

    def dispatch(self, request: Request) -> Response:
        response = super().dispatch(request)
        if not request.path.startswith("/__sandbox/"):
            search = request.path.rstrip("/").endswith("/search")
            throttled = response.status_code == 429
            self.tally.add(hubspot_class(request.method, request.path), throttled, search)
            chain = hubspot_chain(request.method, request.path, request.args)
            if chain is not None and not throttled:
                with self._lock:
                    self.chains[chain] += 1
                    if chain.startswith(("events", "email")):
                        self.window.note(chain, request.args)
        return response

    def take_chains(self) -> tuple[Counter[str], ActivityWindow]:
        """The chains and activity window since the last call, and start afresh."""
        with self._lock:
            out = self.chains, self.window
            self.chains, self.window = Counter(), ActivityWindow()
        return out

    def new_window(self) -> None:
        """Forget the rolling windows, as a schedule interval (300 s) between cycles would."""
        self.limiter = RateLimiter(*self._limits)


class MeteredSalesforce(SalesforceSandbox):
    """SalesforceSandbox counting calls by class (queries by their FROM)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tally = _Tally()
        self._cursor_class: dict[str, str] = {}

    def _dispatch(self, request: Request) -> Response:
        response = super()._dispatch(request)
        path = request.path
        if "/services/data/" not in path:
            return response
        cls = "other"
        if re.search(r"/query(All)?/?$", path):
            cls = soql_class(request.args.get("q", ""))
        elif m := re.search(r"/query(?:All)?/([^/]+)$", path):
            cls = self._cursor_class.get(m.group(1).rpartition("-")[0], "other")
        elif request.method in ("PATCH", "POST") and "/composite/sobjects" in path:
            cls = salesforce_write_class(path)
        elif request.method == "POST" and path.rstrip("/").endswith("/composite"):
            cls = composite_class(request.get_data(as_text=True))
        if "/query" in path and response.status_code == 200:
            found = _NEXT.search(response.get_data()[-400:])
            if found:
                self._cursor_class[found.group(1).decode().rpartition("-")[0]] = cls
        self.tally.add(cls, response.status_code in (429, 503))
        return response
