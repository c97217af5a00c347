"""The Salesforce transport seam: a ``requests.Session`` every simple-salesforce call uses.

simple-salesforce sets no timeout and does not retry; it sends everything through the
session it is given. This session adds a timeout to every request, counts calls per
endpoint and reads ``Sforce-Limit-Info`` (API usage against the daily allocation) from
every response.

A request that gets no answer is classified here (``errors.classify``): TLS verification,
a CA bundle that cannot be read, a malformed URL or an unknown host raise a
``CrmConfigError`` at once (exit 2, naming the setting). A refused, reset or timed-out
request re-raises requests' own exception, which the connector retries, until the host
has been silent for too long (``connectors.network.Silence``): then ``CrmUnavailable``
ends the run (exit 75).
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from typing import Any

import requests

from connectors.network import Silence, diagnose, gave_up, origin
from connectors.salesforce.errors import classify, setting_for
from crm_handoff.errors import CrmUnavailable

CONNECT_TIMEOUT = 10.0  # never above the read timeout
_ID = re.compile(r"/[a-zA-Z0-9]{15,18}(?=/|$)")
_LOCATOR = re.compile(r"/query/[^/?]+")
_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")


def endpoint(method: str, url: str) -> str:
    """``GET /services/data/v62.0/query`` from a full URL (ids and locators collapsed)."""
    path = url.split("://", 1)[-1]
    path = "/" + path.split("/", 1)[1] if "/" in path else "/"
    path = path.split("?", 1)[0].rstrip("/")
    path = _LOCATOR.sub("/query/{locator}", path)
    return f"{method.upper()} {_ID.sub('/{id}', path)}"


class MeteredSession(requests.Session):
    """A session with a default timeout, a call counter and the org's API usage."""

    def __init__(self, timeout: float = 60.0, verify: str | bool = True) -> None:
        super().__init__()
        self.timeout = timeout
        self.verify = verify
        # requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override Session.verify
        # (psf/requests#3829); an explicit SALESFORCE_CA_BUNDLE must win.
        self.explicit_verify = verify if isinstance(verify, str) else None
        self.calls: Counter[str] = Counter()
        self.silence = Silence()
        self.api_used: int | None = None
        self.api_max: int | None = None
        self._lock = threading.Lock()

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        target = url.decode() if isinstance(url, bytes) else str(url)
        kwargs["timeout"] = self._timeout(target, kwargs.get("timeout"))
        if self.explicit_verify:
            kwargs.setdefault("verify", self.explicit_verify)
        name = endpoint(str(method), target)
        with self._lock:
            self.calls[name] += 1
        started = self.silence.now()
        try:
            response = super().request(method, url, *args, **kwargs)
        except (requests.RequestException, OSError) as exc:  # a CA bundle path requests cannot read: OSError
            self._failed(exc, target, started)
            raise
        self.silence.answered()
        match = _USAGE.search(response.headers.get("Sforce-Limit-Info", ""))
        if match:
            with self._lock:
                self.api_used, self.api_max = int(match.group(1)), int(match.group(2))
        return response

    def _where(self, url: str) -> str:
        return f"{origin(url)} ({setting_for(url)})"

    def _timeout(self, url: str, given: Any) -> tuple[float, float]:
        """(connect, read) timeouts for a request: within what is left of the silence budget."""
        if isinstance(given, tuple) and len(given) == 2:
            connect, read = float(given[0]), float(given[1])
        else:
            read = float(given) if isinstance(given, int | float) and given else self.timeout
            connect = CONNECT_TIMEOUT
        left = self.silence.before(read)
        if left is None:
            raise CrmUnavailable("salesforce", gave_up(self.silence, self._where(url)))
        return min(connect, left), left

    def _failed(self, exc: BaseException, url: str, started: float) -> None:
        """After a request got no answer: raise the final error, or return to re-raise it."""
        failure = diagnose(exc)
        if failure is None:
            return
        if failure.permanent:
            raise classify(exc, url, self.explicit_verify) from exc
        if self.silence.failed(started, failure):
            raise CrmUnavailable("salesforce", gave_up(self.silence, self._where(url))) from exc
