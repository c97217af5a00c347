"""The threads that fetch ahead: a CRM's people pages and its activity, while earlier
chunks are processed on the cycle's own thread (which alone writes the state)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crm_handoff.records import Activity, PeoplePage, Person

AHEAD = 3000  # people a CRM's pull may fetch ahead of processing (on its own thread)


def chunks(pages: Iterator[PeoplePage], size: int) -> Iterator[tuple[list[Person], PeoplePage]]:
    """Group pages into chunks of about ``size`` people; each with the page that ends it."""
    people: list[Person] = []
    for page in pages:
        people += page.people
        if len(people) >= size or page.resume is None or not page.people:  # empty: a phase boundary
            yield people, page
            people = []


class Ahead:
    """Pages of one pull, fetched on a thread of their own while earlier ones are processed.

    At most ``limit`` people wait (plus the page being fetched), so memory stays flat.
    Pages come out in order; an exception the pull raises comes out, in its place, as
    the same exception. ``close`` stops the thread before its next page.
    """

    def __init__(
        self, name: str, pages: Callable[[], Iterator[PeoplePage]], limit: int = AHEAD, start: bool = True
    ) -> None:
        self._items: deque[tuple[PeoplePage | None, BaseException | None]] = deque()
        self._held = 0
        self._limit = limit
        self._cond = threading.Condition()
        self._closed = False
        self._started = False
        self.then: Ahead | None = None  # started when this pull has fetched its last page
        self._thread = threading.Thread(target=self._run, args=(pages,), name=f"pull-{name}", daemon=True)
        if start:
            self.start()

    def start(self) -> None:
        with self._cond:
            if self._started or self._closed:
                return
            self._started = True
        self._thread.start()

    def _run(self, pages: Callable[[], Iterator[PeoplePage]]) -> None:
        end: tuple[PeoplePage | None, BaseException | None] = (None, None)
        it: Iterator[PeoplePage] | None = None
        try:
            it = pages()
            for page in it:
                with self._cond:
                    while self._held >= self._limit and not self._closed:
                        self._cond.wait()
                    if self._closed:
                        return
                    self._items.append((page, None))
                    self._held += len(page.people)
                    self._cond.notify_all()
        except BaseException as exc:  # handed to the consumer, raised there
            end = (None, exc)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
        with self._cond:
            self._items.append(end)
            self._cond.notify_all()
            closed = self._closed
        if self.then is not None and end[1] is None and not closed:
            self.then.start()

    def __iter__(self) -> Iterator[PeoplePage]:
        self.start()  # normally already started (by the previous pull, or at once)
        while True:
            with self._cond:
                while not self._items:
                    self._cond.wait()
                page, exc = self._items.popleft()
                if page is not None:
                    self._held -= len(page.people)
                    self._cond.notify_all()
            if page is not None:
                yield page
            elif exc is not None:
                raise exc
            else:
                return

    def close(self, wait: float = 30.0) -> None:
        with self._cond:
            self._closed = True
            self._items.clear()
            self._held = 0
            self._cond.notify_all()
            started = self._started
        if started and self._thread is not threading.current_thread():
            self._thread.join(wait)


@dataclass
class PeoplePull:
    """One CRM's pass over its changed people: where it starts, and its pages."""

    since: datetime | None
    resume: Any
    started: str
    pages: Ahead
    begun: bool = False  # its chunks are being evaluated


@dataclass
class ActivityPull:
    """One CRM's activity pull, inline or on a thread of its own."""

    crm: str
    started: datetime
    pages: Any = ()  # inline: the connector's iterator; on a thread: what was fetched, not yet taken
    thread: threading.Thread | None = None
    error: BaseException | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    late: bool = False  # reaches back the connector's ``activity_late`` (see ``start_activities``)

    def fetch(self, pull: Callable[[], Iterator[Activity]]) -> None:
        try:
            for act in pull():
                with self.lock:
                    self.pages.append(act)
        except BaseException as exc:  # re-raised on the processing thread (finish_activities)
            self.error = exc

    def take(self) -> list[Activity]:
        """What the thread fetched since the last ``take`` (saved by the processing thread)."""
        if self.thread is None:
            return []
        with self.lock:
            taken, self.pages = self.pages, []
        return list(taken)
