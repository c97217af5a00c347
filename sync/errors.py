"""The one exception tree of crm-handoff.

Callers catch at the level they can act on: a ``ConfigError`` is the user's to fix
(exit 2), a ``RetriableCrmError`` is retried with backoff, ``QuotaExhausted`` ends the
run cleanly with a checkpoint, ``RecordRejected`` is recorded while the batch goes on.
"""

from __future__ import annotations


class HandoffError(Exception):
    """Base of every error crm-handoff raises on purpose."""


class ConfigError(HandoffError):
    """A mapping/config file or setting is invalid. ``problems`` holds one line each."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class UsageError(HandoffError):
    """The command line was used wrongly (exit 2)."""


class CrmError(HandoffError):
    """A CRM call failed in a way the caller may have to handle."""

    def __init__(self, crm: str, message: str, status: int | None = None) -> None:
        self.crm = crm
        self.status = status
        super().__init__(f"{crm}: {message}")


class RetriableCrmError(CrmError):
    """Transient: rate limit, 5xx, timeout, lock contention. Safe to retry later."""

    def __init__(
        self, crm: str, message: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(crm, message, status)
        self.retry_after = retry_after


class QuotaExhausted(CrmError):
    """The daily API budget is used up: checkpoint and stop; resume next run."""


class StopRequested(HandoffError):
    """The worker asked the cycle to stop at its next safe point (SIGTERM, lost lease)."""


class AuthError(CrmError):
    """Credentials are missing, wrong or expired beyond refresh."""


class RecordRejected(CrmError):
    """The CRM refused one record (validation, duplicate rule...). The batch goes on."""

    def __init__(self, crm: str, record: str, message: str, code: str | None = None) -> None:
        super().__init__(crm, f"{record}: {message}")
        self.record = record
        self.code = code
        self.reason = message
