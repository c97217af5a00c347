"""In-memory Salesforce records: validation like the API, Ids, audit stamps, soft delete.

Each record is an immutable tuple whose slots follow the sObject's field order in
``schema.py`` (small per-record overhead for ~1M leads; query cursors can hold rows without
copying). Audit stamps are whole seconds, like Salesforce's, so bulk writes share a
``SystemModstamp``. One re-entrant lock guards everything; ``atomic()`` gives all-or-none.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from .schema import (
    CLOSED_TASK_STATUSES,
    CONVERTED_LEAD_STATUS,
    RESPONDED_MEMBER_STATUSES,
    SOBJECTS,
    FieldDef,
    SObjectDef,
    parse_datetime,
    sobject,
    sobject_for_id,
    to_wire,
)
from .soql import Plan, full_id

Row = tuple[Any, ...]
Clock = Callable[[], datetime]

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ID_RE = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TEXT = frozenset({"string", "textarea", "email", "phone"})
SAVE_FORMAT = "crm-handoff-salesforce-sandbox/1"


class RecordError(Exception):
    """A per-record failure as Salesforce reports it (``statusCode``, ``message``, ``fields``)."""

    def __init__(self, status_code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(f"{status_code}: {message}")
        self.status_code = status_code
        self.message = message
        self.fields = fields or []

    def as_error(self) -> dict[str, Any]:
        return {"statusCode": self.status_code, "message": self.message, "fields": self.fields}


def make_id(prefix: str, number: int) -> str:
    """An 18-character Id: key prefix, pod ``5g0``, base-62 counter (sorts by creation)."""
    digits = ""
    while number:
        number, rem = divmod(number, 62)
        digits = _BASE62[rem] + digits
    return full_id(prefix + "5g0" + digits.rjust(9, "0"))


@dataclass(slots=True)
class _Table:
    definition: SObjectDef
    rows: dict[str, Row] = field(default_factory=dict)
    unique: dict[int, dict[str, str]] = field(default_factory=dict)
    deleted_log: list[tuple[str, datetime]] = field(default_factory=list)
    required: tuple[int, ...] = ()
    references: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        fields = self.definition.fields
        self.unique = {i: {} for i, f in enumerate(fields) if f.unique}
        self.required = tuple(i for i, f in enumerate(fields) if f.required)
        self.references = tuple(i for i, f in enumerate(fields) if f.type == "reference")


def _pos(definition: SObjectDef, name: str) -> int:
    """Slot of a field by its canonical name."""
    return definition.by_name[name]


class SalesforceStore:
    """All sandbox records, by sObject. Thread-safe."""

    def __init__(
        self, clock: Clock | None = None, integration_user: bool = True, custom_fields: bool = True
    ) -> None:
        """``custom_fields=False``: an org where crm-handoff's ``__c`` fields are not installed
        (``add_field``, i.e. the Metadata API, can create them)."""
        self.lock = threading.RLock()
        self._clock = clock
        self._tables = {
            name: _Table(d if custom_fields else d.without_custom_fields()) for name, d in SOBJECTS.items()
        }
        self._counters: dict[str, int] = {}
        self._undo: list[Callable[[], None]] | None = None
        self.integration_user_id: str | None = None
        if integration_user:
            self.integration_user_id = self.insert(
                "User",
                {
                    "Username": "integration@crm-handoff.sandbox",
                    "Email": "integration@crm-handoff.sandbox",
                    "FirstName": "Integration",
                    "LastName": "User",
                    "TimeZoneSidKey": "UTC",
                },
            )

    # ------------------------------------------------------------------ time and ids

    def now(self) -> datetime:
        """Current time (from the clock, if given), truncated to whole seconds, UTC."""
        current = self._clock() if self._clock else datetime.now(UTC)
        return _stamp(current)

    def _new_id(self, definition: SObjectDef) -> str:
        n = self._counters.get(definition.key_prefix, 0) + 1
        self._counters[definition.key_prefix] = n
        return make_id(definition.key_prefix, n)

    # ------------------------------------------------------------------ public API

    def insert(self, sobject_name: str, fields: dict[str, Any], at: datetime | None = None) -> str:
        """Create a record; applies defaults and validates like the API. Returns its Id."""
        table = self._table(sobject_name)
        definition = table.definition
        with self.lock:
            values: list[Any] = [f.default for f in definition.fields]
            for name, value in fields.items():
                if name == "attributes":
                    continue
                fdef, pos = self._writable(definition, name, creating=True)
                values[pos] = _convert(fdef, value)
            self._defaults(definition, values)
            self._check(definition, values, None)
            stamp = _stamp(at) if at else self.now()
            record_id = self._new_id(definition)
            values[0] = record_id
            for name in ("CreatedDate", "LastModifiedDate", "SystemModstamp"):
                values[_pos(definition, name)] = stamp
            self._derive(definition, values, None, stamp)
            self._put(table, record_id, tuple(values))
            return record_id

    def update(
        self, sobject_name: str, record_id: str, fields: dict[str, Any], at: datetime | None = None
    ) -> None:
        """Change fields on a live record; validates like the API."""
        table = self._table(sobject_name)
        definition = table.definition
        with self.lock:
            old = self._live(table, record_id)
            if definition.name == "Lead" and old[_pos(definition, "IsConverted")]:
                raise RecordError("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [])
            values = list(old)
            for name, value in fields.items():
                if name == "attributes" or (name.lower() == "id" and full_id(str(value)) == old[0]):
                    continue
                fdef, pos = self._writable(definition, name, creating=False)
                values[pos] = _convert(fdef, value)
            self._check(definition, values, old)
            stamp = _stamp(at) if at else self.now()
            values[_pos(definition, "LastModifiedDate")] = stamp
            values[_pos(definition, "SystemModstamp")] = stamp
            self._derive(definition, values, old, stamp)
            self._put(table, old[0], tuple(values))

    def delete(self, sobject_name: str, record_id: str, at: datetime | None = None) -> None:
        """Soft delete: IsDeleted=true, logged for getDeleted, still visible to queryAll."""
        table = self._table(sobject_name)
        with self.lock:
            old = self._live(table, record_id)
            stamp = _stamp(at) if at else self.now()
            values = list(old)
            values[_pos(table.definition, "IsDeleted")] = True
            values[_pos(table.definition, "SystemModstamp")] = stamp
            self._put(table, old[0], tuple(values))
            table.deleted_log.append((old[0], stamp))
            if self._undo is not None:
                self._undo.append(lambda: _drop_last(table.deleted_log))

    def purge(self, sobject_name: str, record_ids: list[str]) -> None:
        """Hard delete with the Recycle Bin emptied and the delete log purged: the records
        vanish without a trace for queryAll and getDeleted (test helper)."""
        table = self._table(sobject_name)
        with self.lock:
            gone = {full_id(i) for i in record_ids}
            for rid in gone:
                table.rows.pop(rid, None)
            table.deleted_log[:] = [e for e in table.deleted_log if e[0] not in gone]

    def get(self, sobject_name: str, record_id: str) -> dict[str, Any] | None:
        """Current field values (deleted records too, with IsDeleted=True), or None."""
        table = self._table(sobject_name)
        with self.lock:
            row = table.rows.get(full_id(record_id))
        return None if row is None else _as_dict(table.definition, row)

    def all(self, sobject_name: str, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Every record of an sObject, in creation order."""
        table = self._table(sobject_name)
        deleted = _pos(table.definition, "IsDeleted")
        with self.lock:
            rows = list(table.rows.values())
        return [_as_dict(table.definition, r) for r in rows if include_deleted or not r[deleted]]

    def convert_lead(
        self,
        lead_id: str,
        contact_fields: dict[str, Any] | None = None,
        opportunity: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Convert a lead (test helper): creates Account, Contact and optionally an Opportunity
        (with the contact as its primary contact role).

        Returns the converted lead's field values.
        """
        with self.atomic() as rollback:
            try:
                return self._convert_lead(lead_id, contact_fields or {}, opportunity)
            except Exception:
                rollback()
                raise

    def _convert_lead(
        self, lead_id: str, contact_fields: dict[str, Any], opportunity: dict[str, Any] | None
    ) -> dict[str, Any]:
        lead = self.get("Lead", lead_id)
        if lead is None or lead["IsDeleted"]:
            raise RecordError("ENTITY_IS_DELETED", "entity is deleted")
        if lead["IsConverted"]:
            raise RecordError("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead")
        owner = lead["OwnerId"] if self._is_user(lead["OwnerId"]) else None
        account_id = self.insert(
            "Account",
            _compact(
                Name=lead["Company"],
                Industry=lead["Industry"],
                NumberOfEmployees=lead["NumberOfEmployees"],
                BillingCountry=lead["Country"],
                OwnerId=owner,
            ),
        )
        contact = _compact(
            AccountId=account_id,
            FirstName=lead["FirstName"],
            LastName=lead["LastName"],
            Email=lead["Email"],
            Title=lead["Title"],
            MailingCountry=lead["Country"],
            Phone=lead["Phone"],
            LeadSource=lead["LeadSource"],
            OwnerId=owner,
            HubSpot_Contact_Id__c=lead["HubSpot_Contact_Id__c"],
            Handoff_Status__c=lead["Handoff_Status__c"],
            Handoff_Score__c=lead["Handoff_Score__c"],
            Handoff_Reason__c=lead["Handoff_Reason__c"],
        )
        contact_id = self.insert("Contact", {**contact, **contact_fields})
        opportunity_id = None
        if opportunity is not None:
            opp = _compact(
                Name=f"{lead['Company']}-",
                AccountId=account_id,
                StageName="Prospecting",
                CloseDate=(self.now() + timedelta(days=30)).date().isoformat(),
                LeadSource=lead["LeadSource"],
                OwnerId=owner,
                ContactId=contact_id,
            )
            opportunity_id = self.insert("Opportunity", {**opp, **opportunity})
            # as Salesforce does: the converted contact becomes the opportunity's primary
            # contact role (no role given)
            self.insert(
                "OpportunityContactRole",
                {"OpportunityId": opportunity_id, "ContactId": contact_id, "IsPrimary": True},
            )
        self._mark_converted(lead["Id"], account_id, contact_id, opportunity_id)
        converted = self.get("Lead", lead["Id"])
        assert converted is not None
        return converted

    def set_bulk_modstamp(self, sobject_name: str, ids: list[str], at: datetime) -> None:
        """Test helper: give many records one SystemModstamp (as a bulk job would)."""
        table = self._table(sobject_name)
        definition = table.definition
        stamp = _stamp(at)
        modstamp, modified = _pos(definition, "SystemModstamp"), _pos(definition, "LastModifiedDate")
        with self.lock:
            for record_id in ids:
                values = list(self._row(table, record_id))
                values[modstamp] = stamp
                values[modified] = min(values[modified], stamp)
                self._put(table, values[0], tuple(values))

    # ------------------------------------------------------------------ used by the app

    def definition(self, sobject_name: str) -> SObjectDef:
        return self._table(sobject_name).definition

    def schema(self, sobject_name: str) -> SObjectDef | None:
        """This store's definition of an sObject (None if unknown): what SOQL may see."""
        base = sobject(sobject_name)
        return None if base is None else self._tables[base.name].definition

    def add_field(self, sobject_name: str, fdef: FieldDef) -> None:
        """Create a custom field at runtime (the Metadata API); existing rows hold null.

        Raises ``RecordError('DUPLICATE_DEVELOPER_NAME')`` if the field exists."""
        table = self._table(sobject_name)
        with self.lock:
            old = table.definition
            if old.field(fdef.name) is not None:
                raise RecordError(
                    "DUPLICATE_DEVELOPER_NAME",
                    f"There is already a field named {fdef.name.removesuffix('__c')} on {old.name}.",
                )
            new = old.with_field(fdef)
            if len(new.fields) > len(old.fields):
                table.rows = {rid: (*row, None) for rid, row in table.rows.items()}
            table.definition = new
            table.unique = {i: table.unique.get(i, {}) for i, f in enumerate(new.fields) if f.unique}
            table.required = tuple(i for i, f in enumerate(new.fields) if f.required)
            table.references = tuple(i for i, f in enumerate(new.fields) if f.type == "reference")

    def update_field(self, sobject_name: str, fdef: FieldDef) -> None:
        """Change a custom field's definition (the Metadata API's ``updateMetadata``): its
        label and picklist values; rows keep their values. Raises ``RecordError`` if the
        field does not exist or is not custom."""
        table = self._table(sobject_name)
        with self.lock:
            old = table.definition
            current = old.field(fdef.name)
            if current is None or not current.custom:
                raise RecordError(
                    "INVALID_CROSS_REFERENCE_KEY",
                    f"In field: fullName - no CustomField named {old.name}.{fdef.name} found",
                )
            if current.type != fdef.type:
                raise RecordError(
                    "FIELD_INTEGRITY_EXCEPTION", f"Cannot change the type of {old.name}.{current.name} here"
                )
            changed = replace(fdef, name=current.name, length=current.length or fdef.length)
            fields = tuple(changed if f is current else f for f in old.fields)
            table.definition = SObjectDef(old.name, old.key_prefix, fields, old.hidden)

    def resolve(self, record_id: str) -> tuple[SObjectDef, Row] | None:
        """The live record with this Id, whatever its sObject."""
        base = sobject_for_id(record_id)
        if base is None:
            return None
        table = self._tables[base.name]
        definition = table.definition
        row = table.rows.get(full_id(record_id))
        if row is None or row[_pos(definition, "IsDeleted")]:
            return None
        return definition, row

    def run(self, plan: Plan, include_deleted: bool = False) -> list[Row]:
        """Evaluate a compiled query over a consistent view of the table."""
        table = self._tables[plan.sobject.name]
        deleted = _pos(plan.sobject, "IsDeleted")
        with self.lock:
            rows = table.rows.values()
            source = rows if include_deleted else (r for r in rows if not r[deleted])
            return plan.run(source)

    def find(self, sobject_name: str, field_name: str, value: Any) -> list[str]:
        """Ids of live records whose field equals ``value`` (external-id lookups)."""
        table = self._table(sobject_name)
        definition = table.definition
        fdef = definition.field(field_name)
        if fdef is None:
            raise RecordError("INVALID_FIELD", f"No such column '{field_name}' on {definition.name}")
        pos = _pos(definition, fdef.name)
        deleted = _pos(definition, "IsDeleted")
        with self.lock:
            if pos in table.unique and isinstance(value, str):
                hit = table.unique[pos].get(_key(value))
                return [hit] if hit else []
            target = _convert(fdef, value)
            return [r[0] for r in table.rows.values() if r[pos] == target and not r[deleted]]

    def updated_ids(self, sobject_name: str, start: datetime, end: datetime) -> list[str]:
        """Ids of live records whose SystemModstamp is in [start, end)."""
        table = self._table(sobject_name)
        stamp = _pos(table.definition, "SystemModstamp")
        deleted = _pos(table.definition, "IsDeleted")
        with self.lock:
            return [r[0] for r in table.rows.values() if not r[deleted] and start <= r[stamp] < end]

    def deleted_log(self, sobject_name: str) -> list[tuple[str, datetime]]:
        with self.lock:
            return list(self._table(sobject_name).deleted_log)

    def counts(self) -> dict[str, int]:
        with self.lock:
            return {name: len(t.rows) for name, t in self._tables.items()}

    @contextmanager
    def atomic(self) -> Iterator[Callable[[], None]]:
        """Hold the lock; the yielded ``rollback()`` undoes every write made inside."""
        with self.lock:
            outer, self._undo = self._undo, []
            undo = self._undo

            def rollback() -> None:
                self._undo = None
                while undo:
                    undo.pop()()
                self._undo = undo

            try:
                yield rollback
            finally:
                if outer is not None:
                    outer.extend(undo)
                self._undo = outer

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> None:
        """Write every record (deleted ones too), the delete log and Id counters as JSON."""
        with self.lock:
            doc = {
                "format": SAVE_FORMAT,
                "counters": dict(self._counters),
                "integration_user_id": self.integration_user_id,
                "objects": {name: _dump_rows(t) for name, t in self._tables.items()},
                "deleted": {
                    name: [[rid, to_wire(at)] for rid, at in t.deleted_log]
                    for name, t in self._tables.items()
                },
            }
        Path(path).write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path, clock: Clock | None = None) -> SalesforceStore:
        """Rebuild a store written by ``save``."""
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        if doc.get("format") != SAVE_FORMAT:
            raise ValueError(f"not a Salesforce sandbox save file: {path}")
        store = cls(clock=clock, integration_user=False)
        store.integration_user_id = doc.get("integration_user_id")
        store._counters = {k: int(v) for k, v in doc["counters"].items()}
        for name, records in doc["objects"].items():
            table = store._tables[name]
            memo: dict[Any, Any] = {}
            fields = [(f, f.name) for f in table.definition.fields]
            for record in records:
                row = tuple(_decode(f, record.get(name), memo) for f, name in fields)
                store._put(table, row[0], row)
        for name, entries in doc["deleted"].items():
            store._tables[name].deleted_log = [(rid, parse_datetime(at)) for rid, at in entries]
        return store

    # ------------------------------------------------------------------ internals

    def _table(self, sobject_name: str) -> _Table:
        definition = sobject(sobject_name)
        if definition is None:
            raise RecordError("INVALID_TYPE", f"sObject type '{sobject_name}' is not supported.")
        return self._tables[definition.name]

    def _row(self, table: _Table, record_id: str) -> Row:
        row = table.rows.get(full_id(str(record_id)))
        if row is None:
            raise RecordError("NOT_FOUND", "The requested resource does not exist")
        return row

    def _live(self, table: _Table, record_id: str) -> Row:
        row = self._row(table, record_id)
        if row[_pos(table.definition, "IsDeleted")]:
            raise RecordError("ENTITY_IS_DELETED", "entity is deleted")
        return row

    def _writable(self, definition: SObjectDef, name: str, creating: bool) -> tuple[FieldDef, int]:
        pos = definition.position(name)
        if pos is None:
            raise RecordError(
                "INVALID_FIELD", f"No such column '{name}' on sobject of type {definition.name}"
            )
        fdef = definition.fields[pos]
        if not (fdef.createable if creating else fdef.updateable):
            raise RecordError(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {fdef.name}. Please check the security settings "
                "of this field and verify that it is read/write for your profile or permission set.",
                [fdef.name],
            )
        return fdef, pos

    def _defaults(self, definition: SObjectDef, values: list[Any]) -> None:
        owner = definition.position("OwnerId")
        if owner is not None and values[owner] is None and definition.name != "User":
            values[owner] = self.integration_user_id

    def _check(self, definition: SObjectDef, values: list[Any], old: Row | None) -> None:
        table = self._tables[definition.name]
        missing = [definition.fields[p].name for p in table.required if values[p] is None]
        if missing:
            raise RecordError(
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(missing)}]",
                missing,
            )
        for pos in table.references:
            value = values[pos]
            if value is not None and (old is None or old[pos] != value):
                self._check_reference(definition.fields[pos], value)
        self._object_rules(definition, values)
        self._check_unique(definition, values, old)

    def _check_reference(self, fdef: FieldDef, record_id: str) -> None:
        target = sobject_for_id(record_id)
        if target is None or target.name not in fdef.reference_to:
            raise RecordError(
                "FIELD_INTEGRITY_EXCEPTION",
                f"{_label(fdef)}: id value of incorrect type: {record_id}",
                [fdef.name],
            )
        found = self.resolve(record_id)
        if found is None:
            raise RecordError(
                "INVALID_CROSS_REFERENCE_KEY",
                f"invalid cross reference id: {fdef.name} {record_id}",
                [fdef.name],
            )
        if fdef.name == "OwnerId" and not found[1][_pos(found[0], "IsActive")]:
            raise RecordError(
                "INACTIVE_OWNER_OR_USER",
                f"operation performed with inactive user [{record_id}] as owner of {fdef.name.lower()}",
                [fdef.name],
            )

    def _object_rules(self, definition: SObjectDef, values: list[Any]) -> None:
        if definition.name in ("Task", "Event"):
            who, what = values[_pos(definition, "WhoId")], values[_pos(definition, "WhatId")]
            if who and what and who.startswith("00Q"):
                raise RecordError(
                    "FIELD_INTEGRITY_EXCEPTION",
                    "Related To ID: You can't associate a lead with another record; "
                    "WhatId must be empty when WhoId is a Lead.",
                    ["WhatId"],
                )
        lead_or_contact = ("LeadId", "ContactId")
        if definition.name == "CampaignMember" and not any(
            values[_pos(definition, name)] for name in lead_or_contact
        ):
            raise RecordError(
                "REQUIRED_FIELD_MISSING",
                "Required fields are missing: [LeadId or ContactId]",
                ["LeadId", "ContactId"],
            )

    def _check_unique(self, definition: SObjectDef, values: list[Any], old: Row | None) -> None:
        table = self._tables[definition.name]
        for pos, index in table.unique.items():
            value = values[pos]
            if value is None:
                continue
            holder = index.get(_key(value))
            if holder is not None and (old is None or holder != old[0]):
                name = definition.fields[pos].name
                raise RecordError(
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {name} duplicates value on record with id: {holder}",
                    [name],
                )

    def _derive(self, definition: SObjectDef, values: list[Any], old: Row | None, stamp: datetime) -> None:
        """Fields Salesforce computes: Name, IsClosed/IsWon, HasResponded."""
        name = definition.position("Name")
        first = definition.position("FirstName")
        if name is not None and first is not None:
            last = values[_pos(definition, "LastName")]
            values[name] = " ".join(p for p in (values[first], last) if p)
        if definition.name == "Opportunity":
            stage = values[_pos(definition, "StageName")]
            values[_pos(definition, "IsClosed")] = stage in ("Closed Won", "Closed Lost")
            values[_pos(definition, "IsWon")] = stage == "Closed Won"
            if old is not None and old[_pos(definition, "StageName")] != stage:
                values[_pos(definition, "LastStageChangeDate")] = stamp
        if definition.name == "Task":
            closed = values[_pos(definition, "Status")] in CLOSED_TASK_STATUSES
            values[_pos(definition, "IsClosed")] = closed
            was_closed = old is not None and old[_pos(definition, "IsClosed")]
            completed = _pos(definition, "CompletedDateTime")  # saved with a closed status
            if not closed:
                values[completed] = None
            elif not was_closed or values[completed] is None:
                values[completed] = stamp
        if definition.name == "CampaignMember":
            responded = values[_pos(definition, "Status")] in RESPONDED_MEMBER_STATUSES
            values[_pos(definition, "HasResponded")] = responded
            first_resp = _pos(definition, "FirstRespondedDate")
            if responded and values[first_resp] is None:
                values[first_resp] = stamp.date()

    def _mark_converted(
        self, lead_id: str, account_id: str, contact_id: str, opportunity_id: str | None
    ) -> None:
        table = self._tables["Lead"]
        definition = table.definition
        values = list(self._live(table, lead_id))
        stamp = self.now()
        for name, value in (
            ("IsConverted", True),
            ("ConvertedAccountId", account_id),
            ("ConvertedContactId", contact_id),
            ("ConvertedOpportunityId", opportunity_id),
            ("ConvertedDate", stamp.date()),
            ("Status", CONVERTED_LEAD_STATUS),
            ("LastModifiedDate", stamp),
            ("SystemModstamp", stamp),
        ):
            values[_pos(definition, name)] = value
        self._put(table, values[0], tuple(values))

    def _is_user(self, record_id: str | None) -> bool:
        found = self.resolve(record_id) if record_id else None
        return found is not None and found[0].name == "User" and bool(found[1][_pos(found[0], "IsActive")])

    def _put(self, table: _Table, record_id: str, row: Row | None) -> None:
        """Store (or remove) a row, keep unique indexes, and record the undo step."""
        old = table.rows.get(record_id)
        self._reindex(table, record_id, old, row)
        if row is None:
            del table.rows[record_id]
        else:
            table.rows[record_id] = row
        if self._undo is not None:
            self._undo.append(lambda: self._raw_restore(table, record_id, row, old))

    def _raw_restore(self, table: _Table, record_id: str, current: Row | None, old: Row | None) -> None:
        self._reindex(table, record_id, current, old)
        if old is None:
            table.rows.pop(record_id, None)
        else:
            table.rows[record_id] = old

    def _reindex(self, table: _Table, record_id: str, old: Row | None, new: Row | None) -> None:
        deleted = _pos(table.definition, "IsDeleted")
        for pos, index in table.unique.items():
            if old is not None and old[pos] is not None and not old[deleted]:
                key = _key(old[pos])
                if index.get(key) == record_id:
                    del index[key]
            if new is not None and new[pos] is not None and not new[deleted]:
                index[_key(new[pos])] = record_id


# ---------------------------------------------------------------------- value conversion


def _dump_rows(table: _Table) -> list[dict[str, Any]]:
    """Rows as wire-format dicts; datetime strings memoised (bulk writes share stamps)."""
    memo: dict[Any, Any] = {}

    def wire(value: Any) -> Any:
        if not isinstance(value, date):
            return value
        text = memo.get(value)
        if text is None:
            text = memo[value] = to_wire(value)
        return text

    names = [f.name for f in table.definition.fields]
    return [
        {name: wire(v) for name, v in zip(names, row, strict=True) if v is not None}
        for row in table.rows.values()
    ]


def _key(value: Any) -> str:
    """Case-insensitive unique-index key; reuses the value's string when already lower case."""
    text = str(value)
    lowered = text.lower()
    return text if lowered == text else lowered


def _drop_last(log: list[tuple[str, datetime]]) -> None:
    log.pop()


def _stamp(value: datetime) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)


def _label(fdef: FieldDef) -> str:
    return fdef.name[:-2] + " ID" if fdef.name.endswith("Id") else fdef.name


def _compact(**values: Any) -> dict[str, Any]:
    return {k: to_wire(v) for k, v in values.items() if v is not None}


def _as_dict(definition: SObjectDef, row: Row) -> dict[str, Any]:
    hidden = definition.hidden
    return {f.name: v for f, v in zip(definition.fields, row, strict=True) if f.name not in hidden}


def _bad_type(fdef: FieldDef, value: Any) -> RecordError:
    return RecordError(
        "INVALID_TYPE_ON_FIELD_IN_RECORD",
        f"{fdef.name}: value not of required type: {value}",
        [fdef.name],
    )


def _convert(fdef: FieldDef, value: Any) -> Any:
    """A JSON value as the stored Python value for this field; RecordError if invalid."""
    if value is None or value == "":
        return None
    converter: Callable[[FieldDef, Any], Any] = _CONVERTERS.get(fdef.type, _to_text)
    return converter(fdef, value)


def _to_text(fdef: FieldDef, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _bad_type(fdef, value)
    text = str(value)
    if fdef.length and len(text) > fdef.length:
        raise RecordError(
            "STRING_TOO_LONG",
            f"{fdef.name}: data value too large: {text[:40]} (max length={fdef.length})",
            [fdef.name],
        )
    if fdef.type == "email" and not _EMAIL_RE.match(text):
        raise RecordError("INVALID_EMAIL_ADDRESS", f"{fdef.name}: invalid email address: {text}", [fdef.name])
    return text


def _to_picklist(fdef: FieldDef, value: Any) -> str:
    text = str(value)
    for allowed in fdef.picklist:
        if allowed.lower() == text.lower():
            return allowed  # the schema's (shared) string object
    if not fdef.restricted:
        return _to_text(fdef, value)
    raise RecordError(
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        f"{_label(fdef)}: bad value for restricted picklist field: {text}",
        [fdef.name],
    )


def _to_reference(fdef: FieldDef, value: Any) -> str:
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise RecordError("MALFORMED_ID", f"{_label(fdef)}: id value of incorrect type: {value}", [fdef.name])
    return full_id(value)


def _to_int(fdef: FieldDef, value: Any) -> int:
    number = _to_float(fdef, value)
    if not number.is_integer():
        raise _bad_type(fdef, value)
    return int(number)


def _to_float(fdef: FieldDef, value: Any) -> float:
    if isinstance(value, bool):
        raise _bad_type(fdef, value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _bad_type(fdef, value) from None


def _to_bool(fdef: FieldDef, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _bad_type(fdef, value)


def _to_date(fdef: FieldDef, value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise _bad_type(fdef, value) from None


def _to_datetime(fdef: FieldDef, value: Any) -> datetime:
    if isinstance(value, datetime):
        return _stamp(value) if value.tzinfo is None else value.astimezone(UTC)
    try:
        return parse_datetime(str(value))
    except ValueError:
        raise _bad_type(fdef, value) from None


_CONVERTERS: dict[str, Callable[[FieldDef, Any], Any]] = {
    "picklist": _to_picklist,
    "reference": _to_reference,
    "id": _to_reference,
    "int": _to_int,
    "double": _to_float,
    "currency": _to_float,
    "percent": _to_float,
    "boolean": _to_bool,
    "date": _to_date,
    "datetime": _to_datetime,
}


def _decode(fdef: FieldDef, value: Any, memo: dict[Any, Any]) -> Any:
    """A saved JSON value back to its stored form (no validation)."""
    if value is None or fdef.type not in ("datetime", "date", "picklist"):
        return value
    decoded = memo.get((fdef.type, value))
    if decoded is None:
        if fdef.type == "datetime":
            decoded = parse_datetime(value)
        elif fdef.type == "date":
            decoded = date.fromisoformat(value)
        else:
            decoded = sys.intern(value)
        memo[(fdef.type, value)] = decoded
    return decoded
