"""HubSpot's webhook deliveries, emulated: contact changes in the store POSTed, signed, to a
configured target URL, as HubSpot sends them.

A :class:`WebhookSender` listens to the store (``HubSpotStore.listeners``). Each contact
change that matches a subscription (``contact.creation``, ``contact.deletion``,
``contact.merge``, ``contact.propertyChange`` of one named property) becomes an event
``{eventId, subscriptionId, portalId, appId, occurredAt, subscriptionType, attemptNumber,
objectId, changeSource, propertyName, propertyValue, ...}``; pending events go out in
requests of up to 100, as a JSON array, with the v3 signature headers
(``X-HubSpot-Signature-v3``, ``X-HubSpot-Request-Timestamp``). Like HubSpot's:

- a request that fails (no connection, no answer within 5 s, any 4xx/5xx) is retried,
  up to 10 attempts, later each time (``retry_seconds``), ``attemptNumber`` counting up;
- delivery is at least once: with ``duplicate_rate`` a delivered request is sent again;
- events are not ordered: a request's events are shuffled, and a retry goes out after
  requests made since.

Everything sent is kept in ``sent`` (status per attempt) for tests and the bench.
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from connectors.hubspot.sandbox.store import ContactChange, HubSpotStore
from connectors.hubspot.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

#: Properties whose change means someone converted or engaged (see the README's
#: "Real time: HubSpot webhooks" for why each).
DEFAULT_PROPERTIES = (
    "recent_conversion_date",
    "lifecyclestage",
    "hs_lead_status",
    "hubspot_owner_id",
    "notes_last_updated",
    "hs_email_last_click_date",
)
TIMEOUT_SECONDS = 5.0  # HubSpot: an answer slower than this is a failure
MAX_ATTEMPTS = 10
BATCH = 100  # events a request


@dataclass(frozen=True)
class Subscription:
    """One subscription of the app: an event type, and a property for ``propertyChange``."""

    id: int
    event_type: str  # contact.creation | contact.deletion | contact.merge | contact.propertyChange
    property_name: str | None = None


def default_subscriptions(properties: Sequence[str] = DEFAULT_PROPERTIES) -> list[Subscription]:
    """Creation, deletion and merge of contacts, and a change of each of ``properties``."""
    subs = [Subscription(1, "contact.creation"), Subscription(2, "contact.deletion")]
    subs.append(Subscription(3, "contact.merge"))
    return subs + [Subscription(10 + i, "contact.propertyChange", p) for i, p in enumerate(properties)]


@dataclass
class Attempt:
    """One POST the sender made."""

    event_ids: list[int]
    attempt: int
    status: int | None  # None: no answer (connection refused, timeout)
    at: float  # time.time() when it was sent
    duplicate: bool = False


@dataclass(order=True)
class _Request:
    due: float
    seq: int
    events: list[dict[str, Any]] = field(compare=False)
    attempt: int = field(default=0, compare=False)
    duplicate: bool = field(default=False, compare=False)


class WebhookSender:
    """Delivers the store's contact changes to ``target_url`` like HubSpot (see the module)."""

    def __init__(
        self,
        store: HubSpotStore,
        target_url: str,
        client_secret: str,
        *,
        subscriptions: Sequence[Subscription] | None = None,
        app_id: int = 424242,
        retry_seconds: Sequence[float] = (1, 2, 4, 8, 15, 30, 60, 120, 300),
        duplicate_rate: float = 0.0,
        shuffle: bool = True,
        delay_seconds: float = 0.0,
        seed: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.target_url, self._secret = store, target_url, client_secret
        self.subscriptions = list(subscriptions if subscriptions is not None else default_subscriptions())
        self.app_id, self.retry_seconds = app_id, tuple(retry_seconds)
        self.duplicate_rate, self.shuffle, self.delay_seconds = duplicate_rate, shuffle, delay_seconds
        self.clock = clock  # HubSpot's clock for X-HubSpot-Request-Timestamp
        self.sent: list[Attempt] = []
        self.events: list[dict[str, Any]] = []  # every event made, in the order of the changes
        self._rng = random.Random(seed)
        self._ids = itertools.count(int(seed) * 1_000_000 + 1_000)
        self._seq = itertools.count()
        self._waiting: list[dict[str, Any]] = []  # events not yet in a request
        self._queue: list[_Request] = []
        self._cond = threading.Condition()
        self._stop = False
        self._busy = 0  # requests being sent
        self._thread: threading.Thread | None = None
        self._session = requests.Session()
        self._session.trust_env = False

    # --- lifecycle ------------------------------------------------------------------
    def start(self) -> WebhookSender:
        """Listen to the store and deliver on a background thread."""
        self.store.listeners.append(self.on_change)
        self._thread = threading.Thread(target=self._run, name="hubspot-webhooks", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and delivering (what is still pending is dropped)."""
        if self.on_change in self.store.listeners:
            self.store.listeners.remove(self.on_change)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def idle(self) -> bool:
        """Nothing waiting or due to be sent (retries included)."""
        with self._cond:
            return not self._waiting and not self._queue and not self._busy

    def delivered(self) -> set[int]:
        """Event ids some request carried that the target answered 2xx."""
        return {i for a in list(self.sent) if a.status and 200 <= a.status < 300 for i in a.event_ids}

    # --- events -----------------------------------------------------------------------
    def on_change(self, change: ContactChange) -> None:
        """A store change: an event per matching subscription (called under the store's lock)."""
        made = [self._event(sub, change) for sub in self.subscriptions if _matches(sub, change)]
        if not made:
            return
        with self._cond:
            self.events += made
            self._waiting += made
            self._cond.notify_all()

    def _event(self, sub: Subscription, change: ContactChange) -> dict[str, Any]:
        event: dict[str, Any] = {
            "eventId": next(self._ids),
            "subscriptionId": sub.id,
            "portalId": self.store.portal_id,
            "appId": self.app_id,
            "occurredAt": change.at,
            "subscriptionType": sub.event_type,
            "attemptNumber": 0,
            "objectId": change.object_id,
            "changeFlag": change.kind.upper() if change.kind != "propertyChange" else "PROPERTY_CHANGE",
            "changeSource": change.source,
            "sourceId": "userId:0" if change.source == "CRM_UI" else f"{self.app_id}",
        }
        if change.kind == "propertyChange":
            event |= {"propertyName": change.property_name, "propertyValue": change.property_value or ""}
        if change.kind == "merge":
            event |= {
                "primaryObjectId": change.object_id,
                "mergedObjectIds": list(change.merged_ids),
                "newObjectId": change.object_id,
                "numberOfPropertiesMoved": 0,
            }
        return event

    # --- delivery ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                request = self._next()
                if request is None:
                    return
            self._send(request)

    def _next(self) -> _Request | None:
        """The next request due (waiting events gathered into new ones); None: stopped."""
        while not self._stop:
            now = time.monotonic()
            while self._waiting:
                part, self._waiting = self._waiting[:BATCH], self._waiting[BATCH:]
                heapq.heappush(self._queue, _Request(now + self.delay_seconds, next(self._seq), part))
            if self._queue and self._queue[0].due <= now:
                self._busy += 1
                return heapq.heappop(self._queue)
            self._cond.wait(timeout=(self._queue[0].due - now) if self._queue else None)
        return None

    def _send(self, request: _Request) -> None:
        events = [e | {"attemptNumber": request.attempt} for e in request.events]
        if self.shuffle:
            self._rng.shuffle(events)
        body = json.dumps(events)
        stamp = int(self.clock() * 1000)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, "POST", self.target_url, body, stamp),
            TIMESTAMP_HEADER: str(stamp),
        }
        status: int | None = None
        try:
            status = self._session.post(
                self.target_url, data=body.encode(), headers=headers, timeout=TIMEOUT_SECONDS
            ).status_code
        except requests.RequestException:
            status = None
        ids = [int(e["eventId"]) for e in events]
        self.sent.append(Attempt(ids, request.attempt, status, stamp / 1000, request.duplicate))
        self._after(request, status is not None and 200 <= status < 300)

    def _after(self, request: _Request, ok: bool) -> None:
        """Schedule a retry of a failed request, or (sometimes) a duplicate of a delivered one."""
        with self._cond:
            self._busy -= 1
            now = time.monotonic()
            if not ok and request.attempt + 1 < MAX_ATTEMPTS:
                wait = self.retry_seconds[min(request.attempt, len(self.retry_seconds) - 1)]
                wait *= 1 + self._rng.random() * 0.2  # HubSpot: "some randomization"
                retry = _Request(now + wait, next(self._seq), request.events, request.attempt + 1)
                heapq.heappush(self._queue, retry)
            elif ok and not request.duplicate and self._rng.random() < self.duplicate_rate:
                again = _Request(now + self._rng.uniform(0.05, 0.5), next(self._seq), request.events)
                again.duplicate = True
                heapq.heappush(self._queue, again)
            self._cond.notify_all()


def _matches(sub: Subscription, change: ContactChange) -> bool:
    kind = sub.event_type.partition(".")[2]
    if kind != change.kind:
        return False
    return kind != "propertyChange" or sub.property_name == change.property_name
