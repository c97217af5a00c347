"""The one exception tree of crm-handoff, and the exit code of each branch.

Callers catch at the level they can act on: a ``ConfigError`` is the user's to fix
(exit 2), a ``RetriableCrmError`` is retried with backoff, ``QuotaExhausted`` ends the
run cleanly with a checkpoint, ``RecordRejected`` is recorded while the batch goes on.
``Unavailable`` is the environment's: a service crm-handoff needs (the state database,
a CRM host) did not answer within its retry budget (exit 75, run again later).
"""

from __future__ import annotations

#: Exit codes of every ``handoff`` command (the README's exit-code table).
EXIT_OK = 0
EXIT_PARTIAL = 1  # some records failed (recorded), or a CRM refused / stopped the run
EXIT_USAGE = 2  # command line, mapping files or settings: the user's to fix
EXIT_UNAVAILABLE = 75  # sysexits EX_TEMPFAIL: a service did not answer; nothing lost, rerun later
EXIT_INTERRUPTED = 130


class HandoffError(Exception):
    """Base of every error crm-handoff raises on purpose."""


class ConfigError(HandoffError):
    """A mapping/config file or setting is invalid. ``problems`` holds one line each."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class Unavailable(HandoffError):
    """A service crm-handoff needs did not answer in time: the environment's to fix or to
    wait out (exit 75). What was done is recorded; a rerun continues."""


class StateUnavailable(Unavailable):
    """The state database (HANDOFF_STATE_URL) cannot be reached or stopped answering."""


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


class CrmConfigError(CrmError, ConfigError):
    """A CRM cannot be used as configured (TLS verification, a host that does not exist,
    a malformed URL): retrying cannot help; exit 2, the message names the setting."""


class CrmUnavailable(CrmError, Unavailable):
    """A CRM host stopped answering (refused, reset, timed out) for longer than the retry
    budget: the run gives up on it (exit 75) instead of retrying any longer."""


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


def exit_code(exc: HandoffError) -> int:
    """The exit code of a command that ended with ``exc`` (one place for every command)."""
    if isinstance(exc, ConfigError | UsageError | AuthError):
        return EXIT_USAGE
    if isinstance(exc, Unavailable | RetriableCrmError):  # retriable, still failing: the retries ran out
        return EXIT_UNAVAILABLE
    return EXIT_PARTIAL
