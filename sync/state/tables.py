"""The state database's tables (SQLAlchemy Core); migrations produce exactly these."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

watermarks = Table(
    "watermarks",
    metadata,
    Column("crm", String(20), primary_key=True),
    Column("stream", String(40), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

people = Table(  # the last pulled version of every person: merges never call a CRM
    "people",
    metadata,
    Column("crm", String(20), primary_key=True),
    Column("id", String(32), primary_key=True),
    Column("object_type", String(16), nullable=False),
    Column("email", String(320), index=True),
    Column("record", JSON, nullable=False),
    Column("modified_at", DateTime(timezone=True), nullable=False),
)

identities = Table(
    "identities",
    metadata,
    Column("person_key", String(64), primary_key=True),
    Column("hubspot_id", String(32), unique=True),
    Column("salesforce_id", String(32), unique=True),
    Column("salesforce_type", String(16)),
    Column("email", String(320), index=True),
)

field_values = Table(
    "field_values",
    metadata,
    Column("person_key", String(64), primary_key=True),
    Column("field", String(64), primary_key=True),
    Column("value", Text),
)

activities = Table(
    "activities",
    metadata,
    Column("crm", String(20), primary_key=True),
    Column("activity_id", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False, index=True),
    Column("person_id", String(32), index=True),
    Column("email", String(320), index=True),
    Column("title", String(500), nullable=False, default=""),
)

ledger = Table(
    "ledger",
    metadata,
    Column("key", String(80), primary_key=True),
    Column("crm", String(20), primary_key=True),
    Column("person_key", String(64), nullable=False, index=True),
    Column("episode", Integer, nullable=False),
    Column("rep_email", String(320), nullable=False, index=True),
    Column("week_start", Date, nullable=False),
    Column("status", String(16), nullable=False),  # intent | done | failed
    Column("task_id", String(64)),
    Column("score", Integer, nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("planned_at", DateTime(timezone=True), nullable=False),
    Column("confirmed_at", DateTime(timezone=True)),
    Column("error", Text),
    Column("run_id", Integer),
)

queue = Table(
    "queue",
    metadata,
    Column("person_key", String(64), primary_key=True),
    Column("score", Integer, nullable=False),
    Column("snapshot", JSON, nullable=False),
    Column("reason", Text, nullable=False),
    Column("status_written", Text),
    Column("queued_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("valid_until", DateTime(timezone=True), index=True),  # the snapshot's, queryable
    Index("ix_queue_order", "score", "queued_at", "person_key"),
)

to_evaluate = Table(  # people to evaluate again: new activity, lapsing scores (``sync.ingest``)
    "to_evaluate",
    metadata,
    Column("kind", String(20), primary_key=True),  # a CRM (ref: its record id), "email" or "key"
    Column("ref", String(320), primary_key=True),
    Column("marked_at", DateTime(timezone=True), nullable=False),
)

stage_history = Table(
    "stage_history",
    metadata,
    Column("person_key", String(64), primary_key=True),
    Column("stage", String(40), primary_key=True),
    Column("entered_at", DateTime(timezone=True), nullable=False),
)

current_stage = Table(
    "current_stage",
    metadata,
    Column("person_key", String(64), primary_key=True),
    Column("stage", String(40), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("status", String(16), nullable=False),  # running | ok | partial | failed | stopped
    Column("summary", JSON),
)

record_errors = Table(
    "record_errors",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, index=True),
    Column("crm", String(20), nullable=False),
    Column("record", String(120), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("resolved", Boolean, nullable=False, default=False),
    UniqueConstraint("run_id", "crm", "record", name="uq_record_error"),
)


outcomes = Table(  # what became of each handoff (key = the ledger's): ``sync.followup``
    "outcomes",
    metadata,
    Column("key", String(80), primary_key=True),
    Column("person_key", String(64), nullable=False, index=True),
    Column("rep_email", String(320), nullable=False, index=True),
    Column("assigned_at", DateTime(timezone=True), nullable=False),
    Column("due_at", DateTime(timezone=True)),  # first touch due (business hours); None: no SLA
    Column("state", String(16), nullable=False, index=True),  # open | acted | worked | rejected | ...
    Column("sla", String(8), nullable=False),  # open | met | missed | none
    Column("first_touch_at", DateTime(timezone=True)),
    Column("first_touch_kind", String(20)),
    Column("completed_at", DateTime(timezone=True)),
    Column("outcome", String(40)),  # the rep's picklist value
    Column("reason", Text),
    Column("decided_at", DateTime(timezone=True)),
    Column("reassignments", Integer, nullable=False, default=0),
    Column("next_key", String(80)),  # the handoff this one was reassigned or rerouted to
    Column("gave_back", Boolean, nullable=False, default=False),  # rejected soon enough: slot returned
    Column("late", Text),  # what the rep did after the handoff had ended (kept, not acted on)
    Column("written", Text),  # the HubSpot outcome properties last written (a JSON digest)
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

webhook_deliveries = Table(  # webhook events as received (``sync.webhooks``), one per event id
    "webhook_deliveries",
    metadata,
    Column("crm", String(20), primary_key=True),
    Column("event_id", String(40), primary_key=True),
    Column("kind", String(64), nullable=False),  # the subscription type
    Column("object_id", String(32), nullable=False),
    Column("people", JSON, nullable=False),  # record ids to read again
    Column("occurred_at", DateTime(timezone=True)),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("processed_at", DateTime(timezone=True)),  # null: pending
    Column("event", JSON, nullable=False),
    Index("ix_webhook_deliveries_pending", "processed_at", "received_at"),
)

notifications = Table(  # the notification outbox (``sync.notify``): one message per handoff, kind and channel
    "notifications",
    metadata,
    Column("key", String(80), primary_key=True),  # the handoff's ledger key
    Column("kind", String(16), primary_key=True),  # handoff | breach
    Column("channel", String(16), primary_key=True),  # slack | email
    Column("rep_email", String(320), nullable=False),
    Column("target", String(320), nullable=False),  # the email address, or the env var holding the webhook
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("link", Text),
    Column("status", String(16), nullable=False),  # pending | sent | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", Text),  # the last failure (never a secret)
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True)),
    Index("ix_notifications_pending", "status", "created_at"),
)
