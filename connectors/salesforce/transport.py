"""The Salesforce transport seam: a ``requests.Session`` every simple-salesforce call uses.

simple-salesforce sets no timeout and does not retry; it sends everything through the
session it is given. This session adds a timeout to every request, counts calls per
endpoint and reads ``Sforce-Limit-Info`` (API usage against the daily allocation) from
every response.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from typing import Any

import requests

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
        self.api_used: int | None = None
        self.api_max: int | None = None
        self._lock = threading.Lock()

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", (10, self.timeout))
        if self.explicit_verify:
            kwargs.setdefault("verify", self.explicit_verify)
        name = endpoint(str(method), str(url))
        with self._lock:
            self.calls[name] += 1
        response = super().request(method, url, *args, **kwargs)
        match = _USAGE.search(response.headers.get("Sforce-Limit-Info", ""))
        if match:
            with self._lock:
                self.api_used, self.api_max = int(match.group(1)), int(match.group(2))
        return response
