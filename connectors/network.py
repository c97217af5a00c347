"""Failures below HTTP (no response at all), diagnosed the same way for every CRM.

A request that got no answer failed for one of two kinds of reason:

* permanent - TLS verification failed, the URL is malformed, the host name does not exist,
  the CA bundle cannot be read: retrying cannot help, the run stops at once (exit 2);
* transient - refused, reset, timed out, a temporary DNS failure: retried, but only while
  the host has been silent for less than ``SILENCE_TIMEOUTS`` request timeouts and for
  fewer than ``MAX_UNANSWERED`` requests in a row (``Silence``); then the run gives up on
  the host (exit 75) and the next run tries again.

Each connector's ``errors.classify`` turns a ``Failure`` into its error (naming the
setting to check); each transport keeps one ``Silence`` per connector.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
import urllib3

SILENCE_TIMEOUTS = 3  # give up on a host silent for this many request timeouts...
MAX_UNANSWERED = 4  # ...or for this many requests in a row (fewer than a call's attempts)

_INVALID_URL = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    urllib3.exceptions.LocationValueError,
)
_NO_SUCH_HOST = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


@dataclass(frozen=True)
class Failure:
    """Why a request got no answer: ``kind`` (tls, ca_bundle, invalid_url, no_such_host,
    refused, timeout, reset, dns, other), a one-line ``detail`` and whether it is final."""

    kind: str
    detail: str

    @property
    def permanent(self) -> bool:
        return self.kind in {"tls", "ca_bundle", "invalid_url", "no_such_host"}


def origin(url: str) -> str:
    """``scheme://host:port`` of a URL (no path, query or credentials), for messages."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(malformed URL)"
    return f"{parts.scheme}://{host}{port}" if parts.scheme and host else "(malformed URL)"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: causes, urllib3 ``reason``s, requests' wrapped errors."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        wrapped = (e.__cause__, e.__context__, getattr(e, "reason", None), *getattr(e, "args", ()))
        todo += [x for x in wrapped if isinstance(x, BaseException)]


def _one_line(text: object, limit: int = 200) -> str:
    return " ".join(str(text).split())[:limit]


def _tls(e: BaseException) -> Failure | None:
    if isinstance(e, ssl.SSLCertVerificationError):
        why = _one_line(getattr(e, "verify_message", None) or e.strerror or e)
        return Failure(
            "tls", why if why.startswith("certificate verify failed") else f"certificate verify failed: {why}"
        )
    if isinstance(e, ssl.SSLError):
        return Failure("tls", _one_line(e.reason or e))
    return None


def _url(e: BaseException) -> Failure | None:
    return Failure("invalid_url", _one_line(e)) if isinstance(e, _INVALID_URL) else None


def _dns(e: BaseException) -> Failure | None:
    if not isinstance(e, socket.gaierror):
        return None
    if e.errno in _NO_SUCH_HOST:
        return Failure("no_such_host", "no such host (DNS)")
    return Failure("dns", _one_line(e.strerror or e))


def _refused(e: BaseException) -> Failure | None:
    return Failure("refused", "connection refused") if isinstance(e, ConnectionRefusedError) else None


def _reset(e: BaseException) -> Failure | None:
    if isinstance(e, ConnectionResetError | BrokenPipeError | http.client.RemoteDisconnected):
        return Failure("reset", f"connection closed without an answer ({type(e).__name__})")
    return None


def _timeout(e: BaseException) -> Failure | None:
    if isinstance(e, TimeoutError | urllib3.exceptions.TimeoutError | requests.Timeout):
        return Failure("timeout", "timed out")
    return None


def _closed(e: BaseException) -> Failure | None:
    if isinstance(e, ConnectionError | http.client.HTTPException | urllib3.exceptions.ProtocolError):
        return Failure("reset", f"connection closed without an answer ({type(e).__name__})")
    return None


#: Most specific first: urllib3 wraps a refused connection or a DNS failure in an error
#: that is also a ``ConnectTimeoutError``, so the wrapped cause must decide.
_TESTS: tuple[Callable[[BaseException], Failure | None], ...] = (
    _tls,
    _url,
    _dns,
    _refused,
    _reset,
    _timeout,
    _closed,
)


_NETWORK = (OSError, urllib3.exceptions.HTTPError, requests.RequestException, http.client.HTTPException)


def diagnose(exc: BaseException) -> Failure | None:
    """The ``Failure`` of an exception raised instead of a response; None if it is not one."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason.startswith("SSLError"):  # the HubSpot SDK's ApiException(0)
        return Failure("tls", _one_line(reason.removeprefix("SSLError")))
    if not isinstance(exc, _NETWORK):
        return None
    text = str(exc)
    if "TLS CA certificate bundle" in text:  # requests: a CA bundle path that does not exist
        return Failure("ca_bundle", _one_line(text))
    chain = list(_chain(exc))
    for test in _TESTS:
        for e in chain:
            found = test(e)
            if found:
                return found
    return Failure("other", f"{type(exc).__name__}: {_one_line(text, 120)}")


class Silence:
    """How long a host has gone without answering, across every request of a connector.

    ``before(timeout)`` is called as a request starts: it returns the read timeout to use
    (never past what is left of ``SILENCE_TIMEOUTS`` x ``timeout`` of silence) or None when
    that budget is spent (give up without sending). ``failed()`` after a request that got
    no answer says whether to give up now; ``answered()`` after any response (an error
    status too) ends the silence. Thread-safe.
    """

    def __init__(self, limit: int = MAX_UNANSWERED, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self.since: float | None = None  # when the first unanswered request of the streak started
        self.unanswered = 0
        self.deadline = 0.0
        self.last: Failure | None = None  # why the latest unanswered request got no answer

    def before(self, timeout: float) -> float | None:
        """The read timeout for a request starting now (None: the budget is spent)."""
        with self._lock:
            self.deadline = SILENCE_TIMEOUTS * timeout
            if self.since is None:
                return timeout
            left = self.deadline - (self._clock() - self.since)
            if left <= 0 or self.unanswered >= self.limit:
                return None
            return min(timeout, left)

    def failed(self, started: float, failure: Failure | None = None) -> bool:
        """Count an unanswered request that started at ``started``; True: give up on the host."""
        with self._lock:
            if self.since is None:
                self.since = started
            self.unanswered += 1
            self.last = failure or self.last
            return self.unanswered >= self.limit or self._clock() - self.since >= self.deadline

    def answered(self) -> None:
        """A response came (whatever its status): the host is not silent."""
        with self._lock:
            self.since, self.unanswered = None, 0

    def silent_for(self) -> float:
        """Seconds since the first unanswered request of the current streak started."""
        with self._lock:
            return 0.0 if self.since is None else self._clock() - self.since

    def now(self) -> float:
        return self._clock()


def gave_up(silence: Silence, where: str) -> str:
    """The one line saying that the run gives up on a silent host."""
    why = f"; last: {silence.last.detail}" if silence.last else ""
    return (
        f"no answer from {where} for {silence.silent_for():.1f} s ({silence.unanswered} requests in a row"
        f"{why}); giving up on it for this run (the next run tries again)"
    )
