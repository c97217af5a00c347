"""Before a run's first write: the mapping checked against the live CRMs (cached).

``handoff validate`` checks the mapping files against the CRMs when asked; a run checks
them too, before it writes anything, so a field mapped to a property that does not exist
stops the run with one line per problem (exit 2) instead of half the writes failing. The
check costs a few schema reads per CRM; it is repeated only when the mapping changes or a
day has passed (``CHECK_TTL``), remembered in the state as a watermark of stream
``mapping_checked``. Problems of reps (a rep with no active user) are left to routing,
which gives that rep nothing and says why.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path

import structlog

from connectors.base import Connector
from crm_handoff.errors import ConfigError
from mappings.loader import locate
from mappings.models import MappingSet
from sync.live import read_problems
from sync.state import StateStore

log = structlog.get_logger("handoff.preflight")

CHECK_TTL = timedelta(hours=24)
STREAM = "mapping_checked"


def fingerprint(mapping: MappingSet) -> str:
    """A short hash of the mapping's content: a changed file means a new check."""
    return hashlib.sha256(mapping.model_dump_json().encode()).hexdigest()[:16]


def check_before_writes(
    mapping: MappingSet,
    state: StateStore,
    connectors: Mapping[str, Connector],
    config: Path | str | None,
    now: datetime,
    remember: bool = True,
) -> None:
    """Raise ``ConfigError`` (one line per problem) when the mapping does not fit the CRMs."""
    mark = fingerprint(mapping)
    due = {
        crm: conn for crm, conn in connectors.items() if not _fresh(state.watermark(crm, STREAM), mark, now)
    }
    if not due:
        return
    problems = [p for p in read_problems(mapping, due) if p[0] != "reps"]
    if problems:
        raise ConfigError(locate(config, problems))
    log.info("mapping_checked", crms=sorted(due))
    if remember:
        for crm in due:
            state.set_watermark(crm, STREAM, f"{mark}@{now.isoformat()}")


def _fresh(value: str | None, mark: str, now: datetime) -> bool:
    if not value or "@" not in value:
        return False
    seen, _, at = value.partition("@")
    try:
        return seen == mark and now - datetime.fromisoformat(at) < CHECK_TTL
    except (TypeError, ValueError):
        return False
