"""What a cycle runs against: the mapping, the state store and the connectors.

``Engine`` holds the cycle's dependencies and the few facts every stage asks of them
(processing order, the behaviour window, where a rep's tasks go). The stages themselves
live in ``sync.ingest``, ``sync.evaluate``, ``sync.plan`` and ``sync.execute``;
``sync.cycle.run_cycle`` runs them in that order.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Literal

from connectors.base import Connector
from crm_handoff.clock import Clock, utc_now
from crm_handoff.records import Person
from mappings.models import MappingSet, Rep
from sync.state import StateStore

DEFAULT_LOOKBACK = timedelta(minutes=1)  # people: search-index lag and clock skew, not the interval
DEFAULT_ACTIVITY_LOOKBACK = timedelta(minutes=5)  # activity: events are ingested later than they occur


class Engine:
    """The cycle's dependencies: a mapping, a state store and one connector per CRM."""

    def __init__(
        self,
        mapping: MappingSet,
        state: StateStore,
        connectors: Mapping[str, Connector],
        lookback: timedelta = DEFAULT_LOOKBACK,
        clock: Clock = utc_now,
        activity_lookback: timedelta = DEFAULT_ACTIVITY_LOOKBACK,
        config_path: Path | str | None = None,
    ) -> None:
        self.mapping = mapping
        self.config_path = config_path  # where the mapping files are, for error lines
        self.state = state
        self.connectors = connectors
        self.lookback = lookback
        self.activity_lookback = activity_lookback
        self.clock = clock  # stamps watermarks and the owners cache
        #: What started the cycle: the schedule (a full ingest) or webhook deliveries (a
        #: micro-cycle: ingest reads just the contacts they name, ``sync.ingest``).
        self.trigger: Literal["schedule", "webhooks"] = "schedule"
        #: The CRMs this cycle pulls (a schedule job's ``crms``; None: all). The others are not
        #: read at all (their watermarks stay), but still receive the writes a handoff needs.
        self.pulls: tuple[str, ...] | None = None

    @property
    def order(self) -> list[str]:
        """The CRMs in processing order: those whose activity is pulled on a thread of its
        own (rate-limited, ``Connector.activity_in_background``) come last, so the others'
        pulls and processing (CPU) overlap that activity pull."""
        return sorted(self.connectors, key=lambda crm: self.connectors[crm].activity_in_background)

    @property
    def pull_order(self) -> list[str]:
        """The CRMs this cycle pulls, in processing order (``pulls``)."""
        return [crm for crm in self.order if self.pulls is None or crm in self.pulls]

    @property
    def window_days(self) -> int:
        """The longest behaviour window of the sales-ready definition, in days."""
        return self.mapping.sales_ready.longest_window_days

    def task_crms(self, rep: Rep) -> tuple[str, ...]:
        """The CRMs a handoff to ``rep`` writes its task in (``handoff.yaml`` ``task_in``)."""
        where = self.mapping.handoff.task_in
        crms = (
            tuple(sorted(self.connectors))
            if where == "both"
            else (rep.works_in if where == "rep_crm" else where,)
        )
        return tuple(c for c in crms if c in self.connectors)


def same_record(pulled: Person, mirrored: Person, stamps: frozenset[str]) -> bool:
    """True when ``pulled`` holds what the mirror holds, modification stamps aside.

    Only the values the pull returned are compared: the mirror may also hold values we
    wrote but do not read back.
    """
    if pulled.deleted or (pulled.email or "").lower() != (mirrored.email or "").lower():
        return False
    if (
        pulled.object_type,
        pulled.owner_id,
        pulled.linked_id,
        pulled.converted_to,
        pulled.opportunity_stage,
    ) != (
        mirrored.object_type,
        mirrored.owner_id,
        mirrored.linked_id,
        mirrored.converted_to,
        mirrored.opportunity_stage,
    ):
        return False
    return all(v == mirrored.values.get(k) for k, v in pulled.values.items() if k not in stamps)
