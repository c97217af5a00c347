"""HubSpot sandbox: a Werkzeug WSGI app speaking HubSpot's REST wire formats.

Serves the subset of the CRM v3/v4, Events v3 and legacy email-events APIs (and their
date-versioned 2026-03 / 2026-09 paths, exactly as the published specs list them) that the
connector uses, on top of a :class:`~connectors.hubspot.sandbox.store.HubSpotStore`.
Point the official SDK at it with ``HubSpot(access_token=token, host=base_url)``.
Admin endpoints under ``/__sandbox/`` (no auth, not counted) let other processes steer it.
``POST /oauth/v1/token`` (``grant_type=refresh_token``) issues short-lived OAuth access
tokens when the sandbox is given a client id, secret and refresh token.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from connectors.hubspot.sandbox.faults import Faults, Injected
from connectors.hubspot.sandbox.store import (
    ASSOCIATION_PAGE,
    JSON,
    SINGULAR,
    HubSpotError,
    HubSpotStore,
    WriteInput,
    WriteOutcome,
    iso,
    object_type_name,
    parse_time,
    property_error,
    validation_error,
)
from connectors.sandbox_server import RunningServer, serve

logging.getLogger("werkzeug").setLevel(logging.ERROR)

BATCH_LIMIT = 100  # object batch endpoints: more inputs is a 400
ASSOCIATION_BATCH_LIMIT = 1000  # v4 association batch read: more inputs is a 400
ASSOCIATION_CREATE_LIMIT = 2000  # v4 association batch create: more inputs is a 400
LIST_LIMIT = 100  # object list pages: a larger limit is served as 100
OWNERS_LIMIT = 500  # owners pages: a larger limit is served as 500
AUTH_MESSAGE = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you "
    "can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)
EXPIRED_MESSAGE = (
    "The OAuth token used to make this call expired {ago} second(s) ago. Refresh the token and try again."
)
_FAULT_BODIES = {
    423: ("LOCKED", "The resource is locked by another request; locks last for 2 seconds."),
    502: ("BAD_GATEWAY", "Bad Gateway: the request could not be processed in time."),
    503: ("SERVICE_UNAVAILABLE", "Service Unavailable. Please retry shortly."),
    504: ("GATEWAY_TIMEOUT", "Gateway Timeout: the request took too long to process."),
}


#: Date versions HubSpot publishes specs for: the sandbox serves exactly these.
SPEC_VERSIONS = ("2026-03", "2026-09")
_V = "<any(" + ",".join(f'"{v}"' for v in SPEC_VERSIONS) + "):version>"


def _object_rules(obj: str) -> list[tuple[str, str, str]]:
    return [
        ("GET", obj, "list_objects"),
        ("POST", obj, "create_object"),
        ("GET", f"{obj}/<objectId>", "get_object"),
        ("PATCH", f"{obj}/<objectId>", "update_object"),
        ("DELETE", f"{obj}/<objectId>", "archive_object"),
        ("POST", f"{obj}/search", "search"),
        *(
            ("POST", f"{obj}/batch/{op}", f"batch_{op}")
            for op in ("read", "create", "update", "upsert", "archive")
        ),
    ]


def _rules() -> list[Rule]:
    """Every path served: the SDK's v3/v4 paths, and the date-versioned paths exactly as
    HubSpot's published specs (2026-03, 2026-09) list them. Anything else is a 404."""
    table: list[tuple[str, str, str]] = []
    for objects, associations, properties, owners, events in (
        ("/crm/v3/objects", "/crm/v4/associations", "/crm/v3/properties", "/crm/v3/owners", "/events/v3/events"),
        (f"/crm/objects/{_V}", f"/crm/associations/{_V}", f"/crm/properties/{_V}", f"/crm/owners/{_V}",
         f"/events/event-occurrences/{_V}"),
    ):  # fmt: skip
        per_record = ("/crm/v4/objects" if objects.startswith("/crm/v3") else objects) + "/<fromObjectType>"
        per_record += "/<fromObjectId>/associations"
        props = f"{properties}/<objectType>"
        table += _object_rules(f"{objects}/<objectType>")
        table += [
            ("POST", f"{objects}/contacts/merge", "merge"),
            ("POST", f"{associations}/<fromObjectType>/<toObjectType>/batch/read", "assoc_read"),
            ("POST", f"{associations}/<fromObjectType>/<toObjectType>/batch/associate/default", "assoc_batch_default"),
            ("GET", f"{per_record}/<toObjectType>", "assoc_list"),
            ("PUT", f"{per_record}/default/<toObjectType>/<toObjectId>", "assoc_default"),
            ("GET", props, "properties"),
            ("POST", props, "create_property"),
            ("POST", f"{props}/batch/create", "create_properties"),
            ("GET", f"{props}/groups", "groups"),
            ("POST", f"{props}/groups", "create_group"),
            ("GET", f"{props}/<propertyName>", "property"),
            ("PATCH", f"{props}/<propertyName>", "update_property"),
            ("GET", owners, "owners"),
            ("GET", f"{owners}/<ownerId>", "owner"),
            ("GET", events, "events"),
        ]  # fmt: skip
    table.append(("GET", "/email/public/v1/events", "email_events"))  # legacy v1: no date version
    return [Rule(path, methods=[method], endpoint=name) for method, path, name in table]


def _correlation_id() -> str:
    return str(uuid.uuid4())


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response."""
    text = json.dumps(body, separators=(",", ":"))
    return Response(text, status=status, mimetype="application/json", headers=headers)


def error_response(err: HubSpotError, headers: dict[str, str] | None = None) -> Response:
    """HubSpot's standard error body with a fresh correlation id."""
    return json_response(err.body(_correlation_id()), err.status, headers)


# --------------------------------------------------------------------------- rate limits


@dataclass
class _Admission:
    policy: str | None  # None: admitted
    retry_after: int
    headers: dict[str, str]


class RateLimiter:
    """Rolling 10-second window and daily count (non-search), 1-second window for search."""

    def __init__(self, per_interval: int, interval_ms: int, daily: int, search_per_second: int) -> None:
        self.per_interval, self.interval_ms = per_interval, interval_ms
        self.daily, self.search_per_second = daily, search_per_second
        self._window: deque[float] = deque()
        self._search: deque[float] = deque()
        self._day = datetime.now(UTC).date()
        self._day_count = 0
        self._lock = threading.Lock()

    def admit(self, search: bool, enforce: bool, daily_limit: int | None) -> _Admission:
        """Count a request and decide whether a limit rejects it."""
        with self._lock:
            now = time.monotonic()
            self._roll_day()
            daily = daily_limit if daily_limit is not None else self.daily
            if (enforce or daily_limit is not None) and self._day_count >= daily:
                return _Admission("DAILY", 0, self._headers(daily))
            if search:
                return self._admit_search(now, enforce)
            _prune(self._window, now - self.interval_ms / 1000)
            if enforce and len(self._window) >= self.per_interval:
                wait = self._window[0] + self.interval_ms / 1000 - now
                return _Admission("TEN_SECONDLY_ROLLING", max(1, math.ceil(wait)), self._headers(daily))
            self._window.append(now)
            self._day_count += 1
            return _Admission(None, 0, self._headers(daily))

    def _admit_search(self, now: float, enforce: bool) -> _Admission:
        _prune(self._search, now - 1)
        if enforce and len(self._search) >= self.search_per_second:
            return _Admission("SECONDLY", 1, {})
        self._search.append(now)
        self._day_count += 1
        return _Admission(None, 0, {})

    def headers(self, daily_limit: int | None) -> dict[str, str]:
        """Current headers without counting a request."""
        with self._lock:
            _prune(self._window, time.monotonic() - self.interval_ms / 1000)
            return self._headers(daily_limit if daily_limit is not None else self.daily)

    def _headers(self, daily: int) -> dict[str, str]:
        return {
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(self.interval_ms),
            "X-HubSpot-RateLimit-Max": str(self.per_interval),
            "X-HubSpot-RateLimit-Remaining": str(max(0, self.per_interval - len(self._window))),
            "X-HubSpot-RateLimit-Daily": str(daily),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, daily - self._day_count)),
        }

    def _roll_day(self) -> None:
        today = datetime.now(UTC).date()
        if today != self._day:
            self._day, self._day_count = today, 0


def _prune(window: deque[float], cutoff: float) -> None:
    while window and window[0] <= cutoff:
        window.popleft()


def rate_limit_response(policy: str, retry_after: int, headers: dict[str, str]) -> Response:
    """HubSpot's 429 body for a policy (TEN_SECONDLY_ROLLING, SECONDLY, DAILY)."""
    names = {
        "TEN_SECONDLY_ROLLING": "ten_secondly_rolling",
        "SECONDLY": "secondly",
        "DAILY": "daily",
    }
    body = {
        "status": "error",
        "message": f"You have reached your {names[policy]} limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": _correlation_id(),
        "policyName": policy,
        "requestId": _correlation_id(),
    }
    if policy != "DAILY":  # a daily Retry-After would make urllib3 sleep until midnight
        headers = {**headers, "Retry-After": str(retry_after)}
    return json_response(body, 429, headers)


# --------------------------------------------------------------------------- request helpers


def _list_param(request: Request, name: str) -> list[str]:
    """A comma-separated and/or repeated query parameter."""
    return [p.strip() for v in request.args.getlist(name) for p in v.split(",") if p.strip()]


def _bool_param(request: Request, name: str) -> bool:
    return request.args.get(name, "false").lower() == "true"


def _int_param(request: Request, name: str, default: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise validation_error(f"{name} must be an integer, got {raw!r}") from None
    if value < 1:
        raise validation_error(f"{name} must be positive")
    return min(value, maximum)


def _body(request: Request) -> JSON:
    data = request.get_json(silent=True, force=True)
    if not isinstance(data, dict):
        raise validation_error("Invalid input JSON on line 1: expected an object")
    return data


def _inputs(body: JSON, limit: int) -> list[JSON]:
    inputs = body.get("inputs")
    if not isinstance(inputs, list):
        raise validation_error("inputs is required and must be a list")
    if len(inputs) > limit:
        raise validation_error(f"Batch size limit exceeded: {len(inputs)} inputs, max {limit}")
    return [i if isinstance(i, dict) else {"id": i} for i in inputs]


def _stringify(properties: Any) -> dict[str, str | None]:
    if not isinstance(properties, dict):
        raise validation_error("properties must be an object")
    out: dict[str, str | None] = {}
    for name, value in properties.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        out[str(name)] = None if value is None else str(value)
    return out


def _paging(request: Request, after: str | None) -> JSON:
    if after is None:
        return {}
    link = f"{request.base_url}?{_with_after(request, after)}"
    return {"paging": {"next": {"after": after, "link": link}}}


def _with_after(request: Request, after: str) -> str:
    from urllib.parse import urlencode

    args = [(k, v) for k, v in request.args.items(multi=True) if k != "after"]
    return urlencode([*args, ("after", after)])


# --------------------------------------------------------------------------- the sandbox


Handler = Callable[..., Response]


class HubSpotSandbox:
    """The HubSpot API emulator: a WSGI app plus start/stop on a loopback server."""

    def __init__(
        self,
        store: HubSpotStore,
        token: str = "sandbox-hubspot-token",
        faults: Faults | None = None,
        latency_ms: float = 0,
        enforce_rate_limits: bool = False,
        *,
        rate_limit_max: int = 190,
        interval_ms: int = 10_000,
        daily_limit: int = 1_000_000,
        search_per_second: int = 5,
        client_id: str | None = None,
        client_secret: str | None = None,
        refresh_token: str | None = None,
        token_ttl_seconds: float = 1800,
    ) -> None:
        self.store = store
        self.token = token
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.token_ttl_seconds = token_ttl_seconds
        #: OAuth access tokens issued by ``/oauth/v1/token`` -> expiry (monotonic seconds).
        self.issued_tokens: dict[str, float] = {}
        self.faults = faults or Faults()
        self.latency_ms = latency_ms
        self.enforce_rate_limits = enforce_rate_limits
        self.limiter = RateLimiter(rate_limit_max, interval_ms, daily_limit, search_per_second)
        self.calls: Counter[str] = Counter()
        self.url_map = Map(_rules(), strict_slashes=False)
        self._lock = threading.Lock()
        self._call_number = 0
        self._running: RunningServer | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
        """Serve on ``host:port`` (0: any free port) on a background thread."""
        if self._running is not None:
            raise RuntimeError("sandbox already running")
        self._running = serve(self, host, port)
        return self._running

    def stop(self) -> None:
        """Stop the server if running."""
        if self._running is not None:
            self._running.stop()
            self._running = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` of the running server."""
        if self._running is None:
            raise RuntimeError("sandbox is not running; call start() first")
        return self._running.url

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        response = self.dispatch(request)
        return response(environ, start_response)

    # ----------------------------------------------------------------- dispatch

    def dispatch(self, request: Request) -> Response:
        """Answer one request (admin, fault, rate limit or API)."""
        if request.path.startswith("/__sandbox/"):
            return self._admin(request)
        delay = self.faults.latency_seconds(self.latency_ms)
        if delay:
            time.sleep(delay)
        if request.path.rstrip("/") == "/oauth/v1/token":
            return self._oauth_token(request)
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            rule, matched = adapter.match(return_rule=True)
        except NotFound:
            return error_response(HubSpotError(404, "OBJECT_NOT_FOUND", f"Not found: {request.path}"))
        except MethodNotAllowed:
            return error_response(HubSpotError(405, "METHOD_NOT_ALLOWED", f"{request.method} not allowed"))
        args = {k: v for k, v in matched.items() if k != "version"}
        number = self._count(request.method, request.path.rstrip("/"), rule.rule, args)
        search = rule.endpoint == "search"
        refused = self._refuse(request, number, search)
        if refused is not None:
            return refused
        admission = self.limiter.admit(search, self.enforce_rate_limits, self.faults.daily_limit)
        if admission.policy is not None:
            return rate_limit_response(admission.policy, admission.retry_after, admission.headers)
        handler: Handler = getattr(self, f"_{rule.endpoint}")
        try:
            response = handler(request, **args)
        except HubSpotError as err:
            response = error_response(err)
        response.headers.extend(admission.headers)
        return response

    def _count(self, method: str, path: str, template: str, args: Mapping[str, Any]) -> int:
        """Count a call as ``METHOD /path`` with record ids, names and values as ``{name}``."""
        ids = {
            f"/{v}": "/{" + n + "}" for n, v in args.items() if not ("ObjectType" in n or n == "objectType")
        }
        key = "/".join(ids.get(f"/{part}", part) for part in path.split("/")) if ids else path
        with self._lock:
            self.calls[f"{method} {key}"] += 1
            self._call_number += 1
            return self._call_number

    def _refuse(self, request: Request, number: int, search: bool) -> Response | None:
        """401 for a bad token, else an injected fault, else None."""
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not credential:
            return self._unauthorized()
        if credential != self.token:
            with self._lock:
                expires = self.issued_tokens.get(credential)
            if expires is None:
                return self._unauthorized()
            if time.monotonic() >= expires:
                return self._expired(time.monotonic() - expires)
        injected = self.faults.decide(number)
        return None if injected is None else self._injected(injected, search)

    def _unauthorized(self) -> Response:
        body = {
            "status": "error",
            "message": AUTH_MESSAGE,
            "correlationId": _correlation_id(),
            "category": "INVALID_AUTHENTICATION",
        }
        return json_response(body, 401)

    def _expired(self, ago: float) -> Response:
        body = {
            "status": "error",
            "message": EXPIRED_MESSAGE.format(ago=int(ago)),
            "correlationId": _correlation_id(),
            "category": "EXPIRED_AUTHENTICATION",
            "context": {"expired": ["true"]},
        }
        return json_response(body, 401)

    # ----------------------------------------------------------------- OAuth

    def _oauth_token(self, request: Request) -> Response:
        """``POST /oauth/v1/token``: the refresh-token grant (form-encoded)."""
        with self._lock:
            self.calls[f"{request.method} /oauth/v1/token"] += 1
        if request.method != "POST":
            return error_response(HubSpotError(405, "METHOD_NOT_ALLOWED", f"{request.method} not allowed"))
        form = request.form
        if form.get("grant_type") != "refresh_token":
            return _oauth_error("BAD_GRANT_TYPE", "missing or unsupported grant_type")
        if self.client_id is None or form.get("client_id") != self.client_id:
            return _oauth_error("BAD_CLIENT_ID", "missing or invalid client_id")
        if form.get("client_secret") != self.client_secret:
            return _oauth_error("BAD_CLIENT_SECRET", "missing or invalid client_secret")
        if self.refresh_token is None or form.get("refresh_token") != self.refresh_token:
            return _oauth_error("BAD_REFRESH_TOKEN", "missing or invalid refresh token")
        token = "CN" + secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self.issued_tokens = {t: e for t, e in self.issued_tokens.items() if e > now - 3600}
            self.issued_tokens[token] = now + self.token_ttl_seconds
        return json_response({
            "token_type": "bearer", "refresh_token": self.refresh_token,
            "access_token": token, "expires_in": int(self.token_ttl_seconds),
        })  # fmt: skip

    def expire_issued_tokens(self) -> None:
        """Make every issued OAuth access token expired now (the static token stays valid)."""
        with self._lock:
            now = time.monotonic()
            self.issued_tokens = dict.fromkeys(self.issued_tokens, now)

    def _injected(self, fault: Injected, search: bool) -> Response:
        if fault.kind == "unauthorized":
            return self._unauthorized()
        if fault.kind == "rate_limit":
            headers = {} if search else self.limiter.headers(self.faults.daily_limit)
            headers["X-HubSpot-RateLimit-Remaining"] = "0" if not search else ""
            headers = {k: v for k, v in headers.items() if v}
            return rate_limit_response("TEN_SECONDLY_ROLLING", self.faults.retry_after(), headers)
        category, message = _FAULT_BODIES[fault.status]
        retry = {"Retry-After": "2"} if fault.status == 423 else {}
        return error_response(HubSpotError(fault.status, category, message), retry)

    # ----------------------------------------------------------------- admin

    def _admin(self, request: Request) -> Response:
        route = (request.method, request.path.rstrip("/"))
        if route == ("GET", "/__sandbox/state"):
            with self._lock:
                calls = sum(self.calls.values())
            return json_response({**self.store.summary(), "calls": calls, "faults": self.faults.snapshot()})
        if route == ("GET", "/__sandbox/calls"):
            with self._lock:
                return json_response(dict(self.calls))
        if route == ("DELETE", "/__sandbox/calls"):
            with self._lock:
                self.calls.clear()
            return Response(status=204)
        if route == ("GET", "/__sandbox/faults"):
            return json_response(self.faults.snapshot())
        if route == ("POST", "/__sandbox/faults"):
            try:
                self.faults.update(_body(request))
            except (ValueError, TypeError) as exc:
                return error_response(validation_error(str(exc)))
            except HubSpotError as err:
                return error_response(err)
            return json_response(self.faults.snapshot())
        return error_response(HubSpotError(404, "OBJECT_NOT_FOUND", f"No admin route {route}"))

    # ----------------------------------------------------------------- owners

    def _owners(self, request: Request) -> Response:
        owners = self.store.owners(_bool_param(request, "archived"), request.args.get("email"))
        limit = _int_param(request, "limit", 100, OWNERS_LIMIT)
        start = int(request.args["after"]) if request.args.get("after", "").isdigit() else 0
        page = owners[start : start + limit]
        after = str(start + limit) if start + limit < len(owners) else None
        return json_response({"results": page, **_paging(request, after)})

    def _owner(self, request: Request, ownerId: str) -> Response:
        field = "userId" if request.args.get("idProperty") == "userId" else "id"
        for owner in self.store.owners(_bool_param(request, "archived")):
            if str(owner[field]) == ownerId:
                return json_response(owner)
        raise HubSpotError(404, "OBJECT_NOT_FOUND", f"Owner {ownerId} not found")

    # ----------------------------------------------------------------- objects

    def _list_objects(self, request: Request, objectType: str) -> Response:
        results, after = self.store.page(
            objectType,
            request.args.get("after"),
            _int_param(request, "limit", 10, LIST_LIMIT),
            _list_param(request, "properties") or None,
            _list_param(request, "propertiesWithHistory"),
            _bool_param(request, "archived"),
        )
        return json_response({"results": results, **_paging(request, after)})

    def _get_object(self, request: Request, objectType: str, objectId: str) -> Response:
        found = self.store.get_one(
            objectType,
            objectId,
            _list_param(request, "properties") or None,
            _list_param(request, "propertiesWithHistory"),
            request.args.get("idProperty"),
        )
        return json_response(found)

    def _create_object(self, request: Request, objectType: str) -> Response:
        body = _body(request)
        inp = self._write_input(body, with_associations=True)
        outcome = self.store.write_batch(objectType, "create", [inp], partial=False)[0]
        return json_response(outcome.record, 201)

    def _update_object(self, request: Request, objectType: str, objectId: str) -> Response:
        inp = self._write_input(_body(request))
        inp.id, inp.id_property = objectId, request.args.get("idProperty")
        outcome = self.store.write_batch(objectType, "update", [inp], partial=False)[0]
        return json_response(outcome.record)

    def _archive_object(self, request: Request, objectType: str, objectId: str) -> Response:
        try:
            self.store.archive_object(objectType, objectId)
        except HubSpotError as err:
            if err.status != 404:
                raise
        return Response(status=204)

    def _merge(self, request: Request) -> Response:
        body = _body(request)
        primary, merged = body.get("primaryObjectId"), body.get("objectIdToMerge")
        if not primary or not merged:
            raise validation_error("primaryObjectId and objectIdToMerge are required")
        return json_response(self.store.merge_contacts(str(primary), str(merged)))

    def _search(self, request: Request, objectType: str) -> Response:
        total, results, after = self.store.search(objectType, _body(request))
        body: JSON = {"total": total, "results": results}
        if after is not None:
            body["paging"] = {"next": {"after": str(after)}}
        return json_response(body)

    # ----------------------------------------------------------------- batches

    def _batch_read(self, request: Request, objectType: str) -> Response:
        body = _body(request)
        started = iso(self.store.now_ms())
        ids = [str(i.get("id", "")) for i in _inputs(body, BATCH_LIMIT)]
        found, missing = self.store.read(
            objectType,
            ids,
            body.get("properties") or None,
            body.get("propertiesWithHistory") or (),
            body.get("idProperty"),
        )
        out: JSON = {"status": "COMPLETE", "results": found, "startedAt": started}
        if not missing:
            return json_response({**out, "completedAt": iso(self.store.now_ms())})
        label = SINGULAR[object_type_name(objectType)].upper()
        error = HubSpotError(
            404,
            "OBJECT_NOT_FOUND",
            f"Could not get some {label} objects, they may be deleted or not exist. "
            "Check that ids are valid.",
            context={"ids": missing},
        )
        out |= {"numErrors": 1, "errors": [error.body()], "completedAt": iso(self.store.now_ms())}
        return json_response(out, 207)

    def _batch_create(self, request: Request, objectType: str) -> Response:
        return self._batch_write(request, objectType, "create", 201)

    def _batch_update(self, request: Request, objectType: str) -> Response:
        return self._batch_write(request, objectType, "update", 200)

    def _batch_upsert(self, request: Request, objectType: str) -> Response:
        return self._batch_write(request, objectType, "upsert", 200)

    def _batch_write(self, request: Request, objectType: str, kind: str, ok: int) -> Response:
        body = _body(request)
        started = iso(self.store.now_ms())
        inputs = [
            self._write_input(i, with_associations=kind == "create") for i in _inputs(body, BATCH_LIMIT)
        ]
        if kind != "create" and any(i.id is None for i in inputs):
            raise validation_error("Every input needs an id")
        partial = any(i.trace_id for i in inputs)
        outcomes = self.store.write_batch(objectType, kind, inputs, partial=partial)
        return _batch_response(outcomes, started, iso(self.store.now_ms()), ok, kind == "upsert")

    def _write_input(self, raw: JSON, with_associations: bool = False) -> WriteInput:
        props = _stringify(raw.get("properties") or {})
        assoc = raw.get("associations") or [] if with_associations else []
        if not isinstance(assoc, list):
            raise validation_error("associations must be a list")
        raw_id = raw.get("id")
        inp = WriteInput(
            properties=props,
            id=None if raw_id is None else str(raw_id),
            id_property=raw.get("idProperty"),
            associations=assoc,
            trace_id=raw.get("objectWriteTraceId"),
        )
        rejected = self.faults.rejected(props)
        if rejected is not None:
            name, value = rejected
            inp.error = property_error(name, "INVALID_PROPERTY_VALUE", f'"{value}" was rejected for {name}')
        return inp

    def _batch_archive(self, request: Request, objectType: str) -> Response:
        for item in _inputs(_body(request), BATCH_LIMIT):
            try:
                self.store.archive_object(objectType, str(item.get("id", "")))
            except HubSpotError as err:
                if err.status != 404:
                    raise
        return Response(status=204)

    # ----------------------------------------------------------------- associations

    def _assoc_read(self, request: Request, fromObjectType: str, toObjectType: str) -> Response:
        started = iso(self.store.now_ms())
        inputs = _inputs(_body(request), ASSOCIATION_BATCH_LIMIT)
        ids = [str(i.get("id", "")) for i in inputs]
        afters = {str(i.get("id", "")): str(i["after"]) for i in inputs if i.get("after")}
        results, empty = self.store.association_page(fromObjectType, toObjectType, ids, afters)
        out: JSON = {"status": "COMPLETE", "results": results, "startedAt": started}
        a, b = SINGULAR[object_type_name(fromObjectType)], SINGULAR[object_type_name(toObjectType)]
        errors = [
            HubSpotError(
                404,
                "OBJECT_NOT_FOUND",
                f"No {b} is associated with {a} {id_}.",
                sub_category="crm.associations.NO_ASSOCIATIONS_FOUND",
                context={"fromObjectId": [id_]},
            ).body()
            for id_ in empty
        ]
        if errors:
            out |= {"numErrors": len(errors), "errors": errors}
        out["completedAt"] = iso(self.store.now_ms())
        return json_response(out, 207 if errors else 200)

    def _assoc_list(
        self, request: Request, fromObjectType: str, fromObjectId: str, toObjectType: str
    ) -> Response:
        limit = _int_param(request, "limit", ASSOCIATION_PAGE, ASSOCIATION_PAGE)
        after = {fromObjectId: request.args["after"]} if request.args.get("after") else None
        results, _ = self.store.association_page(fromObjectType, toObjectType, [fromObjectId], after, limit)
        rows = results[0]["to"] if results else []
        nxt = ((results[0].get("paging") or {}).get("next") or {}).get("after") if results else None
        return json_response({"results": rows, **_paging(request, nxt)})

    def _assoc_default(
        self,
        request: Request,
        fromObjectType: str,
        fromObjectId: str,
        toObjectType: str,
        toObjectId: str,
    ) -> Response:
        self.store.associate_api(fromObjectType, fromObjectId, toObjectType, toObjectId)
        kinds = self.store.associations(fromObjectType, fromObjectId, toObjectType)
        result = {
            "from": {"id": fromObjectId},
            "to": {"id": toObjectId},
            "associationSpec": {
                "associationCategory": "HUBSPOT_DEFINED",
                "associationTypeId": kinds[toObjectId],
            },
        }
        now = iso(self.store.now_ms())
        return json_response(
            {"status": "COMPLETE", "results": [result], "startedAt": now, "completedAt": now}
        )

    def _assoc_batch_default(self, request: Request, fromObjectType: str, toObjectType: str) -> Response:
        started = iso(self.store.now_ms())
        results, errors = [], []
        for item in _inputs(_body(request), ASSOCIATION_CREATE_LIMIT):
            frm = str((item.get("from") or {}).get("id", ""))
            to = str((item.get("to") or {}).get("id", ""))
            try:
                self.store.associate_api(fromObjectType, frm, toObjectType, to)
            except HubSpotError as err:
                errors.append(err.body())
                continue
            type_id = self.store.associations(fromObjectType, frm, toObjectType)[to]
            results.append({"from": {"id": frm}, "to": {"id": to},
                            "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}})  # fmt: skip
        out: JSON = {"status": "COMPLETE", "results": results, "startedAt": started}
        if errors:
            out |= {"numErrors": len(errors), "errors": errors}
        out["completedAt"] = iso(self.store.now_ms())
        return json_response(out, 207 if errors else 200)

    # ----------------------------------------------------------------- properties

    def _properties(self, request: Request, objectType: str) -> Response:
        archived = _bool_param(request, "archived")
        return json_response({"results": self.store.properties(objectType, archived)})

    def _property(self, request: Request, objectType: str, propertyName: str) -> Response:
        found = self.store.property(objectType, propertyName)
        if found is None:
            raise HubSpotError(404, "OBJECT_NOT_FOUND", f"Unable to find property named '{propertyName}'")
        return json_response(found)

    def _update_property(self, request: Request, objectType: str, propertyName: str) -> Response:
        return json_response(self.store.update_property(objectType, propertyName, _body(request)))

    def _create_property(self, request: Request, objectType: str) -> Response:
        return json_response(self.store.create_property(objectType, _body(request)), 201)

    def _create_properties(self, request: Request, objectType: str) -> Response:
        started = iso(self.store.now_ms())
        results, errors = [], []
        for item in _inputs(_body(request), BATCH_LIMIT):
            try:
                results.append(self.store.create_property(objectType, item))
            except HubSpotError as err:
                errors.append(err.body())
        out: JSON = {"status": "COMPLETE", "results": results, "startedAt": started}
        if errors:
            out |= {"numErrors": len(errors), "errors": errors}
        out["completedAt"] = iso(self.store.now_ms())
        return json_response(out, 207 if errors else 201)

    def _groups(self, request: Request, objectType: str) -> Response:
        return json_response({"results": self.store.property_groups(objectType)})

    def _create_group(self, request: Request, objectType: str) -> Response:
        return json_response(self.store.create_property_group(objectType, _body(request)), 201)

    # ----------------------------------------------------------------- events

    def _events(self, request: Request) -> Response:
        object_type = request.args.get("objectType")
        if object_type and object_type.lower() not in ("contact", "contacts", "0-1"):
            return json_response({"results": []})
        sort = _list_param(request, "sort")
        results, after = self.store.events_page(
            event_type=request.args.get("eventType"),
            object_id=request.args.get("objectId"),
            occurred_after=_time_param(request, "occurredAfter"),
            occurred_before=_time_param(request, "occurredBefore"),
            descending=bool(sort) and sort[0].upper() in ("DESCENDING", "-OCCURREDAT"),
            after=request.args.get("after"),
            limit=_int_param(request, "limit", 100, 1000),
        )
        return json_response({"results": results, **_paging(request, after)})

    def _email_events(self, request: Request) -> Response:
        events, offset = self.store.email_events_page(
            event_type=request.args.get("eventType"),
            recipient=request.args.get("recipient"),
            start=_time_param(request, "startTimestamp"),
            end=_time_param(request, "endTimestamp"),
            offset=request.args.get("offset"),
            limit=_int_param(request, "limit", 100, 1000),
        )
        return json_response({"events": events, "hasMore": offset is not None, "offset": offset or ""})


def _oauth_error(status: str, message: str) -> Response:
    """HubSpot's OAuth error body (400): ``status`` carries the reason code."""
    body = {"status": status, "message": message, "correlationId": _correlation_id(),
            "requestId": _correlation_id()}  # fmt: skip
    return json_response(body, 400)


def _time_param(request: Request, name: str) -> int | None:
    raw = request.args.get(name)
    if not raw:
        return None
    ms = parse_time(raw)
    if ms is None:
        raise validation_error(f"{name} must be an ISO-8601 date-time or epoch milliseconds")
    return ms


def _batch_response(
    outcomes: list[WriteOutcome], started: str, completed: str, ok: int, upsert: bool
) -> Response:
    results = []
    for o in outcomes:
        if o.record is not None:
            results.append({**o.record, "new": o.new} if upsert else o.record)
    errors = [o.error.body() for o in outcomes if o.error is not None]
    body: JSON = {"status": "COMPLETE", "results": results, "startedAt": started}
    if errors:
        body |= {"numErrors": len(errors), "errors": errors}
    body["completedAt"] = completed
    return json_response(body, 207 if errors else ok)
