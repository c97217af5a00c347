"""The mirror: watermarks, the last pulled version of every person, identity links, synced field values."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    delete,
    func,
    insert,
    select,
    update,
)

from crm_handoff.records import Person
from sync.state.base import _Store
from sync.state.rows import (
    _parts,
    _person_from_row,
    _person_row,
    _upsert,
)
from sync.state.tables import (
    field_values,
    identities,
    ledger,
    people,
    watermarks,
)
from sync.state.types import Identity


class MirrorStore(_Store):
    """The mirror: watermarks, the last pulled version of every person, identity links, synced field values."""

    def watermark(self, crm: str, stream: str) -> str | None:
        with self._connect() as conn:
            row = conn.execute(
                select(watermarks.c.value).where(watermarks.c.crm == crm, watermarks.c.stream == stream)
            ).first()
        return row[0] if row else None

    def set_watermark(self, crm: str, stream: str, value: str) -> None:
        now = datetime.now(UTC)
        with self._begin() as conn:
            done = conn.execute(
                update(watermarks)
                .where(watermarks.c.crm == crm, watermarks.c.stream == stream)
                .values(value=value, updated_at=now)
            ).rowcount
            if not done:
                conn.execute(insert(watermarks).values(crm=crm, stream=stream, value=value, updated_at=now))

    def save_people(self, items: Sequence[Person]) -> None:
        """Upsert the pulled version of each person (by CRM and id)."""
        if not items:
            return
        latest = {(p.crm, p.id): p for p in items}
        with self._begin() as conn:
            _upsert(conn, people, [_person_row(p) for p in latest.values()])

    def people_by_ids(self, crm: str, ids: Sequence[str]) -> list[Person]:
        out: list[Person] = []
        with self._connect() as conn:
            for part in _parts(sorted(set(ids))):
                rows = conn.execute(select(people).where(people.c.crm == crm, people.c.id.in_(part)))
                out += [_person_from_row(r) for r in rows]
        return out

    def people_ids(self, crm: str, object_type: str) -> set[str]:
        """Ids of every mirrored person of one CRM and object type."""
        with self._connect() as conn:
            rows = conn.execute(
                select(people.c.id).where(people.c.crm == crm, people.c.object_type == object_type)
            )
            return {r[0] for r in rows}

    def forget_people(self, crm: str, ids: Sequence[str]) -> None:
        with self._begin() as conn:
            for part in _parts(list(ids)):
                conn.execute(delete(people).where(people.c.crm == crm, people.c.id.in_(part)))

    def identities(self) -> list[Identity]:
        with self._connect() as conn:
            rows = conn.execute(select(identities)).all()
        return [Identity(*row) for row in rows]

    def identities_for(
        self, hubspot_ids: Sequence[str], salesforce_ids: Sequence[str], emails: Sequence[str]
    ) -> list[Identity]:
        """Identities matching any of the ids or emails."""
        found: dict[str, Identity] = {}
        with self._connect() as conn:
            for column, values in (
                (identities.c.hubspot_id, hubspot_ids),
                (identities.c.salesforce_id, salesforce_ids),
                (identities.c.email, [e.lower() for e in emails]),
            ):
                for part in _parts(sorted(set(values))):
                    for row in conn.execute(select(identities).where(column.in_(part))):
                        found[row.person_key] = Identity(*row)
        return list(found.values())

    def records_per_email(self, emails: Sequence[str]) -> dict[str, dict[str, int]]:
        """How many mirrored records of each CRM hold each email: email -> CRM -> count."""
        out: dict[str, dict[str, int]] = {}
        with self._connect() as conn:
            for part in _parts(sorted(set(emails))):
                rows = conn.execute(
                    select(people.c.email, people.c.crm, func.count())
                    .where(people.c.email.in_(part))
                    .group_by(people.c.email, people.c.crm)
                )
                for email, crm, n in rows:
                    out.setdefault(email, {})[crm] = int(n)
        return out

    def handed_off_by_email(self, emails: Sequence[str]) -> dict[str, str]:
        """email -> the person key (lowest, when several) a handoff was recorded for."""
        out: dict[str, str] = {}
        with self._connect() as conn:
            for part in _parts(sorted(set(emails))):
                rows = conn.execute(
                    select(identities.c.email, func.min(identities.c.person_key))
                    .join(ledger, ledger.c.person_key == identities.c.person_key)
                    .where(identities.c.email.in_(part), ledger.c.status != "failed")
                    .group_by(identities.c.email)
                )
                out.update({email: key for email, key in rows})
        return out

    def identities_by_key(self, keys: Sequence[str]) -> list[Identity]:
        with self._connect() as conn:
            rows: list[Any] = []
            for part in _parts(list(keys)):
                rows += conn.execute(select(identities).where(identities.c.person_key.in_(part))).all()
        return [Identity(*r) for r in rows]

    def merge_hubspot_ids(self, primary: str, merged: Sequence[str]) -> None:
        """HubSpot merged contacts into ``primary``: their person keeps its key and history.

        The first merged contact's identity moves to the primary id (unless the primary
        already has one); the merged contacts leave the mirror.
        """
        with self._begin() as conn:
            has = conn.execute(
                select(identities.c.person_key).where(identities.c.hubspot_id == primary)
            ).first()
            for mid in merged:
                row = conn.execute(
                    select(identities.c.person_key).where(identities.c.hubspot_id == mid)
                ).first()
                if row is None:
                    continue
                if has is None:
                    conn.execute(
                        update(identities).where(identities.c.person_key == row[0]).values(hubspot_id=primary)
                    )
                    has = row
                else:
                    conn.execute(
                        update(identities).where(identities.c.person_key == row[0]).values(hubspot_id=None)
                    )
            conn.execute(delete(people).where(people.c.crm == "hubspot", people.c.id.in_(list(merged))))

    def save_identities(self, items: Iterable[Identity]) -> None:
        """Insert or replace identity rows by person_key."""
        items = list(items)
        if not items:
            return
        with self._begin() as conn:
            _upsert(conn, identities, [i.__dict__ for i in items])

    def field_values(self, person_keys: Sequence[str]) -> dict[str, dict[str, str | None]]:
        out: dict[str, dict[str, str | None]] = {}
        with self._connect() as conn:
            for part in _parts(list(person_keys)):
                for key, field, value in conn.execute(
                    select(field_values).where(field_values.c.person_key.in_(part))
                ):
                    out.setdefault(key, {})[field] = value
        return out

    def save_field_values(self, values: dict[str, dict[str, str | None]]) -> None:
        if not values:
            return
        with self._begin() as conn:
            for part in _parts(list(values)):
                conn.execute(delete(field_values).where(field_values.c.person_key.in_(part)))
            rows = [
                {"person_key": k, "field": f, "value": v}
                for k, fields in values.items()
                for f, v in fields.items()
            ]
            if rows:
                conn.execute(insert(field_values), rows)
