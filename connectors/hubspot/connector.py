"""HubSpot connector on the official ``hubspot-api-client`` SDK.

Pulls contacts (list API for the first sync, keyset-paged search afterwards, so the
search API's 10,000-result cap never bites), owners and activity; writes tasks in
batches of 100 with the contact association inline, and contact fields in batches.
See BEHAVIOR.md beside this file for each API quirk and how it is handled.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from typing import Any, TypeVar

import structlog
import urllib3
from hubspot import HubSpot
from hubspot.crm.associations.v4 import BatchInputPublicFetchAssociationsBatchRequest
from hubspot.crm.contacts import (
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputUpsert,
    PublicObjectSearchRequest,
)
from hubspot.crm.objects.tasks import (
    BatchInputSimplePublicObjectBatchInputForCreate,
)
from more_itertools import chunked

from connectors.base import ANY_TYPE, OpenWork
from connectors.hubspot.auth import HubSpotAuth, HubSpotAuthSettings
from connectors.hubspot.errors import classify
from connectors.hubspot.transport import CallMeter
from connectors.retry import RetryPolicy
from connectors.retry import call as call_with_retries
from crm_handoff.clock import utc_now
from crm_handoff.errors import AuthError, HandoffError, RetriableCrmError
from crm_handoff.records import (
    HANDOFF_OUTCOMES,
    HANDOFF_SLA,
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

log = structlog.get_logger("handoff.hubspot")
T = TypeVar("T")

PAGE = 100  # list API and batch endpoints
SEARCH_PAGE = 200  # search API maximum
ASSOC_BATCH = 1000  # v4 association batch read maximum
TASK_TO_CONTACT = 204  # HUBSPOT_DEFINED association type id

#: crm-handoff's own contact/task properties (created by ``handoff install``).
HANDOFF_FIELDS = {
    "status": "crm_handoff_status",
    "reason": "crm_handoff_reason",
    "score": "crm_handoff_score",
    "rep": "crm_handoff_rep",
    "date": "crm_handoff_date",
    "link": "crm_handoff_salesforce_id",
    "task_key": "crm_handoff_key",
    # what became of the latest handoff, for HubSpot's own reports (``sync.followup``)
    "outcome": "crm_handoff_outcome",
    "outcome_reason": "crm_handoff_outcome_reason",
    "outcome_date": "crm_handoff_outcome_date",
    "first_touch": "crm_handoff_first_touch_date",
    "sla": "crm_handoff_sla",
    "reassigned": "crm_handoff_reassigned",
    # what a person not yet sales-ready still needs, for marketing's nurture to aim at
    "missing": "crm_handoff_missing",
}

#: HubSpot event types (events API) -> activity kind. Portals name custom events
#: differently; override with HUBSPOT_EVENT_KINDS.
DEFAULT_EVENT_KINDS = {
    "e_submitted_form": "form_fill",
    "e_downloaded_content": "content_download",
    "e_attended_webinar": "webinar_attended",
}

ENGAGEMENTS = {  # engagement object -> (activity kind, title property)
    "meetings": ("meeting", "hs_meeting_title"),
    "calls": ("call", "hs_call_title"),
    "notes": ("note", "hs_note_body"),
}

PRIORITY = {"high": "HIGH", "normal": "MEDIUM", "low": "LOW"}


@dataclass(frozen=True)
class HubSpotSettings:
    auth: HubSpotAuthSettings = field(default_factory=HubSpotAuthSettings)
    event_kinds: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_EVENT_KINDS))
    timeout: float = 60.0
    api_version: str = "v3"  # or a date version such as "2026-03" (see paths.py)
    max_attempts: int = 6
    max_wait: float = 30.0
    #: How late an event may reach HubSpot after it occurred and still be counted: the
    #: events and email events APIs filter by occurrence time only, so the engine re-reads
    #: this far back once an hour (HANDOFF_ACTIVITY_LATE_SECONDS; zero: never).
    activity_late: timedelta = timedelta(days=1)

    @property
    def base_url(self) -> str:
        return self.auth.base_url

    @classmethod
    def with_token(cls, base_url: str, access_token: str) -> HubSpotSettings:
        """Settings for a static (private app / service key) access token."""
        return cls(auth=HubSpotAuthSettings(base_url=base_url, access_token=access_token))


def _ms(at: datetime) -> str:
    return str(int(at.timestamp() * 1000))


def parse_time(value: Any) -> datetime | None:
    """HubSpot timestamps: ISO-8601 strings or epoch milliseconds."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value)
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class HubSpotConnector:
    """The HubSpot side of crm-handoff."""

    name: Crm = "hubspot"
    handoff_fields: Mapping[str, str] = HANDOFF_FIELDS
    task_page: int = PAGE  # tasks written per call
    stamp_fields: frozenset[str] = frozenset({"lastmodifieddate", "hs_lastmodifieddate"})
    owner_field: str = "hubspot_owner_id"
    activity_in_background: bool = True  # hundreds of rate-limited event pages on a first sync

    def __init__(
        self,
        settings: HubSpotSettings,
        properties: Sequence[str] = (),
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.clock = clock  # "today" for the daily archived scan (shifted by ``sync --as-of``)
        self.meter = CallMeter(api_version=settings.api_version)
        self._retry_waited = 0.0
        self.calls = self.meter.calls
        self.auth = HubSpotAuth(settings.auth)
        self.client = HubSpot(
            access_token=self.auth.token(),
            host=settings.base_url.rstrip("/"),
            base_url=settings.base_url.rstrip("/"),
            api_factory=self.meter.api_factory(),
        )
        base = {"email", "firstname", "lastname", "lifecyclestage", "hs_lead_status"}
        base |= {"hubspot_owner_id", "lastmodifieddate", "notes_last_updated", "hs_merged_object_ids"}
        base |= {HANDOFF_FIELDS["link"], HANDOFF_FIELDS["status"], HANDOFF_FIELDS["missing"]}
        self.properties = sorted(base | set(properties))
        # HubSpot stamps "Became a ... Date" itself when a write moves the lifecycle stage
        self.stamp_fields = type(self).stamp_fields | {
            p for p in self.properties if p.startswith("hs_lifecyclestage_") and p.endswith("_date")
        }

    @property
    def activity_late(self) -> timedelta | None:
        """How far back the engine's hourly late re-read reaches (None: no late re-read)."""
        late = self.settings.activity_late
        return late if late > timedelta(0) else None

    # --- plumbing -------------------------------------------------------------
    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One SDK call with a timeout, retried on transient failures; a 401 refreshes once."""
        sent: dict[str, str] = {}  # the authorisation of the latest attempt
        try:
            return self._retrying(fn, sent, *args, **kwargs)
        except AuthError as exc:
            if exc.status != 401 or not self.auth.can_refresh:
                raise
            self.auth.invalidate(sent.get("value", "").removeprefix("Bearer "))  # the token refused
            return self._retrying(fn, sent, *args, **kwargs)

    def _retrying(self, fn: Callable[..., T], sent: dict[str, str], *args: Any, **kwargs: Any) -> T:
        """``fn`` by the shared retry policy (connectors/retry.py), authorised per attempt
        (``sent``: the authorisation of the latest attempt)."""
        s = self.settings
        kwargs.setdefault("_request_timeout", (10, s.timeout))

        def attempt() -> T:
            sent.update(self.auth.request_auth())
            kwargs["_request_auth"] = dict(sent)
            return fn(*args, **kwargs)

        policy = RetryPolicy(attempts=s.max_attempts, max_wait=s.max_wait)
        return call_with_retries(attempt, policy, _classify, self._note_wait)

    def _note_wait(self, error: BaseException, seconds: float) -> None:
        if getattr(error, "status", None) == 429:
            self._retry_waited += seconds

    @property
    def rate_limit_waited(self) -> float:
        """Seconds spent waiting for rate limits: pacing plus 429 back-offs."""
        return self.meter.pacer.waited + self._retry_waited

    def _person(self, obj: Any) -> Person:
        """A contact from an SDK model or from the raw JSON of a list/search page."""
        if isinstance(obj, dict):
            props = {  # as the SDK's dict(str, str) model would have them
                k: v if v is None or isinstance(v, str) else str(v)
                for k, v in (obj.get("properties") or {}).items()
            }
            oid, updated, archived = obj.get("id"), obj.get("updatedAt"), obj.get("archived")
        else:
            props = dict(obj.properties or {})
            oid, updated, archived = obj.id, obj.updated_at, getattr(obj, "archived", False)
        modified = parse_time(props.get("lastmodifieddate")) or parse_time(updated)
        return Person(
            crm="hubspot",
            id=str(oid),
            object_type="contact",
            email=(props.get("email") or None),
            values=props,
            modified_at=modified or datetime.now(UTC),
            owner_id=props.get("hubspot_owner_id") or None,
            linked_id=props.get(HANDOFF_FIELDS["link"]) or None,
            deleted=bool(archived),
        )

    def _json(self, fn: Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
        """One SDK call whose JSON body is parsed here, not into SDK models (list and
        search pages of contacts: the models' date parsing costs more than the call)."""

        def fetch(**kw: Any) -> dict[str, Any]:
            resp = fn(_preload_content=False, **kw)
            try:
                return dict(json.loads(resp.data or b"{}"))
            finally:
                resp.release_conn()

        return self._call(fetch, **kwargs)

    # --- reads ----------------------------------------------------------------
    def pull_owners(self) -> list[Owner]:
        owners: list[Owner] = []
        for archived in (False, True):
            after = None
            while True:
                page = self._call(
                    self.client.crm.owners.owners_api.get_page, limit=500, after=after, archived=archived
                )
                for o in page.results or []:
                    name = " ".join(x for x in (o.first_name, o.last_name) if x)
                    owners.append(Owner("hubspot", str(o.id), (o.email or "").lower(), name, not archived))
                after = page.paging.next.after if page.paging and page.paging.next else None
                if not after:
                    break
        return owners

    def pull_people(
        self, since: datetime | None, resume: Mapping[str, str] | None = None
    ) -> Iterator[PeoplePage]:
        state = dict(resume or {})
        if since is None:
            yield from self._list_all(state.get("after"))
            return
        scan = since.astimezone(UTC).date() < self.clock().astimezone(UTC).date()  # once a day
        if state.get("phase") != "archived":
            for page in self._search_since(since, state.get("last_id", "0")):
                yield PeoplePage(page.people, {"phase": "archived"}) if page.resume is None and scan else page
        if scan:
            yield from self._archived(state.get("after") if state.get("phase") == "archived" else None)

    def _archived(self, after: str | None) -> Iterator[PeoplePage]:
        """Archived (deleted) contacts never appear in search: list them once a day."""
        api = self.client.crm.contacts.basic_api
        while True:
            page = self._json(
                api.get_page,
                limit=PAGE,
                after=after,
                properties=["email"],
                archived=True,
            )
            after = _next_after(page)
            gone = [replace(self._person(obj), deleted=True) for obj in page.get("results") or []]
            yield PeoplePage(gone, {"phase": "archived", "after": str(after)} if after else None)
            if not after:
                return

    def _list_all(self, after: str | None) -> Iterator[PeoplePage]:
        """First sync: the list API (no 10,000 cap), 100 a page."""
        api = self.client.crm.contacts.basic_api  # one API client (and connection pool) per pass
        while True:
            page = self._json(
                api.get_page,
                limit=PAGE,
                after=after,
                properties=self.properties,
                archived=False,
            )
            after = _next_after(page)
            people = [self._person(obj) for obj in page.get("results") or []]
            yield PeoplePage(people, {"after": str(after)} if after else None)
            if not after:
                return

    def _search_since(self, since: datetime, last: str) -> Iterator[PeoplePage]:
        """Contacts modified at/after ``since``, keyset-paged by ``hs_object_id``.

        Each page is a fresh query (``hs_object_id > last``), so no query ever pages
        past the search API's 10,000-result cap, and a pass resumes after any page.
        """
        api = self.client.crm.contacts.search_api
        while True:
            request = PublicObjectSearchRequest(
                filter_groups=[
                    {
                        "filters": [
                            {"propertyName": "lastmodifieddate", "operator": "GTE", "value": _ms(since)},
                            {"propertyName": "hs_object_id", "operator": "GT", "value": last},
                        ]
                    }
                ],
                sorts=["hs_object_id"],
                properties=self.properties,
                limit=SEARCH_PAGE,
            )
            page = self._json(api.do_search, public_object_search_request=request)
            results = page.get("results") or []
            more = len(results) == SEARCH_PAGE
            if results:
                last = str(results[-1]["id"])
            yield PeoplePage([self._person(o) for o in results], {"last_id": last} if more else None)
            if not more:
                return

    def _search_api(self, object_type: str) -> Callable[..., Any]:
        api = self.client.crm.objects.search_api.do_search

        def search(**kwargs: Any) -> Any:
            return api(object_type, **kwargs)

        return search

    def pull_activities(self, since: datetime) -> Iterator[Activity]:
        for event_type, kind in self.settings.event_kinds.items():
            yield from self._events(event_type, kind, since)
        yield from self._email_clicks(since)

    def _events(self, event_type: str, kind: str, since: datetime) -> Iterator[Activity]:
        after = None
        api = self.client.events.events_api  # one API client (and connection pool) per event type
        while True:
            page = self._json(  # raw JSON: the SDK models' date parsing costs more than the call
                api.get_page,
                object_type="contact",
                event_type=event_type,
                occurred_after=since,
                limit=PAGE,
                after=after,
            )
            for ev in page.get("results") or []:
                props = ev.get("properties") or {}
                yield Activity(
                    crm="hubspot",
                    id=f"ev-{ev.get('id')}",
                    kind=kind,
                    occurred_at=parse_time(ev.get("occurredAt")) or since,
                    person_id=str(ev.get("objectId")),
                    title=str(props.get("hs_title") or props.get("title") or props.get("hs_url") or ""),
                )
            after = _next_after(page)
            if not after:
                return

    def _email_clicks(self, since: datetime) -> Iterator[Activity]:
        """Marketing email clicks: the legacy v1 email events API (not in the events API)."""
        offset = None
        while True:
            qs: dict[str, Any] = {"eventType": "CLICK", "startTimestamp": _ms(since), "limit": 1000}
            if offset:
                qs["offset"] = offset
            resp = self._call_raw("/email/public/v1/events", qs)
            for ev in resp.get("events", []):
                yield Activity(
                    crm="hubspot",
                    id=f"em-{ev['id']}",
                    kind="email_click",
                    occurred_at=parse_time(ev.get("created")) or since,
                    email=(ev.get("recipient") or "").lower() or None,
                    title=str(ev.get("url") or ""),
                )
            offset = resp.get("offset")
            if not resp.get("hasMore"):
                return

    def _call_raw(self, path: str, query: Mapping[str, Any]) -> dict[str, Any]:
        """GET a path the SDK has no API class for (the legacy email events API) through a
        generated API client: the same metered transport, timeout, auth, retries and error
        classification as every other call (the SDK's ``api_request`` has no timeout and
        prints its errors to stdout)."""
        api_client = self.client.crm.owners.owners_api.api_client  # any: all share the meter

        def fetch(**kw: Any) -> dict[str, Any]:
            resp = api_client.call_api(
                path,
                "GET",
                {},
                list(query.items()),
                {"Accept": "application/json"},
                response_types_map={},
                auth_settings=["oauth2"],
                _return_http_data_only=True,
                _preload_content=False,
                **kw,
            )
            try:
                return dict(json.loads(resp.data or b"{}"))
            finally:
                resp.release_conn()

        return self._call(fetch)

    def activities_for(self, people: Sequence[Person], since: datetime) -> Iterator[Activity]:
        """Meetings and calls of contacts whose "Last Activity Date" moved since ``since``.

        Engagements are read through the v4 association batch read (1,000 contacts a
        call) and a batch read of the engagements (100 a call), never per contact.
        """
        active = [p.id for p in people if (parse_time(p.values.get("notes_last_updated")) or since) > since]
        if not active:
            return
        for object_type, (kind, title) in ENGAGEMENTS.items():
            by_engagement: dict[str, list[str]] = {}
            for contact_id, ids in self._associations("contacts", object_type, active).items():
                for eid in ids:
                    by_engagement.setdefault(eid, []).append(contact_id)
            for obj in self._batch_read(object_type, sorted(by_engagement), ["hs_timestamp", title]):
                props = obj.properties or {}
                at = parse_time(props.get("hs_timestamp")) or since
                if at < since:
                    continue
                for contact_id in by_engagement.get(str(obj.id), []):
                    yield Activity(
                        crm="hubspot",
                        id=f"{object_type}-{obj.id}-{contact_id}",
                        kind=kind,
                        occurred_at=at,
                        person_id=contact_id,
                        title=str(props.get(title) or ""),
                    )

    def _batch_read(self, object_type: str, ids: Sequence[str], properties: Sequence[str]) -> list[Any]:
        out: list[Any] = []
        api = self.client.crm.objects.batch_api.read
        for part in chunked(ids, PAGE):
            body = {
                "inputs": [{"id": i} for i in part],
                "properties": list(properties),
                "propertiesWithHistory": [],
            }
            res = self._call(api, object_type, batch_read_input_simple_public_object_id=body)
            out += list(res.results or [])
        return out

    def _associations(self, from_type: str, to_type: str, ids: Sequence[str]) -> dict[str, list[str]]:
        """Every associated id of each of ``ids``: the v4 batch read, 1,000 inputs a call.

        HubSpot returns at most 500 associated records per input; a result with more
        carries ``paging.next.after``, and the next batch read sends that ``after`` on
        that input. Only the inputs still paging are sent again, together in one call.
        """
        out: dict[str, list[str]] = {}
        api = self.client.crm.associations.v4.batch_api.get_page
        pending: dict[str, str | None] = dict.fromkeys(ids)
        while pending:
            paging: dict[str, str | None] = {}
            for part in chunked(pending.items(), ASSOC_BATCH):
                inputs = [{"id": i, "after": after} if after else {"id": i} for i, after in part]
                res = self._call(
                    api,
                    from_object_type=from_type,
                    to_object_type=to_type,
                    batch_input_public_fetch_associations_batch_request=(
                        BatchInputPublicFetchAssociationsBatchRequest(inputs=inputs)
                    ),
                )
                for row in res.results or []:
                    key = str(row._from.id)
                    out.setdefault(key, []).extend(str(t.to_object_id) for t in row.to or [])
                    nxt = row.paging.next.after if row.paging and row.paging.next else None
                    if nxt and str(nxt) != pending.get(key):  # a cursor that does not move ends it
                        paging[key] = str(nxt)
            pending = paging
        return out

    # --- writes ---------------------------------------------------------------
    def find_tasks(self, keys: Sequence[str]) -> dict[str, str]:
        key_prop = HANDOFF_FIELDS["task_key"]
        found: dict[str, str] = {}
        api = self._search_api("tasks")
        for part in chunked(keys, PAGE):
            request = PublicObjectSearchRequest(
                filter_groups=[
                    {"filters": [{"propertyName": key_prop, "operator": "IN", "values": list(part)}]}
                ],
                properties=[key_prop],
                limit=SEARCH_PAGE,
            )
            page = self._call(api, public_object_search_request=request)
            for obj in page.results or []:
                key = (obj.properties or {}).get(key_prop)
                if key:
                    found[key] = str(obj.id)
        return found

    def write_tasks(self, tasks: Sequence[TaskRequest]) -> list[WriteResult]:
        results: list[WriteResult] = []
        for part in chunked(tasks, PAGE):
            results += self._create_task_batch(part)
        return results

    def _create_task_batch(self, part: Sequence[TaskRequest]) -> list[WriteResult]:
        key_prop = HANDOFF_FIELDS["task_key"]
        inputs = [
            {
                "properties": {
                    "hs_timestamp": _ms(datetime.combine(t.due, time(9), tzinfo=UTC)),
                    "hs_task_subject": t.subject,
                    "hs_task_body": t.body,
                    "hs_task_status": "NOT_STARTED",
                    "hs_task_priority": PRIORITY.get(t.priority, "HIGH"),
                    "hs_task_type": "TODO",
                    "hubspot_owner_id": t.owner_id,
                    key_prop: t.key,
                },
                "associations": [
                    {
                        "to": {"id": t.person_id},
                        "types": [
                            {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": TASK_TO_CONTACT}
                        ],
                    }
                ],
                "objectWriteTraceId": t.key,
            }
            for t in part
        ]
        body = BatchInputSimplePublicObjectBatchInputForCreate(inputs=inputs)
        res = self._call(
            self.client.crm.objects.tasks.batch_api.create,
            batch_input_simple_public_object_batch_input_for_create=body,
        )
        done = {
            (o.properties or {}).get(key_prop): WriteResult(
                (o.properties or {})[key_prop], True, str(o.id), created=True
            )
            for o in res.results or []
            if (o.properties or {}).get(key_prop)
        }
        failed = _batch_errors(res)
        conflicts = [k for k, (_, code) in failed.items() if code == "CONFLICT"]
        existing = self.find_tasks(conflicts) if conflicts else {}
        out = []
        for t in part:
            if t.key in done:
                out.append(done[t.key])
            elif t.key in existing:
                out.append(WriteResult(t.key, True, existing[t.key], created=False))
            else:
                msg, code = failed.get(t.key, ("not in the batch response", None))
                out.append(WriteResult(t.key, False, error=msg, code=code))
        return out

    def update_people(self, updates: Sequence[PersonUpdate]) -> list[WriteResult]:
        out: list[WriteResult] = []
        for part in chunked(updates, PAGE):
            inputs = [
                {"id": u.person_id, "properties": _strings(u.values), "objectWriteTraceId": u.person_id}
                for u in part
            ]
            res = self._call(
                self.client.crm.contacts.batch_api.update,
                batch_input_simple_public_object_batch_input=BatchInputSimplePublicObjectBatchInput(
                    inputs=inputs
                ),
            )
            failed = _batch_errors(res)
            for u in part:
                if u.person_id in failed:
                    msg, code = failed[u.person_id]
                    out.append(WriteResult(u.person_id, False, error=msg, code=code))
                else:
                    out.append(WriteResult(u.person_id, True, u.person_id))
        return out

    def create_people(self, people: Sequence[PersonCreate]) -> list[WriteResult]:
        """Create contacts idempotently: batch upsert keyed by email."""
        out: list[WriteResult] = []
        for part in chunked(people, PAGE):
            inputs = []
            for p in part:
                email = str(p.values.get("email") or "")
                inputs.append(
                    {
                        "id": email,
                        "idProperty": "email",
                        "properties": _strings(p.values),
                        "objectWriteTraceId": p.external_id,
                    }
                )
            res = self._call(
                self.client.crm.contacts.batch_api.upsert,
                batch_input_simple_public_object_batch_input_upsert=BatchInputSimplePublicObjectBatchInputUpsert(
                    inputs=inputs
                ),
            )
            by_email = {(o.properties or {}).get("email", "").lower(): o for o in res.results or []}
            failed = _batch_errors(res)
            for p in part:
                obj = by_email.get(str(p.values.get("email") or "").lower())
                if obj is not None:
                    out.append(
                        WriteResult(p.external_id, True, str(obj.id), created=getattr(obj, "new", None))
                    )
                else:
                    msg, code = failed.get(p.external_id, ("contact has no email to upsert by", None))
                    out.append(WriteResult(p.external_id, False, error=msg, code=code))
        return out

    # --- outcomes (connectors/hubspot/outcomes.py) ------------------------------
    def read_tasks(self, task_ids: Sequence[str]) -> list[TaskState]:
        """Tasks' status, completion, outcome and owner: batch reads of 100."""
        from connectors.hubspot import outcomes

        return outcomes.read_tasks(self, task_ids)

    def touches(self, person_ids: Sequence[str], since: datetime) -> Iterator[Touch]:
        """Calls, emails and meetings logged on these contacts since ``since``."""
        from connectors.hubspot import outcomes

        return outcomes.touches(self, person_ids, since)

    def read_people(self, ids: Sequence[str]) -> list[Person]:
        """Contacts by id: batch reads of 100 (``webhooks.read_contacts``)."""
        from connectors.hubspot.webhooks import read_contacts

        return read_contacts(self, ids)

    def task_changes(self, since: datetime, owner_ids: Sequence[str]) -> TaskChanges:
        """Handoff tasks modified since ``since`` (a keyset-paged search; no touches)."""
        from connectors.hubspot import outcomes

        return outcomes.task_changes(self, since)

    def close_tasks(self, items: Sequence[TaskClose]) -> list[WriteResult]:
        """Close tasks with a note (read, then batch update of those still open)."""
        from connectors.hubspot import outcomes

        return outcomes.close_tasks(self, items)

    # --- open work (capacity) -------------------------------------------------
    def install(self, outcomes: Sequence[tuple[str, str]] = ()) -> list[str]:
        """Create crm-handoff's fields where missing (``install`` below), and the outcome
        picklist on tasks when ``outcomes`` are given."""
        from connectors.hubspot.outcomes import install_outcomes  # the outcome code imports this module

        return install(self) + (install_outcomes(self, outcomes) if outcomes else [])

    def open_work(self, wanted: Mapping[str, OpenWork]) -> dict[str, int]:
        """Open tasks per owner: not completed, not crm-handoff's, of the wanted types.

        One search for all owners (``hubspot_owner_id`` IN, 100 owners a search),
        keyset-paged by ``hs_object_id`` at 200 a page, so it never nears the 10,000-result
        cap; an owner whose count reached ``up_to`` leaves the next page's filter.
        """
        out = dict.fromkeys(wanted, 0)
        for part in chunked([o for o, w in wanted.items() if w.task_types], PAGE):
            self._count_open_tasks(part, wanted, out)
        return out

    def _count_open_tasks(
        self, owners: Sequence[str], wanted: Mapping[str, OpenWork], out: dict[str, int]
    ) -> None:
        search = self._search_api("tasks")
        types = sorted({t for o in owners for t in wanted[o].task_types})
        left, last = list(owners), "0"
        while left:
            filters: list[dict[str, Any]] = [
                {"propertyName": "hubspot_owner_id", "operator": "IN", "values": left},
                {"propertyName": "hs_task_status", "operator": "NEQ", "value": "COMPLETED"},
                {"propertyName": HANDOFF_FIELDS["task_key"], "operator": "NOT_HAS_PROPERTY"},
                {"propertyName": "hs_object_id", "operator": "GT", "value": last},
            ]
            if ANY_TYPE not in types:
                filters.append({"propertyName": "hs_task_type", "operator": "IN", "values": types})
            request = PublicObjectSearchRequest(
                filter_groups=[{"filters": filters}],
                sorts=["hs_object_id"],
                properties=["hubspot_owner_id", "hs_task_type"],
                limit=SEARCH_PAGE,
            )
            results = self._json(search, public_object_search_request=request).get("results") or []
            for obj in results:
                props = obj.get("properties") or {}
                owner = str(props.get("hubspot_owner_id") or "")
                spec = wanted.get(owner)
                if spec and (ANY_TYPE in spec.task_types or props.get("hs_task_type") in spec.task_types):
                    out[owner] += 1
            if len(results) < SEARCH_PAGE:
                return
            last = str(results[-1]["id"])
            left = [o for o in left if (cap := wanted[o].up_to) is None or out[o] < cap]


def _next_after(page: Mapping[str, Any]) -> str | None:
    """The ``paging.next.after`` cursor of a raw JSON page, if there is a next page."""
    after = ((page.get("paging") or {}).get("next") or {}).get("after")
    return str(after) if after else None


def _strings(values: Any) -> dict[str, str]:
    return {k: "" if v is None else str(v) for k, v in dict(values).items()}


def _batch_errors(res: Any) -> dict[str, tuple[str, str | None]]:
    """objectWriteTraceId (or id) -> (message, category) from a 207 batch response."""
    out: dict[str, tuple[str, str | None]] = {}
    for err in getattr(res, "errors", None) or []:
        ctx = err.context or {}
        keys = list(ctx.get("objectWriteTraceId") or []) + list(ctx.get("ids") or [])
        for key in keys:
            out[str(key)] = (f"{err.category}: {err.message}", err.category)
    return out


def _classify(exc: BaseException) -> HandoffError:
    """An SDK call's exception as crm-handoff's error (a connection failure: retriable)."""
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return RetriableCrmError("hubspot", f"connection failed: {type(exc).__name__}")
    return classify(exc)


#: Properties ``handoff install`` creates: object type -> (name, label, type, fieldType, unique).
INSTALL_PROPERTIES: dict[str, list[tuple[str, str, str, str, bool]]] = {
    "contacts": [
        (HANDOFF_FIELDS["status"], "Handoff status", "enumeration", "select", False),
        (HANDOFF_FIELDS["reason"], "Handoff reason", "string", "textarea", False),
        (HANDOFF_FIELDS["score"], "Handoff score", "number", "number", False),
        (HANDOFF_FIELDS["rep"], "Handoff rep", "string", "text", False),
        (HANDOFF_FIELDS["date"], "Handoff date", "date", "date", False),
        (HANDOFF_FIELDS["link"], "Salesforce record id", "string", "text", False),
        (HANDOFF_FIELDS["outcome"], "Handoff outcome", "enumeration", "select", False),
        (HANDOFF_FIELDS["outcome_reason"], "Handoff outcome reason", "string", "textarea", False),
        (HANDOFF_FIELDS["outcome_date"], "Handoff outcome date", "date", "date", False),
        (HANDOFF_FIELDS["first_touch"], "Handoff first touch", "datetime", "date", False),
        (HANDOFF_FIELDS["sla"], "Handoff first-touch SLA", "enumeration", "select", False),
        (HANDOFF_FIELDS["reassigned"], "Handoff reassignments", "number", "number", False),
        (HANDOFF_FIELDS["missing"], "What is missing to be sales-ready", "string", "text", False),
    ],
    "tasks": [(HANDOFF_FIELDS["task_key"], "Handoff key", "string", "text", True)],
}
GROUP = "crm_handoff"


def install(connector: HubSpotConnector) -> list[str]:
    """Create crm-handoff's property group and properties where missing (idempotent)."""
    core = connector.client.crm.properties.core_api
    groups = connector.client.crm.properties.groups_api
    lines: list[str] = []
    for object_type, props in INSTALL_PROPERTIES.items():
        existing_groups = {g.name for g in connector._call(groups.get_all, object_type).results or []}
        if GROUP not in existing_groups:
            connector._call(
                groups.create, object_type, property_group_create={"name": GROUP, "label": "crm-handoff"}
            )
            lines.append(f"created property group {GROUP} on {object_type}")
        existing = {p.name: p for p in connector._call(core.get_all, object_type).results or []}
        for name, label, type_, field_type, unique in props:
            options = _options(name)
            have = existing.get(name)
            if have is not None and not _differs(have, type_, options):
                lines.append(f"{object_type}.{name} already exists")
                continue
            body: dict[str, Any] = {"label": label, "type": type_, "fieldType": field_type}
            if options:
                body["options"] = options
            if have is not None:  # an older install's free-text status becomes the dropdown
                connector._call(core.update, object_type, name, property_update=body)
                lines.append(f"updated {object_type}.{name} to a {field_type} of {len(options)} values")
                continue
            body |= {"name": name, "groupName": GROUP, "hasUniqueValue": unique}
            connector._call(core.create, object_type, property_create=body)
            lines.append(f"created {object_type}.{name}")
    return lines


def _options(name: str) -> list[dict[str, Any]]:
    """The dropdown values of a property crm-handoff installs (status, outcome, SLA)."""
    values = {
        HANDOFF_FIELDS["status"]: HANDOFF_STATUSES,
        HANDOFF_FIELDS["outcome"]: HANDOFF_OUTCOMES,
        HANDOFF_FIELDS["sla"]: HANDOFF_SLA,
    }.get(name, ())
    return [{"label": v[:1].upper() + v[1:], "value": v, "displayOrder": i} for i, v in enumerate(values)]


def _differs(prop: Any, type_: str, options: list[dict[str, Any]]) -> bool:
    """True when an installed property lacks the type or dropdown values this version needs."""
    if prop.type != type_:
        return True
    have = {o.value for o in prop.options or []}
    return any(o["value"] not in have for o in options)
