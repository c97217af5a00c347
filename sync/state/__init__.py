"""The state store: watermarks, identity links, the handoff ledger, the nurture queue,
activities inside the scoring window, stage history and run history.

SQLAlchemy Core over any URL; a SQLite file by default. Every method is one short
transaction, so a crash leaves the store as of the last completed step. ``StateStore``
is assembled from one part per concern (``mirror``, ``activity``, ``ledger``,
``queueing``, ``history``), each over the tables of ``tables``.
"""

from __future__ import annotations

from sync.state.activity import ActivityStore
from sync.state.history import (
    INTERRUPTED,
    RUN_BEAT_SECONDS,
    RUN_SILENT_SECONDS,
    RunStore,
    _proc_stat,
    _stop_beats,
    _this_process,
)
from sync.state.ledger import LedgerStore
from sync.state.mirror import MirrorStore
from sync.state.notifications import Notice, NotificationStore
from sync.state.outcomes import OPEN_STATES, OutcomeRow, OutcomeStore
from sync.state.queueing import QueueStore
from sync.state.rows import CONNECT_TIMEOUT, _connect_args, _utc, sqlite_url
from sync.state.tables import (
    activities,
    current_stage,
    field_values,
    identities,
    ledger,
    metadata,
    people,
    queue,
    record_errors,
    runs,
    stage_history,
    to_evaluate,
    watermarks,
)
from sync.state.types import Identity, LedgerEntry
from sync.state.webhooks import WebhookStore


class StateStore(
    MirrorStore,
    ActivityStore,
    LedgerStore,
    OutcomeStore,
    QueueStore,
    RunStore,
    WebhookStore,
    NotificationStore,
):
    """Typed access to the state database."""

    def close(self) -> None:
        """Stop this store's run heartbeats and close its connections."""
        _stop_beats(self)
        self.engine.dispose()


__all__ = [
    "CONNECT_TIMEOUT",
    "INTERRUPTED",
    "OPEN_STATES",
    "RUN_BEAT_SECONDS",
    "RUN_SILENT_SECONDS",
    "Identity",
    "LedgerEntry",
    "Notice",
    "OutcomeRow",
    "StateStore",
    "_connect_args",
    "_proc_stat",
    "_this_process",
    "_utc",
    "activities",
    "current_stage",
    "field_values",
    "identities",
    "ledger",
    "metadata",
    "people",
    "queue",
    "record_errors",
    "runs",
    "sqlite_url",
    "stage_history",
    "to_evaluate",
    "watermarks",
]
