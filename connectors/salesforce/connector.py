"""Salesforce connector on ``simple-salesforce``.

Pulls Leads and Contacts by ``SystemModstamp`` (``>=`` with the engine's lookback), each
with its opportunity's stage (a lead's converted Opportunity, a contact's through its
contact roles), the contacts whose opportunities moved, active Users, and activity (calls
logged as Tasks, Events, CampaignMembers); writes handoff Tasks by sObject Collections
external-ID upsert on ``Handoff_Key__c`` (200 a call: a retry or rerun can never create
a second task) and person fields by Collections update. Every SOQL statement is built
with ``format_soql``. See BEHAVIOR.md beside this file.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote_plus, urlencode

import requests
import structlog
from more_itertools import chunked
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceError
from simple_salesforce.format import format_soql

from connectors.base import ANY_TYPE, OpenWork
from connectors.retry import RetryPolicy
from connectors.retry import call as call_with_retries
from connectors.salesforce.auth import SalesforceAuth, SalesforceAuthSettings
from connectors.salesforce.errors import classify, record_error
from connectors.salesforce.transport import MeteredSession
from crm_handoff.clock import utc_now
from crm_handoff.errors import AuthError, CrmError, HandoffError, QuotaExhausted, RetriableCrmError
from crm_handoff.records import (
    HANDOFF_STATUSES,
    Activity,
    Crm,
    Owner,
    PeoplePage,
    Person,
    PersonCreate,
    PersonUpdate,
    TaskChanges,
    TaskClose,
    TaskRequest,
    TaskState,
    Touch,
    WriteResult,
)

log = structlog.get_logger("handoff.salesforce")
T = TypeVar("T")

COLLECTION = 200  # sObject Collections maximum per call
BULK_PAGE = 50_000  # records per Bulk API 2.0 results page
BULK_SLICE = 2_000  # records per page yielded from a bulk results page
COMPOSITE_QUERIES = 5  # a Composite request may carry 5 queries (one API call)
DELETED_WINDOW = timedelta(days=15) - timedelta(minutes=5)  # getDeleted keeps 15 days
ID_CHUNK = 200  # ids per "Id IN (...)" query, well inside URL limits
AGGREGATE_ROWS = 2000  # rows of an aggregate (GROUP BY) query: one page, no query locator
#: ``Person.values`` key: when the person's opportunity entered its stage (Opportunity
#: ``LastStageChangeDate``, else its ``CreatedDate``), ISO 8601. Read by mappings.lifecycle.
OPPORTUNITY_STAGE_AT = "Opportunity.LastStageChangeDate"
#: What decides a person's opportunity stage, read with the lead or the contact role.
OUTCOME_FIELDS = ("StageName", "IsWon", "IsClosed", "LastStageChangeDate", "CreatedDate")
CONVERTED = "ConvertedOpportunity"  # Lead's relationship to the opportunity it converted to

HANDOFF_FIELDS = {
    "status": "Handoff_Status__c",
    "reason": "Handoff_Reason__c",
    "score": "Handoff_Score__c",
    "rep": "Handoff_Rep__c",
    "link": "HubSpot_Contact_Id__c",
    "task_key": "Handoff_Key__c",
}

LEAD_FIELDS = [
    "Id",
    "FirstName",
    "LastName",
    "Email",
    "Title",
    "Company",
    "Industry",
    "NumberOfEmployees",
    "Country",
    "Phone",
    "Status",
    "OwnerId",
    "IsConverted",
    "ConvertedContactId",
    "ConvertedOpportunityId",
    "IsDeleted",
    "SystemModstamp",
    "HubSpot_Contact_Id__c",
    "Handoff_Status__c",
    *(f"{CONVERTED}.{f}" for f in OUTCOME_FIELDS),
]
CONTACT_FIELDS = [
    "Id",
    "FirstName",
    "LastName",
    "Email",
    "Title",
    "MailingCountry",
    "Phone",
    "OwnerId",
    "IsDeleted",
    "SystemModstamp",
    "HubSpot_Contact_Id__c",
    "Handoff_Status__c",
]
NUMERIC_FIELDS = {"NumberOfEmployees", "Handoff_Score__c", "AnnualRevenue"}
#: describe() types whose values are cut to the field's length before a write. Not email
#: (a cut address is someone else's), ids, references, picklists or external-ID fields.
CUT_TYPES = frozenset({"string", "textarea", "phone", "url", "combobox", "encryptedstring"})
CAMPAIGN_KINDS = {"Webinar": "webinar_attended", "Content": "content_download"}
PRIORITY = {"high": "High", "normal": "Normal", "low": "Low"}


@dataclass(frozen=True)
class SalesforceSettings:
    auth: SalesforceAuthSettings = field(default_factory=SalesforceAuthSettings)
    api_version: str = "62.0"
    timeout: float = 60.0
    window_lag: float = 2.0  # pull windows end this far behind now (in-flight transactions)
    max_attempts: int = 5
    max_wait: float = 30.0
    bulk_threshold: int = 10_000  # a first sync of more records than this uses Bulk API 2.0
    budget_run_percent: float = 25.0  # share of the daily allocation one run may spend
    budget_total_percent: float = 80.0  # never push the org's usage past this share

    @property
    def ca_bundle(self) -> str | None:
        return self.auth.ca_bundle


def parse_time(value: Any) -> datetime | None:
    """Salesforce datetimes: ``2026-11-20T10:15:30.000+0000``."""
    if not value:
        return None
    text = str(value).replace("Z", "+00:00")
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _deleted_start(since: datetime, upper: datetime, now: datetime) -> datetime:
    """getDeleted's start: at most 15 days back, and at least 2 minutes before the end
    (the API works in whole minutes; seeing a delete twice is harmless)."""
    return min(max(since, now - DELETED_WINDOW), upper - timedelta(minutes=2)).replace(microsecond=0)


def _from_csv(row: dict[str, str]) -> dict[str, Any]:
    """A Bulk API CSV row as the REST API would give it (nulls, booleans)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        out[key] = None if value == "" else {"true": True, "false": False}.get(value, value)
    return out


def _ceil_second(at: datetime) -> str:
    """SOQL datetime literals have whole seconds: round the window's end up, never down
    (the end is already ``window_lag`` behind now, past transactions in flight)."""
    whole = at.replace(microsecond=0)
    return (whole + timedelta(seconds=1) if at.microsecond else whole).isoformat()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class SalesforceConnector:
    """The Salesforce side of crm-handoff."""

    name: Crm = "salesforce"
    handoff_fields: Mapping[str, str] = HANDOFF_FIELDS
    task_page: int = COLLECTION  # tasks written per call
    stamp_fields: frozenset[str] = frozenset({"SystemModstamp", "LastModifiedDate", "LastModifiedById"})
    owner_field: str = "OwnerId"
    activity_in_background: bool = False  # a few SOQL queries
    activity_late: timedelta | None = None  # activity is read by its modification stamp

    def __init__(
        self,
        settings: SalesforceSettings,
        lead_fields: Sequence[str] = (),
        contact_fields: Sequence[str] = (),
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.rate_limit_waited = 0.0  # seconds of back-off on REQUEST_LIMIT_EXCEEDED and 429s
        self.clock = clock  # pull windows end at this clock's "now" (shifted by ``sync --as-of``)
        self.session = MeteredSession(settings.timeout, settings.ca_bundle or True)
        self.calls = self.session.calls
        self.auth = SalesforceAuth(settings.auth, self.session)
        token, instance_url = self.auth.login()
        self.sf = Salesforce(
            instance_url=instance_url,
            session_id=token,
            version=settings.api_version,
            session=self.session,
        )
        self._used_at_start: int | None = None
        self._prefetched: dict[str, dict[str, Any]] = {}
        self._prefetch_groups: dict[str, list[str]] = {}
        self._described: dict[str, dict[str, Any]] = {}
        self._lengths: dict[str, dict[str, int]] = {}
        self.lead_fields = sorted(set(LEAD_FIELDS) | set(lead_fields))
        self.contact_fields = sorted(set(CONTACT_FIELDS) | set(contact_fields))

    # --- plumbing -------------------------------------------------------------
    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One API call: within budget, retried on transient failures, re-authenticated once."""
        self._check_budget()
        try:
            return self._retrying(fn, *args, **kwargs)
        except AuthError as exc:
            if exc.status != 401 or not self.auth.can_refresh:
                raise
            token, _ = self.auth.refresh(stale_token=self.sf.session_id)
            self.sf.session_id = token
            self.sf.headers["Authorization"] = f"Bearer {token}"
            log.info("salesforce_reauthenticated")
            return self._retrying(fn, *args, **kwargs)

    def _check_budget(self) -> None:
        """Stop (QuotaExhausted) before this run or the org passes its share of the allocation."""
        used, total = self.session.api_used, self.session.api_max
        if used is None or not total:
            return
        if self._used_at_start is None:
            self._used_at_start = used
        s = self.settings
        if used >= total * s.budget_total_percent / 100:
            raise QuotaExhausted(
                "salesforce",
                f"the org has used {used} of {total} daily API calls (limit {s.budget_total_percent:g}%)",
            )
        spent = used - self._used_at_start
        if spent >= total * s.budget_run_percent / 100:
            raise QuotaExhausted(
                "salesforce",
                f"this run used {spent} API calls, its share of the daily {total} ({s.budget_run_percent:g}%)",
            )

    def _retrying(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn`` by the shared retry policy (connectors/retry.py)."""
        policy = RetryPolicy(attempts=self.settings.max_attempts, max_wait=self.settings.max_wait)
        return call_with_retries(lambda: fn(*args, **kwargs), policy, _classify, self._note_wait)

    def _note_wait(self, error: BaseException, seconds: float) -> None:
        if getattr(error, "status", None) == 429:
            self.rate_limit_waited += seconds

    def _query_url(self, soql: str, include_deleted: bool = False) -> str:
        resource = "queryAll" if include_deleted else "query"
        return f"/services/data/v{self.settings.api_version}/{resource}/?q={quote_plus(soql)}"

    def _first_page(self, soql: str, include_deleted: bool = False) -> dict[str, Any]:
        cached = self._prefetched.pop(self._query_url(soql, include_deleted), None)
        if cached is not None:
            return cached
        return self._call(self.sf.query, soql, include_deleted=include_deleted)

    def _prefetch(self, group: str, urls: Sequence[str]) -> None:
        """First pages of several GETs in Composite requests: one API call per 5 of them.

        Composite answers HTTP 200 with each subrequest's own status and body. A subrequest
        that failed is logged and not cached: the ordinary call made when its phase comes
        goes through the usual retries and error classification (and raises, the pass left
        resumable, if it keeps failing), so its records are never skipped; the others'
        pages are used as they came. What an earlier pass of ``group`` left unread is
        dropped first (never served to a later pass).
        """
        for url in self._prefetch_groups.pop(group, []):
            self._prefetched.pop(url, None)
        self._prefetch_groups[group] = list(urls)
        for part in chunked(urls, COMPOSITE_QUERIES):
            refs = {f"r{i}": u for i, u in enumerate(part)}
            body = {
                "allOrNone": False,
                "compositeRequest": [{"method": "GET", "url": u, "referenceId": r} for r, u in refs.items()],
            }
            res = self._call(self.sf.restful, "composite", method="POST", json=body) or {}
            for sub in res.get("compositeResponse") or []:
                target = refs.get(str(sub.get("referenceId")))
                if target is None:
                    continue
                if sub.get("httpStatusCode") == 200 and isinstance(sub.get("body"), dict):
                    self._prefetched[target] = sub["body"]
                else:
                    log.warning(
                        "salesforce_subrequest_failed",
                        resource=target.partition("?")[0],
                        status=sub.get("httpStatusCode"),
                        code=_error_code(sub.get("body")),
                        then="retried on its own",
                    )

    def query(self, soql: str, include_deleted: bool = False) -> Iterator[dict[str, Any]]:
        """All records of a query, page by page (each page one retried call)."""
        page = self._first_page(soql, include_deleted)
        while True:
            yield from page.get("records", [])
            if page.get("done", True) or not page.get("nextRecordsUrl"):
                return
            page = self._call(self.sf.query_more, page["nextRecordsUrl"], identifier_is_url=True)

    def _query_all(self, group: str, statements: Sequence[str]) -> Iterator[dict[str, Any]]:
        """Every record of several queries; their first pages travel in Composite requests
        (one API call per 5 statements, ``_prefetch``)."""
        if len(statements) > 1:
            self._prefetch(group, [self._query_url(soql) for soql in statements])
        for soql in statements:
            yield from self.query(soql)

    def _people(self, records: Sequence[dict[str, Any]], object_type: str) -> list[Person]:
        """Records as people, each with its opportunity's stage: a lead's from the
        opportunity it converted to (read with the lead), a contact's from its contact
        roles (``_role_outcomes``: a query per 200 contacts, 5 of them a call)."""
        if object_type == "lead":
            return [
                self._person(r, "lead", _outcome(_related(r, CONVERTED), r.get("ConvertedOpportunityId")))
                for r in records
            ]
        outcomes = self._role_outcomes([r["Id"] for r in records])
        return [self._person(r, "contact", outcomes.get(r["Id"])) for r in records]

    def _role_outcomes(self, contact_ids: Sequence[str]) -> dict[str, _Outcome]:
        """Contact id -> the opportunity that decides its stage, through its contact roles
        (``OpportunityContactRole``; a lead's conversion makes the contact its primary role)."""
        fields = ", ".join(["ContactId", "OpportunityId", *(f"Opportunity.{f}" for f in OUTCOME_FIELDS)])
        statements = [
            format_soql(f"SELECT {fields} FROM OpportunityContactRole WHERE ContactId IN {{}}", list(part))
            for part in chunked(sorted(set(contact_ids)), ID_CHUNK)
        ]
        best: dict[str, _Outcome] = {}
        for r in self._query_all("roles", statements):
            found = _outcome(_related(r, "Opportunity"), r.get("OpportunityId"))
            contact = r.get("ContactId")
            if found and contact and (contact not in best or found.rank > best[contact].rank):
                best[contact] = found
        return best

    def _person(self, rec: dict[str, Any], object_type: str, outcome: _Outcome | None = None) -> Person:
        values = {
            k: _text(v) for k, v in rec.items() if k != "attributes" and k.partition(".")[0] != CONVERTED
        }
        if outcome is not None and outcome.at is not None:
            values[OPPORTUNITY_STAGE_AT] = outcome.at.isoformat()
        return Person(
            crm="salesforce",
            id=rec["Id"],
            object_type=object_type,
            email=rec.get("Email") or None,
            values=values,
            modified_at=parse_time(rec.get("SystemModstamp")) or datetime.now(UTC),
            owner_id=rec.get("OwnerId") or None,
            linked_id=rec.get(HANDOFF_FIELDS["link"]) or None,
            deleted=bool(rec.get("IsDeleted")),
            converted_to=rec.get("ConvertedContactId") or None,
            opportunity_stage=outcome.stage if outcome is not None else None,
        )

    # --- reads ----------------------------------------------------------------
    def pull_owners(self) -> list[Owner]:
        soql = "SELECT Id, Email, Name, IsActive FROM User"
        return [
            Owner(
                "salesforce",
                r["Id"],
                (r.get("Email") or "").lower(),
                r.get("Name") or "",
                bool(r.get("IsActive")),
            )
            for r in self.query(soql)
        ]

    def pull_people(
        self, since: datetime | None, resume: Mapping[str, str] | None = None
    ) -> Iterator[PeoplePage]:
        """Leads, then Contacts, then (incremental) the contacts whose opportunities moved or
        whose contact roles changed, then deletes; each REST page a page.

        The window is ``since <= SystemModstamp < upper`` with ``upper`` fixed for the
        whole pass (slightly behind now, so in-flight transactions are not skipped) and
        rows ordered by ``(SystemModstamp, Id)``: the resume token is the last row's pair,
        so thousands of rows sharing one ``SystemModstamp`` never lose or repeat a row.
        """
        state = dict(resume or {})
        upper = state.get("upper") or _ceil_second(self.clock() - timedelta(seconds=self.settings.window_lag))
        phases = ["Lead", "Contact"] + (["Opportunity", "Deleted"] if since is not None else [])
        first = phases.index(state["phase"]) if state.get("phase") in phases else 0
        if since is not None and not state:
            self._prefetch("people", self._pass_urls(since, datetime.fromisoformat(upper)))
        for i, phase in enumerate(phases[first:], start=first):
            after = (state.get("ts"), state.get("id")) if i == first and state.get("ts") else None
            next_phase = phases[i + 1] if i + 1 < len(phases) else None
            if phase == "Deleted":
                assert since is not None
                people, alive = self._deleted(since, datetime.fromisoformat(upper))
                token = {"phase": next_phase, "upper": upper} if next_phase else None
                yield PeoplePage(
                    people, token, datetime.fromisoformat(upper) if token is None else None, alive
                )
                continue
            yield from self._pull_object(phase, since, upper, after, next_phase)

    def _pull_object(
        self,
        obj: str,
        since: datetime | None,
        upper: str,
        after: tuple[Any, Any] | None,
        next_phase: str | None,
    ) -> Iterator[PeoplePage]:
        """One phase's pages: Lead or Contact rows in the window, or (``Opportunity``) the
        contact roles whose opportunity or own row changed in it, as their contacts."""
        fields, object_type = (
            (self.lead_fields, "lead") if obj == "Lead" else (self.contact_fields, "contact")
        )
        if obj == "Opportunity":
            assert since is not None
            soql = self._moved_soql(since, datetime.fromisoformat(upper), after)
        else:
            soql = self._window_soql(obj, fields, since, datetime.fromisoformat(upper), after)
        page = self._first_page(soql, include_deleted=since is not None)
        while True:
            records = page.get("records", [])
            people = (
                self._moved_contacts(records) if obj == "Opportunity" else self._people(records, object_type)
            )
            done = page.get("done", True) or not page.get("nextRecordsUrl")
            if not done and records:
                token: dict[str, str] | None = {
                    "phase": obj,
                    "upper": upper,
                    "ts": records[-1]["SystemModstamp"],
                    "id": records[-1]["Id"],
                }
            else:
                token = {"phase": next_phase, "upper": upper} if next_phase else None
            yield PeoplePage(people, token, datetime.fromisoformat(upper) if token is None else None)
            if done:
                return
            if since is None and int(page.get("totalSize", 0)) > self.settings.bulk_threshold and token:
                yield from self._bulk_rest(obj, fields, object_type, upper, token, next_phase)
                return
            page = self._call(self.sf.query_more, page["nextRecordsUrl"], identifier_is_url=True)

    def _bulk_rest(
        self,
        obj: str,
        fields: Sequence[str],
        object_type: str,
        upper: str,
        token: dict[str, str],
        next_phase: str | None,
    ) -> Iterator[PeoplePage]:
        """The rest of a large first sync through Bulk API 2.0 (a few calls, not one per 2,000).

        Bulk results come in no guaranteed order, so every bulk page carries the resume
        token of the last REST page: an interrupted bulk read starts again from there.
        """
        after = (token["ts"], token["id"])
        soql = self._window_soql(obj, fields, None, datetime.fromisoformat(upper), after)
        log.info("salesforce_bulk_query", object=obj)
        try:
            bulk: Any = self.sf.bulk2  # read now: it captures the current session token
            for text in getattr(bulk, obj).query(soql, max_records=BULK_PAGE, wait=1):
                rows = (_from_csv(row) for row in csv.DictReader(_lines(str(text))))
                for records in chunked(rows, BULK_SLICE):  # pages of a REST page's size: flat memory
                    yield PeoplePage(self._people(records, object_type), token)
        except (requests.RequestException, SalesforceError) as exc:
            raise (
                classify(exc)
                if isinstance(exc, SalesforceError)
                else RetriableCrmError("salesforce", str(exc))
            ) from exc
        done = {"phase": next_phase, "upper": upper} if next_phase else None
        yield PeoplePage([], done, datetime.fromisoformat(upper) if done is None else None)

    @staticmethod
    def _window_soql(
        obj: str,
        fields: Sequence[str],
        since: datetime | None,
        upper: datetime,
        after: tuple[Any, Any] | None,
    ) -> str:
        where = ["SystemModstamp < {upper}"]
        args: dict[str, Any] = {"upper": upper}
        if since is not None:
            where.append("SystemModstamp >= {since}")
            args["since"] = since
        if after is not None:
            where.append("(SystemModstamp > {ts} OR (SystemModstamp = {ts} AND Id > {id}))")
            args["ts"], args["id"] = parse_time(after[0]), after[1]
        select = (
            f"SELECT {', '.join(fields)} FROM {obj} WHERE {' AND '.join(where)} ORDER BY SystemModstamp, Id"
        )
        return format_soql(select, **args)

    @staticmethod
    def _moved_soql(since: datetime, upper: datetime, after: tuple[Any, Any] | None) -> str:
        """Outcomes flow back: the contact roles whose Opportunity changed in the window (a
        stage moved: the Opportunity's ``SystemModstamp``, never the contact's), or that were
        added or removed in it (``queryAll``), ordered as a window is for resuming."""
        window = "SystemModstamp >= {since} AND SystemModstamp < {upper}"
        where = [f"(({window}) OR ({window.replace('SystemModstamp', 'Opportunity.SystemModstamp')}))"]
        args: dict[str, Any] = {"since": since, "upper": upper}
        if after is not None:
            where.append("(SystemModstamp > {ts} OR (SystemModstamp = {ts} AND Id > {id}))")
            args["ts"], args["id"] = parse_time(after[0]), after[1]
        select = (
            "SELECT Id, ContactId, SystemModstamp FROM OpportunityContactRole "
            f"WHERE {' AND '.join(where)} ORDER BY SystemModstamp, Id"
        )
        return format_soql(select, **args)

    def _moved_contacts(self, roles: Sequence[dict[str, Any]]) -> list[Person]:
        """The contacts of these contact roles, read again with their opportunities' stages
        (a query per 200 contacts and per 200 for their roles, 5 of them a call)."""
        ids = sorted({str(r["ContactId"]) for r in roles if r.get("ContactId")})
        fields = ", ".join(self.contact_fields)
        statements = [
            format_soql(f"SELECT {fields} FROM Contact WHERE Id IN {{}}", list(part))
            for part in chunked(ids, ID_CHUNK)
        ]
        return self._people(list(self._query_all("moved", statements)), "contact")

    def _deleted(
        self, since: datetime, upper: datetime
    ) -> tuple[list[Person], dict[str, frozenset[str]] | None]:
        """Hard and soft deletes from the replication API (it keeps 15 days of them).

        When the last pass is older than that window, every live id is read as well
        (a full reconcile): whatever the mirror holds beyond them was deleted.
        """
        start = _deleted_start(since, upper, self.clock())
        alive = None
        if start > since:
            log.warning(
                "salesforce_full_reconcile", since=since.isoformat(), reason="beyond getDeleted's 15 days"
            )
            alive = {
                ot: frozenset(r["Id"] for r in self.query(f"SELECT Id FROM {obj}"))
                for obj, ot in (("Lead", "lead"), ("Contact", "contact"))
            }
        out: list[Person] = []
        for obj, object_type in (("Lead", "lead"), ("Contact", "contact")):
            url = self._deleted_url(obj, start, upper)
            res = self._prefetched.pop(url, None) or self._call(
                self.sf.restful, url.split(f"/v{self.settings.api_version}/", 1)[1]
            )
            for rec in (res or {}).get("deletedRecords", []):
                when = parse_time(rec.get("deletedDate")) or upper
                out.append(Person("salesforce", rec["id"], object_type, None, {}, when, deleted=True))
        return out, alive

    def _deleted_url(self, obj: str, start: datetime, end: datetime) -> str:
        window = urlencode(
            {"start": start.isoformat(timespec="seconds"), "end": end.isoformat(timespec="seconds")}
        )
        return f"/services/data/v{self.settings.api_version}/sobjects/{obj}/deleted/?{window}"

    def _pass_urls(self, since: datetime, upper: datetime) -> list[str]:
        """The first request of every phase of an incremental pass (prefetched together)."""
        start = _deleted_start(since, upper, self.clock())
        return [
            self._query_url(self._window_soql("Lead", self.lead_fields, since, upper, None), True),
            self._query_url(self._window_soql("Contact", self.contact_fields, since, upper, None), True),
            self._query_url(self._moved_soql(since, upper, None), True),
            self._deleted_url("Lead", start, upper),
            self._deleted_url("Contact", start, upper),
        ]

    def activities_for(self, people: Sequence[Person], since: datetime) -> Iterator[Activity]:
        """Salesforce activity is pulled org-wide (``pull_activities``): nothing per person."""
        return iter(())

    def pull_activities(self, since: datetime) -> Iterator[Activity]:
        self._prefetch("activity", [self._query_url(q) for q in self._activity_soql(since)])
        calls, events, members = self._activity_soql(since)
        yield from self._calls_and_meetings(calls, events, since)
        yield from self._campaign_activity(members, since)

    @staticmethod
    def _activity_soql(since: datetime) -> tuple[str, str, str]:
        calls = format_soql(
            "SELECT Id, WhoId, Subject, CreatedDate FROM Task WHERE SystemModstamp >= {} "
            "AND TaskSubtype = 'Call' AND Handoff_Key__c = null",
            since,
        )
        events = format_soql(
            "SELECT Id, WhoId, Subject, StartDateTime FROM Event WHERE SystemModstamp >= {}", since
        )
        members = format_soql(
            "SELECT Id, CampaignId, LeadId, ContactId, Status, FirstRespondedDate, SystemModstamp "
            "FROM CampaignMember WHERE SystemModstamp >= {} AND HasResponded = true",
            since,
        )
        return calls, events, members

    def _calls_and_meetings(self, calls: str, events: str, since: datetime) -> Iterator[Activity]:
        """Calls logged as Tasks and meetings (Events) on a lead or contact."""
        for soql, kind, stamp in ((calls, "call", "CreatedDate"), (events, "meeting", "StartDateTime")):
            for r in self.query(soql):
                if r.get("WhoId"):
                    at = parse_time(r.get(stamp)) or since
                    yield Activity("salesforce", r["Id"], kind, at, r["WhoId"], title=r.get("Subject") or "")

    def _campaign_activity(self, soql: str, since: datetime) -> Iterator[Activity]:
        members = list(self.query(soql))
        campaigns: dict[str, dict[str, Any]] = {}
        for part in chunked(sorted({m["CampaignId"] for m in members}), ID_CHUNK):
            for c in self.query(
                format_soql("SELECT Id, Name, Type FROM Campaign WHERE Id IN {}", list(part))
            ):
                campaigns[c["Id"]] = c
        for m in members:
            camp = campaigns.get(m["CampaignId"], {})
            kind = CAMPAIGN_KINDS.get(camp.get("Type") or "")
            who = m.get("ContactId") or m.get("LeadId")
            if kind and who:
                at = parse_time(m.get("FirstRespondedDate")) or parse_time(m.get("SystemModstamp")) or since
                yield Activity("salesforce", m["Id"], kind, at, who, title=camp.get("Name") or "")

    # --- describe -------------------------------------------------------------
    def describe(self, obj: str) -> dict[str, Any]:
        """``obj``'s describe, read once per connector (install, validate and writes share it)."""
        described = self._described.get(obj)
        if described is None:
            described = self._call(lambda: getattr(self.sf, obj).describe()) or {}
            self._described[obj] = described
        return described

    def forget_describe(self, obj: str) -> None:
        """Read ``obj``'s describe again next time (its fields changed)."""
        self._described.pop(obj, None)
        self._lengths.pop(obj, None)

    def field_lengths(self, obj: str) -> dict[str, int]:
        """Lower-cased field name -> length, for the text fields a write cuts (``CUT_TYPES``)."""
        lengths = self._lengths.get(obj)
        if lengths is None:
            lengths = {
                str(f["name"]).lower(): int(f["length"])
                for f in self.describe(obj).get("fields", [])
                if f.get("type") in CUT_TYPES and int(f.get("length") or 0) > 0 and not f.get("externalId")
            }
            self._lengths[obj] = lengths
        return lengths

    def _fit(self, obj: str, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` with every text value cut to its field's length (Salesforce refuses a
        longer value with ``STRING_TOO_LONG``, failing the whole record)."""
        lengths = self.field_lengths(obj)
        for key, value in list(record.items()):
            limit = lengths.get(key.lower())
            if limit and isinstance(value, str):
                record[key] = _cut(value, limit)
        return record

    # --- writes ---------------------------------------------------------------
    def find_tasks(self, keys: Sequence[str]) -> dict[str, str]:
        key = HANDOFF_FIELDS["task_key"]
        found: dict[str, str] = {}
        for part in chunked(keys, ID_CHUNK):
            for r in self.query(format_soql(f"SELECT Id, {key} FROM Task WHERE {key} IN {{}}", list(part))):
                found[r[key]] = r["Id"]
        return found

    def write_tasks(self, tasks: Sequence[TaskRequest]) -> list[WriteResult]:
        key = HANDOFF_FIELDS["task_key"]
        records = [
            self._fit(
                "Task",
                {
                    "attributes": {"type": "Task"},
                    key: t.key,
                    "Subject": _cut(t.subject, 255),
                    "Description": _cut(t.body, 32000),
                    "OwnerId": t.owner_id,
                    "WhoId": t.person_id,
                    "ActivityDate": t.due.isoformat(),
                    "Status": "Not Started",
                    "Priority": PRIORITY.get(t.priority, "High"),
                },
            )
            for t in tasks
        ]
        return self._collection("PATCH", f"composite/sobjects/Task/{key}", records, [t.key for t in tasks])

    def update_people(self, updates: Sequence[PersonUpdate]) -> list[WriteResult]:
        records = []
        for u in updates:
            obj = "Lead" if u.object_type == "lead" else "Contact"
            records.append(
                self._fit(obj, {"attributes": {"type": obj}, "id": u.person_id, **_typed(u.values)})
            )
        return self._collection("PATCH", "composite/sobjects", records, [u.person_id for u in updates])

    def create_people(self, people: Sequence[PersonCreate]) -> list[WriteResult]:
        """Create Leads idempotently: upsert keyed by the HubSpot contact id."""
        link = HANDOFF_FIELDS["link"]
        records = [
            self._fit("Lead", {"attributes": {"type": "Lead"}, **_typed(p.values), link: p.external_id})
            for p in people
        ]
        return self._collection(
            "PATCH", f"composite/sobjects/Lead/{link}", records, [p.external_id for p in people]
        )

    def _collection(
        self, method: str, path: str, records: list[dict[str, Any]], keys: list[str]
    ) -> list[WriteResult]:
        """sObject Collections write, 200 records a call; one result per record, in order."""
        out: list[WriteResult] = []
        for start in range(0, len(records), COLLECTION):
            part = records[start : start + COLLECTION]
            body = {"allOrNone": False, "records": part}
            results = self._call(self.sf.restful, path, method=method, json=body) or []
            for k, res in zip(keys[start : start + COLLECTION], results, strict=False):
                if res.get("success"):
                    out.append(WriteResult(k, True, res.get("id"), created=res.get("created")))
                else:
                    msg, code = record_error(res.get("errors") or [])
                    out.append(WriteResult(k, False, error=msg, code=code))
        return out

    # --- outcomes (connectors/salesforce/outcomes.py) ---------------------------
    def read_tasks(self, task_ids: Sequence[str]) -> list[TaskState]:
        """Tasks' Status, IsClosed, CompletedDateTime, outcome, owner (queryAll by Id)."""
        from connectors.salesforce import outcomes

        return outcomes.read_tasks(self, task_ids)

    def touches(self, person_ids: Sequence[str], since: datetime) -> Iterator[Touch]:
        """Call/Email Tasks and Events on these leads or contacts since ``since``."""
        from connectors.salesforce import outcomes

        return outcomes.touches(self, person_ids, since)

    def read_people(self, ids: Sequence[str]) -> list[Person]:
        """Leads and contacts by id (``Id IN``, 200 a statement, 5 a Composite call), with
        their opportunity's stage as a pull reads it; an id not found is a deleted person."""
        wanted = list(dict.fromkeys(str(i) for i in ids))
        out: list[Person] = []
        for obj, fields, kind, prefix in (
            ("Lead", self.lead_fields, "lead", "00Q"),
            ("Contact", self.contact_fields, "contact", "003"),
        ):
            mine = [i for i in wanted if i.startswith(prefix)]
            statements = [
                format_soql(f"SELECT {', '.join(fields)} FROM {obj} WHERE Id IN {{}}", list(part))
                for part in chunked(mine, ID_CHUNK)
            ]
            out += self._people(list(self._query_all(f"read_{kind}", statements)), kind)
        have = {p.id[:15] for p in out}
        now = self.clock()
        gone = [i for i in wanted if i[:15] not in have]
        return out + [
            Person("salesforce", i, "lead" if i.startswith("00Q") else "contact", None, {}, now, deleted=True)
            for i in gone
        ]

    def task_changes(self, since: datetime, owner_ids: Sequence[str]) -> TaskChanges:
        """Handoff Tasks modified since ``since`` and the owners' touches: one Composite call."""
        from connectors.salesforce import outcomes

        return outcomes.task_changes(self, since, owner_ids)

    def close_tasks(self, items: Sequence[TaskClose]) -> list[WriteResult]:
        """Close Tasks with a note (read, then a Collections update of those still open)."""
        from connectors.salesforce import outcomes

        return outcomes.close_tasks(self, items)

    # --- open work (capacity) -------------------------------------------------
    def install(self, outcomes: Sequence[tuple[str, str]] = ()) -> list[str]:
        """Create crm-handoff's fields where missing (``install`` below), and the outcome
        picklist on tasks when ``outcomes`` are given."""
        from connectors.salesforce.outcomes import install_outcomes  # the outcome code imports this module

        return install(self) + (install_outcomes(self, outcomes) if outcomes else [])

    def open_work(self, wanted: Mapping[str, OpenWork]) -> dict[str, int]:
        """Open Tasks (by ``Type``) and unconverted Leads (by ``Status``) per owner.

        Aggregate SOQL (``COUNT(Id) ... GROUP BY OwnerId``): Salesforce counts, however
        many records there are. Several statements (tasks and leads, or more than
        ``ID_CHUNK`` owners) travel in Composite requests: one API call per 5.
        """
        queries = _open_work_soql(wanted)
        if len(queries) > 1:
            self._prefetch("open_work", [self._query_url(soql) for soql, _ in queries])
        out = dict.fromkeys(wanted, 0)
        for soql, by in queries:
            for row in self.query(soql):
                owner = str(row.get("OwnerId") or "")
                if owner in out and _is_counted(wanted[owner], by, row.get(by) if by else None):
                    out[owner] += int(row.get("expr0") or 0)
        return out


def _open_work_soql(wanted: Mapping[str, OpenWork]) -> list[tuple[str, str | None]]:
    """(aggregate SOQL, the field it groups by besides OwnerId) for ``open_work``."""
    open_task = (
        f"FROM Task WHERE IsClosed = false AND {HANDOFF_FIELDS['task_key']} = null AND OwnerId IN {{}}"
    )
    any_type = [o for o, w in wanted.items() if ANY_TYPE in w.task_types]
    typed = [o for o, w in wanted.items() if w.task_types and ANY_TYPE not in w.task_types]
    types = sorted({t for o in typed for t in wanted[o].task_types})
    leads = [o for o, w in wanted.items() if w.lead_statuses]
    statuses = sorted({s for o in leads for s in wanted[o].lead_statuses})
    out: list[tuple[str, str | None]] = []
    for part in chunked(any_type, ID_CHUNK):
        out.append((format_soql(f"SELECT OwnerId, COUNT(Id) {open_task} GROUP BY OwnerId", part), None))
    # at most AGGREGATE_ROWS groups: an aggregate query has no second page
    for part in chunked(typed, max(1, min(ID_CHUNK, AGGREGATE_ROWS // max(1, len(types) + 1)))):
        soql = f"SELECT OwnerId, Type, COUNT(Id) {open_task} AND Type IN {{}} GROUP BY OwnerId, Type"
        out.append((format_soql(soql, part, types), "Type"))
    open_lead = (
        "FROM Lead WHERE IsConverted = false AND OwnerId IN {} AND Status IN {} "
        f"AND {HANDOFF_FIELDS['status']} != {{}} GROUP BY OwnerId, Status"
    )
    for part in chunked(leads, max(1, min(ID_CHUNK, AGGREGATE_ROWS // max(1, len(statuses) + 1)))):
        soql = format_soql(
            f"SELECT OwnerId, Status, COUNT(Id) {open_lead}", part, statuses, HANDOFF_STATUSES[0]
        )
        out.append((soql, "Status"))
    return out


def _is_counted(wanted: OpenWork, by: str | None, value: Any) -> bool:
    """Does an aggregate row (grouped ``by`` Type/Status, with this value) count for the owner?"""
    if by is None:
        return ANY_TYPE in wanted.task_types
    value = str(value or "").lower()
    if by == "Type":
        return ANY_TYPE not in wanted.task_types and value in {t.lower() for t in wanted.task_types}
    return value in {s.lower() for s in wanted.lead_statuses}


@dataclass(frozen=True)
class _Outcome:
    """A person's opportunity: its stage and when it entered it."""

    stage: str
    at: datetime | None
    rank: tuple[int, datetime, str]  # won, then open, then lost; then the latest stage change


def _related(rec: Mapping[str, Any], rel: str) -> Mapping[str, Any] | None:
    """A parent record read through ``rel``: nested in REST answers, ``rel.Field`` columns
    in Bulk API CSV; None when there is none."""
    nested = rec.get(rel)
    if isinstance(nested, Mapping):
        return nested
    prefix = f"{rel}."
    flat = {k[len(prefix) :]: v for k, v in rec.items() if k.startswith(prefix)}
    return flat if any(v is not None for v in flat.values()) else None


def _outcome(opp: Mapping[str, Any] | None, opp_id: Any) -> _Outcome | None:
    """An opportunity as an outcome; None without one (or without a stage)."""
    if not opp or not opp.get("StageName"):
        return None
    at = parse_time(opp.get("LastStageChangeDate")) or parse_time(opp.get("CreatedDate"))
    standing = 2 if opp.get("IsWon") is True else 0 if opp.get("IsClosed") is True else 1
    return _Outcome(
        str(opp["StageName"]), at, (standing, at or datetime.min.replace(tzinfo=UTC), str(opp_id or ""))
    )


def _classify(exc: BaseException) -> HandoffError:
    """A simple-salesforce call's exception as crm-handoff's error (no answer: retriable)."""
    if isinstance(exc, requests.RequestException):
        return RetriableCrmError("salesforce", f"connection failed: {type(exc).__name__}")
    return classify(exc)


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text`` with their endings, one at a time (``io.StringIO`` would hold
    a copy of a whole bulk results page at four bytes a character)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


def _cut(value: str, limit: int) -> str:
    """``value`` cut to ``limit`` characters as Salesforce counts them (UTF-16 code units:
    a character outside the BMP, an emoji, counts two), never splitting a character."""
    if len(value) <= limit // 2 or (len(value) <= limit and value.isascii()):
        return value
    out = value[:limit]
    over = len(out.encode("utf-16-le")) // 2 - limit
    end = len(out)
    while over > 0:
        end -= 1
        over -= 2 if ord(out[end]) > 0xFFFF else 1
    return out if end == len(out) else out[:end]


def _error_code(body: Any) -> str:
    """The first ``errorCode`` of a Salesforce error array (a Composite subrequest's body)."""
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return str(body[0].get("errorCode") or body[0].get("statusCode") or "")
    return ""


def _typed(values: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in dict(values).items():
        if v == "":
            v = None
        if k in NUMERIC_FIELDS and isinstance(v, str):
            try:
                v = int(float(v))
            except ValueError:
                v = None
        out[k] = v
    return out


#: Custom fields crm-handoff needs: object -> (field, type, note).
_PERSON_FIELDS = [  # on Lead and on Contact
    (HANDOFF_FIELDS["link"], "Text(32)", "External ID, Unique"),
    (HANDOFF_FIELDS["status"], "Text(255)", ""),
    (HANDOFF_FIELDS["reason"], "Long Text Area(1000)", ""),
    (HANDOFF_FIELDS["score"], "Number(4,0)", ""),
    (HANDOFF_FIELDS["rep"], "Text(120)", ""),
]
REQUIRED_FIELDS: dict[str, list[tuple[str, str, str]]] = {
    "Task": [(HANDOFF_FIELDS["task_key"], "Text(80)", "External ID, Unique")],
    "Lead": _PERSON_FIELDS,
    "Contact": _PERSON_FIELDS,
}
_METADATA_TYPES = {"Text": "Text", "Long Text Area": "LongTextArea", "Number": "Number"}
_ACCESS_REFUSED = frozenset({"INSUFFICIENT_ACCESS", "INVALID_SESSION_ID", "API_DISABLED_FOR_ORG"})


def install(connector: SalesforceConnector) -> list[str]:
    """Create the missing custom fields through the Metadata API (fields that exist are left
    alone); where the org refuses, say exactly what to create by hand."""
    lines: list[str] = []
    refused = False  # the user may not change metadata: stop asking, print instructions
    for obj, fields in REQUIRED_FIELDS.items():
        connector.forget_describe(obj)  # what the org has now
        have = {f["name"] for f in connector.describe(obj).get("fields", [])}
        for name, kind, note in fields:
            if name in have:
                lines.append(f"{obj}.{name} present")
                continue
            code = "INSUFFICIENT_ACCESS" if refused else _create_field(connector, obj, name, kind, note)
            security = (
                f"Setup > Object Manager > {obj} > Fields & Relationships > {name} > Set Field-Level Security"
            )
            if code is None:
                lines.append(
                    f"{obj}.{name} created; give the integration user read and edit access to it ({security})"
                )
            elif code == "DUPLICATE_DEVELOPER_NAME":  # exists, but this user cannot see it
                lines.append(f"{obj}.{name} exists but is not visible to the integration user: {security}")
            else:
                refused = refused or code in _ACCESS_REFUSED
                extra = f", {note}" if note else ""
                lines.append(
                    f"MISSING {obj}.{name}: create it in Setup > Object Manager > {obj} > Fields as {kind}{extra}"
                )
        connector.forget_describe(obj)  # fields may have been created
    return lines


class _MetadataRefused(CrmError):
    """The Metadata API did not create a field; ``code`` is Salesforce's status or fault code."""

    def __init__(self, code: str, status: int | None = None) -> None:
        super().__init__("salesforce", f"Metadata API: {code}", status)
        self.code = code


class _MeteredTransport:
    """zeep's transport for ``sf.mdapi``: posts through the connector's metered session.

    zeep otherwise posts with a session of its own (no CA bundle, no timeout, no metering)
    and logs whole envelopes, SessionHeader included, at DEBUG; this never logs them.
    """

    def __init__(self, session: requests.Session) -> None:
        self.session = session

    def post_xml(self, address: str, envelope: Any, headers: dict[str, str]) -> requests.Response:
        from zeep.wsdl.utils import etree_to_string

        body = etree_to_string(envelope)  # type: ignore[no-untyped-call]
        return self.session.post(address, data=body, headers=headers)


def _metadata_api(connector: SalesforceConnector) -> Any:
    """``sf.mdapi`` with the current session id (rebuilt after a re-authentication) and the
    metered transport."""
    sf = connector.sf
    if sf._mdapi is not None and sf._mdapi._session_id != sf.session_id:
        sf._mdapi = None  # its SessionHeader holds the old token
    api = sf.mdapi
    api._client.transport = _MeteredTransport(connector.session)
    return api


def _custom_field(obj: str, name: str, kind: str, note: str) -> dict[str, Any]:
    """A ``REQUIRED_FIELDS`` row as Metadata API ``CustomField`` attributes."""
    label, _, size = kind.rstrip(")").partition("(")
    numbers = [int(n) for n in size.split(",")]
    spec: dict[str, Any] = {
        "fullName": f"{obj}.{name}",
        "label": name.removesuffix("__c").replace("_", " "),
        "type": _METADATA_TYPES[label],
    }
    if label == "Number":
        spec.update(precision=numbers[0], scale=numbers[1] if len(numbers) > 1 else 0)
    else:
        spec["length"] = numbers[0]
    if label == "Long Text Area":
        spec["visibleLines"] = 3
    if "External ID" in note:
        spec["externalId"] = True
    if "Unique" in note:
        spec["unique"] = True
    return spec


def _create_field(connector: SalesforceConnector, obj: str, name: str, kind: str, note: str) -> str | None:
    """Create one custom field: None on success, else why not (a Salesforce code)."""
    from zeep.exceptions import Error as ZeepError
    from zeep.exceptions import Fault, TransportError

    spec = _custom_field(obj, name, kind, note)

    def create() -> None:
        api = _metadata_api(connector)
        try:
            api.CustomField.create([api.CustomField(**spec)])
        except requests.RequestException:
            raise  # retried by _call
        except Fault as exc:  # e.g. sf:INSUFFICIENT_ACCESS
            code = str(exc.code or "").rpartition(":")[2] or "SOAP_FAULT"
            if code == "INVALID_SESSION_ID":
                raise AuthError("salesforce", "INVALID_SESSION_ID (Metadata API)", 401) from None
            raise _MetadataRefused(code) from None
        except TransportError as exc:
            if exc.status_code in (429, 500, 502, 503, 504):
                raise RetriableCrmError("salesforce", "Metadata API unavailable", exc.status_code) from None
            raise _MetadataRefused(f"HTTP_{exc.status_code}", exc.status_code) from None
        except ZeepError as exc:
            raise _MetadataRefused(type(exc).__name__) from None
        except Exception as exc:  # simple-salesforce: "\nTask.X__c: (STATUS_CODE, message), "
            raise _MetadataRefused(str(exc).partition("(")[2].partition(",")[0] or "FAILED") from None

    try:
        connector._call(create)
    except CrmError as exc:
        if isinstance(exc, _MetadataRefused):
            code = exc.code
        else:
            code = "INVALID_SESSION_ID" if isinstance(exc, AuthError) else type(exc).__name__
        log.warning("salesforce_field_not_created", field=f"{obj}.{name}", code=code)
        return code
    log.info("salesforce_field_created", field=f"{obj}.{name}")
    return None
