"""The one retry policy and the one retry helper every connector's API calls go through.

A call is retried only when the error it ends with is a ``RetriableCrmError`` (a 5xx, a
429, lock contention, a request that got no answer while the host's silence budget
lasts: see ``connectors/network.py``), at most ``RetryPolicy.attempts`` times and never
past ``RetryPolicy.deadline`` seconds from the first attempt. Between attempts it waits
what the server asked for (``Retry-After``, at most ``max_wait``), else a random
exponential back-off. Any other error is raised at once. Every error is raised ``from``
the exception it was classified from, so a bug's traceback shows the cause; the CLI
prints only the one-line message.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, stop_before_delay

from crm_handoff.errors import HandoffError, RetriableCrmError

T = TypeVar("T")

#: Turns an exception raised instead of a result into crm-handoff's error.
Classifier = Callable[[BaseException], HandoffError]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long one API call is tried.

    ``attempts``: tries in all (the first included); ``deadline``: seconds from the first
    try after which no further try starts; ``backoff``: the exponential back-off's
    multiplier in seconds; ``max_wait``: the longest wait between two tries.
    """

    attempts: int = 5
    deadline: float = 300.0
    backoff: float = 0.5
    max_wait: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.deadline <= 0 or self.backoff < 0 or self.max_wait < 0:
            raise ValueError(f"not a usable retry policy: {self}")

    def wait(self, error: BaseException | None, attempt: int) -> float:
        """Seconds to wait after ``attempt`` (1-based) ended with ``error``."""
        hinted = getattr(error, "retry_after", None)
        if hinted is not None:
            return max(0.0, min(self.max_wait, float(hinted)))
        return random.uniform(0.0, min(self.max_wait, self.backoff * 2.0 ** (attempt - 1)))  # full jitter


def call(
    fn: Callable[[], T],
    policy: RetryPolicy,
    classify: Classifier,
    on_wait: Callable[[BaseException, float], None] | None = None,
) -> T:
    """``fn()``, retried by ``policy`` while it fails with a retriable error.

    An exception that is not crm-handoff's own is turned into one by ``classify`` and
    raised from it; ``on_wait(error, seconds)`` is called before each wait.
    """

    def wait(state: Any) -> float:
        return policy.wait(state.outcome.exception() if state.outcome else None, state.attempt_number)

    def before_sleep(state: Any) -> None:
        if on_wait is not None and state.outcome is not None and state.next_action is not None:
            on_wait(state.outcome.exception(), float(state.next_action.sleep))

    for attempt in Retrying(
        retry=retry_if_exception_type(RetriableCrmError),
        stop=stop_after_attempt(policy.attempts) | stop_before_delay(policy.deadline),
        wait=wait,
        before_sleep=before_sleep,
        reraise=True,
    ):
        with attempt:
            try:
                return fn()
            except HandoffError:
                raise
            except Exception as exc:
                raise classify(exc) from exc
    raise AssertionError("unreachable")  # reraise=True: the last error is raised above
