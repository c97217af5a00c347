"""The Salesforce sandbox's WSGI app: REST routes, auth, API usage metering and faults.

Routes live under ``/services/data/v{version}`` (any version >= 42.0) and speak Salesforce's
wire formats; ``/services/oauth2/token`` issues tokens (client credentials, refresh token,
JWT bearer, username/password; the login URL is the instance URL); ``/__sandbox/*`` are unauthenticated,
uncounted admin endpoints. Werkzeug does the HTTP; ``sandbox_server.serve`` adds TLS.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import json
import logging
import re
import secrets
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

import jwt
import requests
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from connectors.sandbox_server import RunningServer, serve

from .faults import SUBREQUEST_STATUS, Faults
from .schema import SOBJECTS, FieldDef, parse_datetime, sobject, sobject_for_id, to_wire
from .soql import Plan, Row, SoqlError, compile_query, full_id, parse, record_attributes
from .store import RecordError, SalesforceStore, make_id

logging.getLogger("werkzeug").setLevel(logging.ERROR)

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MAX_COLLECTION = 200
DEFAULT_BATCH = 2000
MAX_OPEN_CURSORS = 50
MAX_SUBREQUESTS = 25  # per Composite request ...
MAX_HEAVY_SUBREQUESTS = 5  # ... of which queries or sObject Collections
JOBS_PAGE = 1000  # Bulk API 2.0 "Get Information About All Query Jobs": records per page
OLDEST_VERSION = "42.0"  # the sandbox serves REST API versions from Spring '18 ...
LATEST_VERSION = "68.0"  # ... to Winter '27
_JOBS_LOCATOR = make_id("01g", 0)  # the query-jobs list's locator (one list: one locator)
HALTED = "The transaction was rolled back since another operation in the same transaction failed."
ROLLED_BACK = RecordError(
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "Record rolled back because not all records were valid and the request was using AllOrNone header",
)
_PREFIX = "/services/data/v<version>"
_SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
_MD = "http://soap.sforce.com/2006/04/metadata"
_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_DELIMITERS = {"COMMA": ",", "TAB": "\t", "SEMICOLON": ";", "PIPE": "|", "CARET": "^", "BACKQUOTE": "`"}

Handler = Callable[..., Response]


class ApiError(Exception):
    """A whole-request failure: HTTP status and a Salesforce error array entry."""

    def __init__(self, status: int, error_code: str, message: str, fields: list[str] | None = None):
        super().__init__(message)
        self.status = status
        self.body: list[dict[str, Any]] = [{"message": message, "errorCode": error_code}]
        if fields is not None:
            self.body[0]["fields"] = fields


@dataclass(slots=True)
class _Cursor:
    plan: Plan
    rows: list[Row]
    batch: int


@dataclass(slots=True)
class _Job:
    info: dict[str, Any]
    plan: Plan
    rows: list[Row]
    delimiter: str
    line_ending: str
    ready_at: float = 0.0  # monotonic time the job completes (Faults.bulk_job_seconds)


def _rules() -> Map:
    api = [
        ("/", "resources", ["GET"]),
        ("/limits/", "limits", ["GET"]),
        ("/query/", "query", ["GET"]),
        ("/queryAll/", "query_all", ["GET"]),
        ("/query/<locator>", "query_more", ["GET"]),
        ("/queryAll/<locator>", "query_more", ["GET"]),
        ("/sobjects/", "describe_global", ["GET"]),
        ("/sobjects/<sobject>/", "sobject_root", ["GET", "POST"]),
        ("/sobjects/<sobject>/describe/", "describe", ["GET"]),
        ("/sobjects/<sobject>/updated/", "updated", ["GET"]),
        ("/sobjects/<sobject>/deleted/", "deleted", ["GET"]),
        ("/sobjects/<sobject>/<record_id>", "record", ["GET", "PATCH", "DELETE"]),
        ("/sobjects/<sobject>/<field>/<path:value>", "by_external_id", ["GET", "PATCH"]),
        ("/composite", "composite", ["POST"]),
        ("/composite/sobjects", "collections", ["POST", "PATCH", "DELETE"]),
        ("/composite/sobjects/<sobject>", "collections_retrieve", ["GET", "POST"]),
        ("/composite/sobjects/<sobject>/<field>", "collections_upsert", ["PATCH"]),
        ("/jobs/query", "bulk_jobs", ["GET", "POST"]),
        ("/jobs/query/<job_id>", "bulk_job", ["GET", "PATCH", "DELETE"]),
        ("/jobs/query/<job_id>/results", "bulk_results", ["GET"]),
    ]
    rules = [Rule(_PREFIX + path, endpoint=ep, methods=m) for path, ep, m in api]
    rules += [
        Rule("/services/data/", endpoint="api_versions", methods=["GET"]),
        Rule("/services/oauth2/token", endpoint="oauth_token", methods=["POST"]),
        Rule("/services/Soap/m/<version>/", endpoint="metadata", methods=["POST"]),
        Rule("/__sandbox/state", endpoint="admin_state", methods=["GET"]),
        Rule("/__sandbox/faults", endpoint="admin_faults", methods=["GET", "POST"]),
        Rule("/__sandbox/calls", endpoint="admin_calls", methods=["GET"]),
    ]
    return Map(rules, strict_slashes=False, merge_slashes=False)


def _template(rule: Rule) -> str:
    path = rule.rule.removeprefix(_PREFIX).rstrip("/") or "/"
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", path)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(data), status, headers=headers, mimetype="application/json")


def _body(request: Request) -> Any:
    try:
        return json.loads(request.get_data(as_text=True) or "null")
    except ValueError as exc:
        raise ApiError(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}") from None


class SalesforceSandbox:
    """A stateful emulator of the Salesforce REST API subset crm-handoff uses."""

    def __init__(
        self,
        store: SalesforceStore,
        token: str = "sandbox-salesforce-token",
        faults: Faults | None = None,
        latency_ms: int = 0,
        daily_api_limit: int = 5_000_000,
        client_id: str = "sandbox-client-id",
        client_secret: str = "sandbox-client-secret",
        refresh_token: str = "sandbox-refresh-token",
        jwt_public_key: str | None = None,
        username: str = "integration@example.com",
        password: str = "sandbox-password",
        security_token: str = "",
        metadata_api_allowed: bool = True,
        latest_version: str = LATEST_VERSION,
    ) -> None:
        self.store = store
        self.token = token
        self.faults = faults if faults is not None else Faults()
        self.latency_ms = latency_ms
        self.daily_api_limit = daily_api_limit
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.jwt_public_key = jwt_public_key
        self.username = username
        self.password = password
        self.security_token = security_token
        self.metadata_api_allowed = metadata_api_allowed  # False: the user lacks Modify Metadata
        self.latest_version = latest_version  # newer versions are 404, as on an org not yet upgraded
        self.calls: Counter[str] = Counter()
        self.api_usage = 0
        self.bulk_jobs_created = 0
        self.instance_url: str | None = None
        self.ca_bundle: str | None = None
        self._tokens = {token}
        self._meter = threading.Lock()
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self._jobs: dict[str, _Job] = {}
        self._serial = 0
        self._map = _rules()
        self._running: RunningServer | None = None
        self._local = threading.local()

    # ------------------------------------------------------------------ server lifecycle

    def start(self, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
        """Serve over TLS on loopback; sets ``instance_url`` and ``ca_bundle``."""
        self._running = serve(self, host, port, tls=True)
        self.instance_url = self._running.url
        self.ca_bundle = self._running.ca_bundle
        return self._running

    def requests_session(self) -> requests.Session:
        """A ``requests.Session`` that trusts the sandbox's CA.

        ``trust_env`` is off because requests lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``
        override ``Session.verify`` (psf/requests#3829); loopback needs no proxy either.
        """
        session = requests.Session()
        session.verify = self.ca_bundle or True
        session.trust_env = False
        return session

    def stop(self) -> None:
        if self._running is not None:
            self._running.stop()
            self._running = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        response = self._dispatch(request)
        return response(environ, start_response)

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, request: Request) -> Response:
        adapter = self._map.bind_to_environ(request.environ)
        try:
            rule, args = adapter.match(return_rule=True)
        except MethodNotAllowed as exc:
            allowed = ",".join(exc.valid_methods or [])
            return self._limited(_json(
                [{"errorCode": "METHOD_NOT_ALLOWED",
                  "message": f"HTTP Method '{request.method}' not allowed. Allowed are {allowed}"}],
                405,
            ))  # fmt: skip
        except (NotFound, HTTPException):
            return self._limited(_json(
                [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}], 404
            ))  # fmt: skip
        endpoint = str(rule.endpoint)
        if endpoint.startswith("admin_"):
            handler: Handler = getattr(self, "_" + endpoint)
            return handler(request)
        with self._meter:
            self.calls[f"{request.method} {_template(rule)}"] += 1
        delay = self.faults.latency_seconds(self.latency_ms)
        if delay:
            time.sleep(delay)
        if endpoint == "oauth_token":
            return self._oauth_token(request)
        if endpoint == "api_versions":  # no authentication, not metered, no Sforce-Limit-Info
            return self._api_versions(request)
        if endpoint == "metadata":
            return self._limited(self._metadata(request, args["version"]))
        try:
            args = dict(args)
            self._gate(request, args.pop("version"))
            handler = getattr(self, "_" + endpoint)
            response = handler(request, **args)
        except (ApiError, SoqlError, RecordError) as exc:
            response = _error_response(exc)
        return self._limited(response)

    # ------------------------------------------------------------------ Metadata API (SOAP)

    def _metadata(self, request: Request, version: str) -> Response:
        """``POST /services/Soap/m/{version}``: ``createMetadata`` of CustomFields only."""
        try:
            if float(version) < 42.0:
                raise ValueError
            envelope = ET.fromstring(request.get_data())
        except (ValueError, ET.ParseError):
            return _soap_fault("soapenv:Client", "INVALID_REQUEST", "Could not parse the SOAP request")
        session = envelope.findtext(f"{{{_SOAP}}}Header/{{{_MD}}}SessionHeader/{{{_MD}}}sessionId")
        if self.faults.take("expire_session_next") or (session or "").strip() not in self._tokens:
            return _soap_fault(
                "sf:INVALID_SESSION_ID",
                "INVALID_SESSION_ID",
                "Invalid Session ID found in SessionHeader: Illegal Session",
            )
        with self._meter:
            if self.api_usage >= self.daily_api_limit:
                return _soap_fault(
                    "sf:REQUEST_LIMIT_EXCEEDED", "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."
                )
            self.api_usage += 1
        if not self.metadata_api_allowed:
            return _soap_fault(
                "sf:INSUFFICIENT_ACCESS",
                "INSUFFICIENT_ACCESS",
                "use of the Metadata API requires a user with the ModifyAllData or ModifyMetadata permissions",
            )
        for operation in ("createMetadata", "updateMetadata"):
            call = envelope.find(f"{{{_SOAP}}}Body/{{{_MD}}}{operation}")
            if call is not None:
                update = operation == "updateMetadata"
                results = [self._save_field(item, update) for item in call.findall(f"{{{_MD}}}metadata")]
                return _soap_response(f"{operation}Response", results)
        return _soap_fault(
            "soapenv:Client", "INVALID_OPERATION", "Only createMetadata and updateMetadata are supported here"
        )

    def _save_field(self, item: ET.Element, update: bool) -> dict[str, Any]:
        """One ``createMetadata`` / ``updateMetadata`` component: a SaveResult as a dict.

        ``Activity.X__c`` is a field of Task and Event both (Salesforce defines activity
        custom fields on Activity)."""
        full_name = item.findtext(f"{{{_MD}}}fullName") or ""
        try:
            if not (item.get(f"{{{_XSI}}}type") or "").endswith("CustomField"):
                raise RecordError("INVALID_TYPE", "Only CustomField metadata is supported")
            obj, _, name = full_name.partition(".")
            if not name.endswith("__c"):
                raise RecordError("INVALID_NAME", f"Custom field names end in __c: {full_name}")
            fdef = _custom_field(name, item)
            targets = ("Task", "Event") if obj == "Activity" else (obj,)
            missing = [t for t in targets if update and self.store.definition(t).field(name) is None]
            if missing:  # all or nothing: no target changes unless every one has the field
                self.store.update_field(missing[0], fdef)  # raises Salesforce's not-found error
            for target in targets:
                (self.store.update_field if update else self.store.add_field)(target, fdef)
        except RecordError as exc:
            return {"fullName": full_name, "success": False, "errors": [exc]}
        return {"fullName": full_name, "success": True, "errors": []}

    # ------------------------------------------------------------------ composite

    def _composite(self, request: Request) -> Response:
        """``POST /composite``: up to 25 subrequests (at most 5 queries or collections), one
        API call in all, HTTP 200 with each subrequest's own ``httpStatusCode`` and body.

        ``allOrNone: false`` runs every subrequest whatever the others did; ``true`` stops at
        the first failure, rolls back what the others wrote and answers each of them 400
        ``PROCESSING_HALTED`` (it also makes every collections subrequest all-or-none).
        References between subrequests are not supported (crm-handoff does not use them).
        """
        body = _body(request)
        subs = body.get("compositeRequest") if isinstance(body, dict) else None
        if not isinstance(subs, list) or not subs or not all(isinstance(r, dict) for r in subs):
            raise ApiError(400, "JSON_PARSER_ERROR", "compositeRequest: expected a non-empty list of objects")
        heavy = sum(1 for r in subs if _heavy(str(r.get("url", ""))))
        if len(subs) > MAX_SUBREQUESTS or heavy > MAX_HEAVY_SUBREQUESTS:
            raise ApiError(
                400,
                "INVALID_FIELD",
                f"a composite request has at most {MAX_SUBREQUESTS} subrequests, "
                f"{MAX_HEAVY_SUBREQUESTS} of them queries or collections",
            )
        all_or_none = body.get("allOrNone") is True
        auth = request.headers.get("Authorization", "")
        version = self._local.version
        out: list[dict[str, Any]] = []
        try:
            with self.store.atomic() as rollback:
                for i, sub in enumerate(subs):
                    result = self._subrequest(sub, auth, all_or_none)
                    out.append(result)
                    if all_or_none and _sub_failed(result):
                        rollback()
                        out = [r if r is result else _halted(r) for r in out]
                        out += [_halted({"referenceId": s.get("referenceId")}) for s in subs[i + 1 :]]
                        break
        finally:
            self._local.version = version
        return _json({"compositeResponse": out})

    def _subrequest(self, sub: dict[str, Any], auth: str, all_or_none: bool) -> dict[str, Any]:
        """One Composite subrequest, answered as Salesforce does: its own status and body."""
        from werkzeug.test import EnvironBuilder

        url = str(sub.get("url", ""))
        path, _, query = url.partition("?")
        body = sub.get("body")
        if all_or_none and _heavy(path) and "/composite/sobjects" in path:
            if isinstance(body, dict):  # the outer allOrNone overrides the collection's own
                body = {**body, "allOrNone": True}
            query = f"{query}&allOrNone=true" if query else "allOrNone=true"
        builder = EnvironBuilder(
            path=path,
            query_string=query,
            method=str(sub.get("method", "GET")),
            json=body,
            headers=[("Authorization", auth)],
        )
        inner = Request(builder.get_environ())
        try:
            code = self.faults.subrequest_error(url)
            if code is not None:
                raise ApiError(
                    SUBREQUEST_STATUS.get(code, 400),
                    code,
                    f"{code} (sandbox fault on a composite subrequest)",
                )
            rule, args = self._map.bind_to_environ(inner.environ).match(return_rule=True)
            args = dict(args)
            version = args.pop("version", None)
            if str(rule.endpoint).startswith("admin_") or version is None or not self._version_ok(version):
                raise NotFound()
            self._local.version = version
            response = getattr(self, "_" + str(rule.endpoint))(inner, **args)
        except (ApiError, SoqlError, RecordError) as exc:
            response = _error_response(exc)
        except (NotFound, HTTPException):
            response = _json(
                [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}], 404
            )
        data = response.get_data(as_text=True)
        return {
            "body": json.loads(data) if data else None,
            "httpHeaders": {},
            "httpStatusCode": response.status_code,
            "referenceId": sub.get("referenceId"),
        }

    def _limited(self, response: Response) -> Response:
        response.headers["Sforce-Limit-Info"] = f"api-usage={self.api_usage}/{self.daily_api_limit}"
        return response

    def _gate(self, request: Request, version: str) -> None:
        """Version, faults, auth and the daily allocation, in that order."""
        if not self._version_ok(version):
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        self._local.version = version
        if self.faults.take("server_error_burst"):
            raise ApiError(503, "SERVER_UNAVAILABLE", "Server unavailable (sandbox fault)")
        if self.faults.take("timeout_next"):
            time.sleep(self.faults.timeout_seconds)
        if self.faults.take("expire_session_next") or not self._authorised(request):
            raise ApiError(401, "INVALID_SESSION_ID", "Session expired or invalid")
        if self.faults.rate_limited():
            raise ApiError(
                429, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded (sandbox fault)."
            )
        with self._meter:
            if self.api_usage >= self.daily_api_limit:
                raise ApiError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            self.api_usage += 1

    def _authorised(self, request: Request) -> bool:
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() in ("bearer", "oauth") and credential.strip() in self._tokens

    def _base(self) -> str:
        return f"/services/data/v{self._local.version}"

    def _next_id(self, prefix: str) -> str:
        with self._meter:
            self._serial += 1
            return make_id(prefix, self._serial)

    # ------------------------------------------------------------------ misc resources

    def _version_ok(self, version: str) -> bool:
        """A version this sandbox serves (``62.0``; 404 otherwise, as Salesforce answers)."""
        try:
            number = float(version)
        except ValueError:
            return False
        return float(OLDEST_VERSION) <= number <= float(self.latest_version) and f"{number:.1f}" == version

    def _api_versions(self, request: Request) -> Response:
        """``GET /services/data/``: every version served, oldest first (Versions resource)."""
        versions = [
            {"label": _release(v), "url": f"/services/data/v{v:.1f}", "version": f"{v:.1f}"}
            for v in range(int(float(OLDEST_VERSION)), int(float(self.latest_version)) + 1)
        ]
        return _json(versions)

    def _resources(self, request: Request) -> Response:
        """``GET /services/data/vXX.X/``: the resources of that version (Resources by Version)."""
        base = self._base()
        names = ("composite", "jobs", "limits", "query", "queryAll", "sobjects")
        return _json({name: f"{base}/{name}" for name in names})

    def _limits(self, request: Request) -> Response:
        used = self.api_usage
        return _json({
            "DailyApiRequests": {"Max": self.daily_api_limit, "Remaining": max(0, self.daily_api_limit - used)},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": max(0, 10000 - self.bulk_jobs_created)},
            "DailyBulkV2QueryFileStorageMB": {"Max": 976562, "Remaining": 976562},
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
        })  # fmt: skip

    def _describe_global(self, request: Request) -> Response:
        objects = [
            {"name": d.name, "label": d.name, "keyPrefix": d.key_prefix, "queryable": True,
             "urls": {"sobject": f"{self._base()}/sobjects/{d.name}"}}
            for d in SOBJECTS.values()
        ]  # fmt: skip
        return _json({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": objects})

    def _describe(self, request: Request, sobject: str) -> Response:
        return _json(self.store.definition(sobject).describe())

    def _sobject_root(self, request: Request, sobject: str) -> Response:
        definition = self.store.definition(sobject)
        if request.method == "GET":
            info = definition.describe()
            info.pop("fields")
            return _json({"objectDescribe": info, "recentItems": []})
        fields = _body(request)
        if not isinstance(fields, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "Expected a JSON object")
        lock = self.faults.take("lock_error_next")
        record_id = self._create(definition.name, fields, lock)
        return _json({"id": record_id, "success": True, "errors": []}, 201)

    # ------------------------------------------------------------------ query

    def _query(self, request: Request) -> Response:
        return self._run_query(request, include_deleted=False)

    def _query_all(self, request: Request) -> Response:
        return self._run_query(request, include_deleted=True)

    def _run_query(self, request: Request, include_deleted: bool) -> Response:
        soql = request.args.get("q")
        if not soql:
            raise ApiError(400, "MALFORMED_QUERY", "A query string (q) is required")
        plan = compile_query(parse(soql), self.store)
        rows = self.store.run(plan, include_deleted)
        if plan.count_only:
            return _json({"totalSize": len(rows), "done": True, "records": []})
        cursor = _Cursor(plan, rows, _batch_size(request.headers.get("Sforce-Query-Options", "")))
        return _json(self._page(cursor, self._next_id("01g"), 0))

    def _page(self, cursor: _Cursor, locator: str, offset: int) -> dict[str, Any]:
        end = offset + cursor.batch
        chunk = cursor.rows[offset:end]
        base = self._base()
        page: dict[str, Any] = {
            "totalSize": len(cursor.rows),
            "done": end >= len(cursor.rows),
            "records": [cursor.plan.project(row, base) for row in chunk],
        }
        if not page["done"]:
            page["nextRecordsUrl"] = f"{base}/query/{locator}-{end}"
            with self._meter:
                self._cursors[locator] = cursor
                self._cursors.move_to_end(locator)
                while len(self._cursors) > MAX_OPEN_CURSORS:
                    self._cursors.popitem(last=False)
        return page

    def _query_more(self, request: Request, locator: str) -> Response:
        key, _, offset = locator.rpartition("-")
        with self._meter:
            cursor = self._cursors.get(key)
        if cursor is None or not offset.isdigit():
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return _json(self._page(cursor, key, int(offset)))

    # ------------------------------------------------------------------ replication

    def _updated(self, request: Request, sobject: str) -> Response:
        definition = self.store.definition(sobject)
        start, _end, latest = self._window(request, days=30)
        ids = self.store.updated_ids(definition.name, start, latest)
        if len(ids) > 600_000:
            raise ApiError(400, "EXCEEDED_ID_LIMIT", "ID limit exceeded; narrow the date range")
        return _json({"ids": ids, "latestDateCovered": to_wire(latest)})

    def _deleted(self, request: Request, sobject: str) -> Response:
        definition = self.store.definition(sobject)
        start, _end, latest = self._window(request, days=15)
        earliest = _minute(self.store.now() - timedelta(days=15))
        records = [
            {"id": rid, "deletedDate": to_wire(at)}
            for rid, at in self.store.deleted_log(definition.name)
            if start <= at < latest
        ]
        if len(records) > 600_000:
            raise ApiError(400, "EXCEEDED_ID_LIMIT", "ID limit exceeded; narrow the date range")
        return _json({
            "deletedRecords": records,
            "earliestDateAvailable": to_wire(earliest),
            "latestDateCovered": to_wire(latest),
        })  # fmt: skip

    def _window(self, request: Request, days: int) -> tuple[datetime, datetime, datetime]:
        """Parse start/end (seconds truncated); check the replication window."""
        try:
            start = _minute(parse_datetime(request.args["start"]))
            end = _minute(parse_datetime(request.args["end"]))
        except (KeyError, ValueError):
            raise ApiError(
                400, "INVALID_REPLICATION_DATE", "start and end must be ISO-8601 date-times"
            ) from None
        now = self.store.now()
        if start < _minute(now) - timedelta(days=days):
            raise ApiError(
                400, "INVALID_REPLICATION_DATE",
                f"startDate cannot be more than {days} days ago",
            )  # fmt: skip
        if end <= start:
            raise ApiError(
                400, "INVALID_REPLICATION_DATE", "EndDate must chronologically follow the StartDate"
            )
        return start, end, min(end, _minute(now))

    # ------------------------------------------------------------------ single records

    def _record(self, request: Request, sobject: str, record_id: str) -> Response:
        definition = self.store.definition(sobject)
        if request.method == "GET":
            return _json(self._record_json(definition.name, record_id, request.args.get("fields")))
        lock = self.faults.take("lock_error_next")
        if lock:
            raise _lock_error(record_id)
        if request.method == "DELETE":
            self.store.delete(definition.name, record_id)
            return Response(status=204)
        fields = _body(request)
        if not isinstance(fields, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "Expected a JSON object")
        self._check_faults(definition.name, fields, creating=False)
        self.store.update(definition.name, record_id, fields)
        return Response(status=204)

    def _record_json(self, sobject: str, record_id: str, fields: str | None) -> dict[str, Any]:
        current = self.store.get(sobject, record_id)
        if current is None:
            raise RecordError("NOT_FOUND", "The requested resource does not exist")
        if current["IsDeleted"]:
            raise RecordError("ENTITY_IS_DELETED", "entity is deleted")
        wanted = {f.strip().lower() for f in fields.split(",")} if fields else None
        out = record_attributes(sobject, current["Id"], self._base())
        for name, value in current.items():
            if wanted is None or name.lower() in wanted:
                out[name] = to_wire(value)
        return out

    def _by_external_id(self, request: Request, sobject: str, field: str, value: str) -> Response:
        definition = self.store.definition(sobject)
        fdef = definition.field(field)
        if fdef is None or not (fdef.external_id or fdef.name == "Id"):
            raise ApiError(
                404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {field}"
            )
        matches = self.store.find(definition.name, fdef.name, value)
        if len(matches) > 1:
            urls = [f"{self._base()}/sobjects/{definition.name}/{m}" for m in matches]
            return _json(urls, 300)
        if request.method == "GET":
            if not matches:
                raise RecordError("NOT_FOUND", "The requested resource does not exist")
            return _json(self._record_json(definition.name, matches[0], request.args.get("fields")))
        fields = _body(request)
        if not isinstance(fields, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "Expected a JSON object")
        lock = self.faults.take("lock_error_next")
        if matches:
            if lock:
                raise _lock_error(matches[0])
            self._check_faults(definition.name, fields, creating=False)
            self.store.update(definition.name, matches[0], fields)
            return Response(status=204)
        if request.args.get("updateOnly") == "true":
            raise RecordError("NOT_FOUND", "The requested resource does not exist")
        record_id = self._create(definition.name, {**fields, fdef.name: value}, lock)
        return _json({"id": record_id, "success": True, "errors": [], "created": True}, 201)

    def _create(self, sobject: str, fields: dict[str, Any], lock: bool) -> str:
        if lock:
            raise _lock_error(None)
        self._check_faults(sobject, fields, creating=True)
        return self.store.insert(sobject, fields)

    def _check_faults(self, sobject: str, fields: dict[str, Any], creating: bool) -> None:
        """Validation rules and duplicate rules configured through ``Faults``."""
        for name, value in fields.items():
            if name != "attributes" and value is not None and self.faults.rejects(name, value):
                raise RecordError(
                    "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                    f"{name}: value rejected by a validation rule: {value}",
                    [name],
                )
        if creating and sobject == "Lead":
            email = next((v for k, v in fields.items() if k.lower() == "email"), None)
            if self.faults.duplicate_email(email):
                raise RecordError(
                    "DUPLICATES_DETECTED",
                    "Use one of these records? You're creating a duplicate record.",
                )

    # ------------------------------------------------------------------ collections

    def _collections(self, request: Request) -> Response:
        if request.method == "DELETE":
            ids = [i for i in request.args.get("ids", "").split(",") if i]
            _check_size(len(ids))
            all_or_none = request.args.get("allOrNone", "false").lower() == "true"
            return _json(self._batch(ids, self._delete_one, all_or_none))
        records, all_or_none = self._collection_body(request)
        op = self._create_one if request.method == "POST" else self._update_one
        return _json(self._batch(records, op, all_or_none))

    def _collections_upsert(self, request: Request, sobject: str, field: str) -> Response:
        definition = self.store.definition(sobject)
        fdef = definition.field(field)
        if fdef is None or not (fdef.external_id or fdef.name == "Id"):
            raise ApiError(400, "INVALID_FIELD", f"Field {field} is not an external ID field", [field])
        records, all_or_none = self._collection_body(request)
        keys = Counter(_ext_key(r, fdef.name) for r in records)

        def upsert_one(record: dict[str, Any]) -> dict[str, Any]:
            return self._upsert_one(definition.name, fdef.name, record, keys)

        return _json(self._batch(records, upsert_one, all_or_none))

    def _collections_retrieve(self, request: Request, sobject: str) -> Response:
        definition = self.store.definition(sobject)
        if request.method == "POST":
            body = _body(request) or {}
            ids, fields = body.get("ids", []), ",".join(body.get("fields", []))
        else:
            ids = [i for i in request.args.get("ids", "").split(",") if i]
            fields = request.args.get("fields", "")
        if not fields:
            raise ApiError(400, "MISSING_ARGUMENT", "fields is required")
        out: list[dict[str, Any] | None] = []
        for record_id in ids:
            try:
                out.append(self._record_json(definition.name, record_id, fields))
            except RecordError:
                out.append(None)
        return _json(out)

    def _collection_body(self, request: Request) -> tuple[list[dict[str, Any]], bool]:
        body = _body(request)
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ApiError(400, "JSON_PARSER_ERROR", "records must be a list of objects")
        _check_size(len(records))
        return records, bool(body.get("allOrNone", False))

    def _batch(
        self, items: list[Any], op: Callable[[Any], dict[str, Any]], all_or_none: bool
    ) -> list[dict[str, Any]]:
        """Run ``op`` per item in one transaction; per-record errors; allOrNone rollback."""
        lock = self.faults.take("lock_error_next")
        results: list[dict[str, Any]] = []
        with self.store.atomic() as rollback:
            for item in items:
                try:
                    if lock:
                        raise _lock_error(item if isinstance(item, str) else item.get("id"))
                    results.append(op(item))
                except RecordError as exc:
                    results.append(_failure(exc, item if isinstance(item, str) else None))
            if all_or_none and any(not r["success"] for r in results):
                rollback()
                results = [r if not r["success"] else _failure(ROLLED_BACK, None, r) for r in results]
        return results

    def _create_one(self, record: dict[str, Any]) -> dict[str, Any]:
        sobject = _record_type(record)
        record_id = self._create(sobject, _fields(record), lock=False)
        return {"id": record_id, "success": True, "errors": []}

    def _update_one(self, record: dict[str, Any]) -> dict[str, Any]:
        record_id = record.get("id") or record.get("Id")
        if not record_id:
            raise RecordError("MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
        definition = self._type_for(record, record_id)
        fields = {k: v for k, v in _fields(record).items() if k.lower() != "id"}
        self._check_faults(definition, fields, creating=False)
        self.store.update(definition, record_id, fields)
        return {"id": full_id(record_id), "success": True, "errors": []}

    def _upsert_one(
        self, sobject: str, field: str, record: dict[str, Any], keys: Counter[Any]
    ) -> dict[str, Any]:
        if _record_type(record, sobject).lower() != sobject.lower():
            raise RecordError("INVALID_TYPE", "All records must be of the type in the URL")
        key = _ext_key(record, field)
        if key is None:
            raise RecordError("MISSING_ARGUMENT", f"{field} not specified", [field])
        if keys[key] > 1:
            raise RecordError("DUPLICATE_EXTERNAL_ID", f"Duplicate external id specified: {key}", [field])
        matches = self.store.find(sobject, field, key)
        if len(matches) > 1:
            raise RecordError(
                "DUPLICATE_EXTERNAL_ID", f"{field}: more than one record found for {key}", [field]
            )
        fields = _fields(record)
        if matches:
            self._check_faults(sobject, fields, creating=False)
            self.store.update(sobject, matches[0], fields)
            return {"id": matches[0], "success": True, "errors": [], "created": False}
        record_id = self._create(sobject, fields, lock=False)
        return {"id": record_id, "success": True, "errors": [], "created": True}

    def _delete_one(self, record_id: str) -> dict[str, Any]:
        definition = sobject_name_for(record_id)
        self.store.delete(definition, record_id)
        return {"id": full_id(record_id), "success": True, "errors": []}

    def _type_for(self, record: dict[str, Any], record_id: str) -> str:
        declared = (record.get("attributes") or {}).get("type")
        return declared or sobject_name_for(record_id)

    # ------------------------------------------------------------------ Bulk API 2.0 query

    def _bulk_jobs(self, request: Request) -> Response:
        """``/jobs/query``: POST creates a query job, GET lists them (1,000 a page)."""
        if request.method == "GET":
            return self._bulk_list(request)
        body = _body(request)
        if not isinstance(body, dict) or body.get("operation") not in ("query", "queryAll"):
            raise ApiError(400, "INVALIDJOB", "operation must be query or queryAll")
        plan = compile_query(parse(str(body.get("query", ""))), self.store)
        if plan.count_only:
            raise ApiError(400, "INVALIDJOB", "COUNT() is not supported in Bulk API 2.0 queries")
        rows = self.store.run(plan, include_deleted=body["operation"] == "queryAll")
        job_id = self._next_id("750")
        now = to_wire(self.store.now())
        info = {
            "id": job_id, "operation": body["operation"], "object": plan.sobject.name,
            "createdById": self.store.integration_user_id, "createdDate": now, "systemModstamp": now,
            "state": "UploadComplete", "concurrencyMode": "Parallel", "contentType": "CSV",
            "apiVersion": float(self._local.version), "lineEnding": body.get("lineEnding", "LF"),
            "columnDelimiter": body.get("columnDelimiter", "COMMA"),
        }  # fmt: skip
        if info["columnDelimiter"] not in _DELIMITERS or info["lineEnding"] not in ("LF", "CRLF"):
            raise ApiError(400, "INVALIDJOB", "columnDelimiter or lineEnding: not a supported value")
        delimiter = _DELIMITERS.get(str(info["columnDelimiter"]), ",")
        line_ending = "\r\n" if info["lineEnding"] == "CRLF" else "\n"
        with self._meter:
            ready_at = time.monotonic() + self.faults.bulk_job_delay()
            self._jobs[job_id] = _Job(dict(info), plan, rows, delimiter, line_ending, ready_at)
            self.bulk_jobs_created += 1
        return _json(info)

    def _bulk_list(self, request: Request) -> Response:
        """Get Information About All Query Jobs: ``done``, ``records`` and, while more remain,
        ``nextRecordsUrl`` (``?queryLocator=``); filters ``jobType``, ``concurrencyMode``,
        ``isPkChunkingEnabled`` (Bulk API 1 only: no job here has it)."""
        args = request.args
        locator = args.get("queryLocator")
        offset = 0
        if locator is not None:
            serial, _, start = locator.rpartition("-")
            if serial != _JOBS_LOCATOR or not start.isdigit():
                raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            offset = int(start)
        with self._meter:
            infos = [dict(job.info) for job in self._jobs.values()]
        wanted_type = args.get("jobType")
        if wanted_type not in (None, "Classic", "V2Query", "V2Ingest"):
            raise ApiError(400, "INVALIDJOB", f"jobType: unknown value {wanted_type}")
        if wanted_type in ("Classic", "V2Ingest") or args.get("isPkChunkingEnabled") == "true":
            infos = []
        mode = args.get("concurrencyMode")
        if mode is not None:
            infos = [i for i in infos if str(i["concurrencyMode"]).lower() == mode.lower()]
        page: dict[str, Any] = {"done": offset + JOBS_PAGE >= len(infos), "records": []}
        for info in infos[offset : offset + JOBS_PAGE]:
            page["records"].append({**info, "jobType": "V2Query"})
        if not page["done"]:
            page["nextRecordsUrl"] = (
                f"{self._base()}/jobs/query?queryLocator={_JOBS_LOCATOR}-{offset + JOBS_PAGE}"
            )
        return _json(page)

    def _bulk_job(self, request: Request, job_id: str) -> Response:
        job = self._job(job_id)
        if request.method == "DELETE":
            with self._meter:
                self._jobs.pop(job_id, None)
            return Response(status=204)
        if request.method == "PATCH":
            job.info["state"] = "Aborted"
        elif job.info["state"] in ("UploadComplete", "InProgress"):
            job.info["state"] = "JobComplete" if time.monotonic() >= job.ready_at else "InProgress"
        return _json({**job.info, "jobType": "V2Query", "numberRecordsProcessed": len(job.rows),
                      "retries": 0, "totalProcessingTime": 0})  # fmt: skip

    def _bulk_results(self, request: Request, job_id: str) -> Response:
        job = self._job(job_id)
        if job.info["state"] != "JobComplete":
            job.info["state"] = "JobComplete"
        offset = int(request.args.get("locator") or 0)
        size = max(1, int(request.args.get("maxRecords") or 50_000))
        chunk = job.rows[offset : offset + size]
        out = io.StringIO()
        writer = csv.writer(
            out, delimiter=job.delimiter, lineterminator=job.line_ending, quoting=csv.QUOTE_ALL
        )
        writer.writerow(job.plan.header())
        for row in chunk:
            writer.writerow([_csv_value(v) for v in job.plan.flat(row)])
        end = offset + size
        headers = {
            "Sforce-Locator": str(end) if end < len(job.rows) else "null",
            "Sforce-NumberOfRecords": str(len(chunk)),
        }
        return Response(out.getvalue(), 200, headers=headers, mimetype="text/csv")

    def _job(self, job_id: str) -> _Job:
        with self._meter:
            job = self._jobs.get(job_id)
        if job is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return job

    # ------------------------------------------------------------------ OAuth

    def _oauth_token(self, request: Request) -> Response:
        form = request.form
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if request.authorization and request.authorization.type == "basic":
            client_id = request.authorization.username
            client_secret = request.authorization.password
        grant = form.get("grant_type")
        if grant == JWT_GRANT:
            refused = self._check_assertion(form.get("assertion") or "")
            if refused is not None:
                return refused
        elif grant not in ("client_credentials", "refresh_token", "password"):
            return _json(
                {"error": "unsupported_grant_type", "error_description": "grant type not supported"}, 400
            )
        elif client_id != self.client_id or (
            grant in ("client_credentials", "password") and client_secret != self.client_secret
        ):
            return _json({"error": "invalid_client", "error_description": "invalid client credentials"}, 400)
        elif grant == "refresh_token" and form.get("refresh_token") != self.refresh_token:
            return _json({"error": "invalid_grant", "error_description": "expired access/refresh token"}, 400)
        elif grant == "password" and (
            form.get("username") != self.username
            or form.get("password") != self.password + self.security_token
        ):
            return _json({"error": "invalid_grant", "error_description": "authentication failure"}, 400)
        token = "00D5g0000000001!" + secrets.token_urlsafe(24)
        with self._meter:
            self._tokens.add(token)
        issued_at = str(int(time.time() * 1000))
        identity = f"{self.instance_url}/id/00D5g0000000001EAA/{self.store.integration_user_id}"
        digest = hmac.new(self.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256)
        return _json({
            "access_token": token, "instance_url": self.instance_url, "id": identity,
            "token_type": "Bearer", "issued_at": issued_at, "scope": "api",
            "signature": base64.b64encode(digest.digest()).decode(),
        })  # fmt: skip

    def _check_assertion(self, assertion: str) -> Response | None:
        """Verify a JWT bearer assertion (RS256, iss, sub, aud, exp); None when valid."""

        def refuse(error: str, description: str) -> Response:
            return _json({"error": error, "error_description": description}, 400)

        if self.jwt_public_key is None:
            return refuse("invalid_client_id", "client identifier invalid")
        try:
            claims = jwt.decode(
                assertion,
                self.jwt_public_key,
                algorithms=["RS256"],
                audience=(self.instance_url or "").rstrip("/"),
                issuer=self.client_id,
                options={"require": ["iss", "sub", "aud", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            return refuse("invalid_grant", "expired authorization code")
        except jwt.InvalidAudienceError:
            return refuse("invalid_grant", "audience is invalid")
        except jwt.InvalidIssuerError:
            return refuse("invalid_client_id", "client identifier invalid")
        except (jwt.PyJWTError, ValueError):
            return refuse("invalid_grant", "invalid assertion")
        if claims.get("sub") != self.username:
            return refuse("invalid_grant", "user hasn't approved this consumer")
        return None

    # ------------------------------------------------------------------ admin

    def _admin_state(self, request: Request) -> Response:
        return _json({
            "counts": self.store.counts(), "api_usage": self.api_usage,
            "daily_api_limit": self.daily_api_limit, "faults": self.faults.snapshot(),
            "calls": dict(self.calls), "open_cursors": len(self._cursors), "bulk_jobs": len(self._jobs),
        })  # fmt: skip

    def _admin_faults(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                self.faults.merge(_body(request) or {})
            except (ValueError, TypeError, AttributeError) as exc:
                return _json({"error": str(exc)}, 400)
        return _json(self.faults.snapshot())

    def _admin_calls(self, request: Request) -> Response:
        with self._meter:
            return _json(dict(self.calls))


# ---------------------------------------------------------------------- helpers


def _minute(value: datetime) -> datetime:
    return value.replace(second=0, microsecond=0)


def _error_response(exc: ApiError | SoqlError | RecordError) -> Response:
    """A whole-request failure as Salesforce answers it: status and an error array."""
    if isinstance(exc, ApiError):
        return _json(exc.body, exc.status)
    if isinstance(exc, SoqlError):
        return _json([{"message": exc.message, "errorCode": exc.error_code}], 400)
    status = 404 if exc.status_code in ("NOT_FOUND", "ENTITY_IS_DELETED") else 400
    return _json([{"message": exc.message, "errorCode": exc.status_code, "fields": exc.fields}], status)


def _heavy(url: str) -> bool:
    """A Composite subrequest that counts toward the 5 queries or collections."""
    path = url.partition("?")[0]
    return "/query" in path or "/composite/sobjects" in path


def _sub_failed(result: dict[str, Any]) -> bool:
    """A subrequest that failed: an HTTP error, or a collection with a failed record."""
    if int(result["httpStatusCode"]) >= 400:
        return True
    body = result.get("body")
    return isinstance(body, list) and any(isinstance(r, dict) and r.get("success") is False for r in body)


def _halted(result: dict[str, Any]) -> dict[str, Any]:
    """A subrequest rolled back (or never run) because another one failed under allOrNone."""
    return {
        "body": [{"errorCode": "PROCESSING_HALTED", "message": HALTED}],
        "httpHeaders": {},
        "httpStatusCode": 400,
        "referenceId": result.get("referenceId"),
    }


def _release(version: float) -> str:
    """The release label of a REST API version: 42.0 is Spring '18, then three a year."""
    n = int(version) - 42
    return f"{('Spring', 'Summer', 'Winter')[n % 3]} '{18 + (n + 1) // 3}"


def _batch_size(options: str) -> int:
    match = re.search(r"batchSize\s*=\s*(\d+)", options)
    return DEFAULT_BATCH if not match else min(2000, max(200, int(match.group(1))))


def _check_size(count: int) -> None:
    if count > MAX_COLLECTION:
        raise ApiError(
            400, "EXCEEDED_ID_LIMIT",
            f"Maximum number of records allowed per request is {MAX_COLLECTION}; got {count}",
        )  # fmt: skip


def _lock_error(record_id: str | None) -> RecordError:
    target = f": {record_id}" if record_id else ""
    return RecordError(
        "UNABLE_TO_LOCK_ROW", f"unable to obtain exclusive access to this record or 1 records{target}"
    )


def _failure(
    exc: RecordError, record_id: str | None, previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    result: dict[str, Any] = {"success": False, "errors": [exc.as_error()]}
    if record_id is not None:
        result = {"id": record_id, **result}
    if previous is not None and "created" in previous:
        result["created"] = False
    return result


def _record_type(record: dict[str, Any], default: str | None = None) -> str:
    declared = (record.get("attributes") or {}).get("type") or default
    if not declared or sobject(str(declared)) is None:
        raise RecordError("INVALID_TYPE", "Each record needs a valid attributes.type")
    return str(declared)


def _fields(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "attributes"}


def _ext_key(record: dict[str, Any], field: str) -> Any:
    for key, value in record.items():
        if key.lower() == field.lower():
            return value
    return None


def sobject_name_for(record_id: str) -> str:
    """The sObject an Id belongs to, by key prefix."""
    definition = sobject_for_id(str(record_id))
    if definition is None:
        raise RecordError("MALFORMED_ID", f"malformed id {record_id}")
    return definition.name


def _custom_field(name: str, item: ET.Element) -> FieldDef:
    """A CustomField component as the sandbox's field definition."""

    def text(tag: str) -> str:
        return (item.findtext(f"{{{_MD}}}{tag}") or "").strip()

    kind = text("type")
    types = {"Text": "string", "TextArea": "textarea", "LongTextArea": "textarea", "Number": "double",
             "Checkbox": "boolean", "Email": "email", "Phone": "phone", "Date": "date", "DateTime": "datetime",
             "Picklist": "picklist"}  # fmt: skip
    if kind == "Picklist":
        return _picklist_field(name, item)
    if kind not in types:
        raise RecordError("FIELD_INTEGRITY_EXCEPTION", f"Unsupported field type: {kind or '(none)'}")
    length = int(text("length") or 0)
    if kind == "TextArea":
        length = 255
    if kind in ("Text", "LongTextArea") and not length:
        raise RecordError("FIELD_INTEGRITY_EXCEPTION", "Length: You must enter a value")
    if kind == "Number" and not text("precision"):
        raise RecordError("FIELD_INTEGRITY_EXCEPTION", "Length: You must enter a value")
    return FieldDef(
        name,
        types[kind],
        length,
        label=text("label"),
        external_id=text("externalId") == "true",
        unique=text("unique") == "true",
        custom=True,
        default=False if kind == "Checkbox" else None,
    )


def _picklist_field(name: str, item: ET.Element) -> FieldDef:
    """A Picklist CustomField: ``valueSet`` (``restricted``, ``valueSetDefinition.value``
    with ``fullName``, ``label`` and ``default`` each)."""
    value_set = item.find(f"{{{_MD}}}valueSet")
    values = [] if value_set is None else value_set.findall(f"{{{_MD}}}valueSetDefinition/{{{_MD}}}value")
    names = [(v.findtext(f"{{{_MD}}}fullName") or "").strip() for v in values]
    if not names or not all(names):
        raise RecordError("FIELD_INTEGRITY_EXCEPTION", "Values: You must enter at least one picklist value")
    if len({n.lower() for n in names}) < len(names):
        raise RecordError("DUPLICATE_VALUE", "Picklist values must be unique")
    defaults = [n for n, v in zip(names, values, strict=True) if v.findtext(f"{{{_MD}}}default") == "true"]
    restricted = value_set is not None and value_set.findtext(f"{{{_MD}}}restricted") == "true"
    return FieldDef(
        name,
        "picklist",
        255,
        label=(item.findtext(f"{{{_MD}}}label") or "").strip(),
        picklist=tuple(names),
        picklist_labels=tuple(
            (v.findtext(f"{{{_MD}}}label") or n).strip() for n, v in zip(names, values, strict=True)
        ),
        default=defaults[0] if defaults else None,
        custom=True,
        restricted=restricted,
    )


def _soap_fault(faultcode: str, code: str, message: str) -> Response:
    body = (
        f'<soapenv:Fault><faultcode xmlns:sf="{_MD}">{escape(faultcode)}</faultcode>'
        f"<faultstring>{escape(code)}: {escape(message)}</faultstring></soapenv:Fault>"
    )
    return _soap(body, 500)


def _soap_response(operation: str, results: list[dict[str, Any]]) -> Response:
    parts = []
    for result in results:
        errors = "".join(
            f"<errors><message>{escape(e.message)}</message><statusCode>{e.status_code}</statusCode></errors>"
            for e in result["errors"]
        )
        success = "true" if result["success"] else "false"
        parts.append(
            f"<result>{errors}<fullName>{escape(result['fullName'])}</fullName><success>{success}</success></result>"
        )
    return _soap(f'<{operation} xmlns="{_MD}">{"".join(parts)}</{operation}>', 200)


def _soap(body: str, status: int) -> Response:
    doc = (
        f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{_SOAP}">'
        f"<soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
    )
    return Response(doc, status, content_type="text/xml; charset=utf-8")


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
