"""The HubSpot transport seam: every HTTP call the SDK makes passes through here.

The official SDK builds one generated API client per API package; its ``api_factory``
hook lets us wrap each client's REST layer once, so that we count calls per endpoint,
pace from the ``X-HubSpot-RateLimit-*`` headers and keep the search API under its
per-second limit, without touching the SDK.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from connectors.hubspot.paths import LEGACY, route

_ID = re.compile(r"/\d+(?=/|$)")

SEARCH_MIN_INTERVAL = 0.2  # HubSpot search: 5 requests per second per account
LOW_WATER = 3  # pause for the rest of the window when this few requests are left


def endpoint(method: str, url: str) -> str:
    """``POST /crm/v3/objects/contacts/search`` from a full URL (ids collapsed)."""
    path = url.split("://", 1)[-1]
    path = "/" + path.split("/", 1)[1] if "/" in path else "/"
    path = path.split("?", 1)[0]
    return f"{method.upper()} {_ID.sub('/{id}', path)}"


class Pacer:
    """Spends HubSpot's 10-second and search budgets evenly; thread-safe."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self._lock = threading.Lock()
        self._sleep = sleep
        self._last_search = 0.0
        self._pause_until = 0.0
        self.waited = 0.0

    def before(self, is_search: bool) -> None:
        with self._lock:
            now = time.monotonic()
            wait = max(0.0, self._pause_until - now)
            if is_search:
                wait = max(wait, self._last_search + SEARCH_MIN_INTERVAL - now)
                self._last_search = now + wait
        if wait > 0:
            self.waited += wait
            self._sleep(wait)

    def after(self, headers: Mapping[str, str]) -> None:
        remaining = headers.get("X-HubSpot-RateLimit-Remaining")
        interval = headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
        if remaining is None or interval is None:
            return
        try:
            left, window = int(remaining), int(interval) / 1000.0
        except ValueError:
            return
        if left <= LOW_WATER:
            with self._lock:
                self._pause_until = max(self._pause_until, time.monotonic() + window / 2)


class CallMeter:
    """Counts calls per endpoint and feeds the pacer; one per connector."""

    def __init__(self, pacer: Pacer | None = None, api_version: str = LEGACY) -> None:
        self.api_version = api_version
        self.calls: Counter[str] = Counter()
        self.pacer = pacer or Pacer()
        self._lock = threading.Lock()

    def wrap_rest_client(self, rest_client: Any) -> None:
        """Wrap a generated ``RESTClientObject.request`` (every verb goes through it)."""
        inner = rest_client.request
        meter = self

        def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            url = route(url, meter.api_version)
            name = endpoint(method, url)
            meter.pacer.before(name.endswith("/search"))
            with meter._lock:
                meter.calls[name] += 1
            try:
                response = inner(method, url, *args, **kwargs)
            except Exception as exc:
                meter.pacer.after(_headers(getattr(exc, "headers", None)))
                raise
            meter.pacer.after(_headers(response.getheaders()))
            return response

        rest_client.request = request

    def api_factory(self) -> Callable[[Any, str, dict[str, Any]], Any]:
        """An ``api_factory`` for ``hubspot.HubSpot`` that wraps every API it builds."""
        from hubspot.discovery.discovery_base import DiscoveryBase

        def factory(package: Any, api_name: str, config: dict[str, Any]) -> Any:
            api = DiscoveryBase._default_api_factory(package, api_name, config)
            self.wrap_rest_client(api.api_client.rest_client)
            return api

        return factory


def _headers(raw: Any) -> Mapping[str, str]:
    if raw is None:
        return {}
    try:
        return {str(k): str(v) for k, v in dict(raw).items()}
    except (TypeError, ValueError):
        return {}
