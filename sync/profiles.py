"""Identity merge and the canonical view of a person across both CRMs (pure).

A *profile* joins a HubSpot contact and a Salesforce lead/contact that are the same
person: by the cross-CRM ids stored on the records or in the state, else by email.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from crm_handoff.records import Person, normalize_email
from mappings.lifecycle import person_stages
from mappings.models import FieldMapping, MappingSet
from sync.fieldsync import decide
from sync.state import Identity


@dataclass
class Profile:
    """One person as crm-handoff sees them."""

    key: str
    hubspot: Person | None = None
    salesforce: Person | None = None
    values: dict[str, str | None] = field(default_factory=dict)
    stage: str | None = None
    hubspot_stage: str | None = None
    salesforce_stage: str | None = None
    to_hubspot: dict[str, str | None] = field(default_factory=dict)
    to_salesforce: dict[str, str | None] = field(default_factory=dict)

    @property
    def email(self) -> str | None:
        return normalize_email(self.values.get("email")) or (self.hubspot or self.salesforce or _NOBODY).email

    @property
    def name(self) -> str:
        parts = [self.values.get("first_name"), self.values.get("last_name")]
        return " ".join(p for p in parts if p) or (self.email or self.key)

    def identity(self) -> Identity:
        sf = self.salesforce
        return Identity(
            self.key,
            self.hubspot.id if self.hubspot else None,
            sf.id if sf else None,
            sf.object_type if sf else None,
            self.email,
        )

    def crm_ids(self) -> list[str]:
        return [p.id for p in (self.hubspot, self.salesforce) if p]


KEY_PREFIX = {"hubspot": "hs", "salesforce": "sf"}
EMAIL_FIELD = "email"  # the canonical field that holds the identity email (fields.yaml)

_NOBODY = Person(crm="hubspot", id="", object_type="contact", email=None, values={}, modified_at=datetime.min)


class IdentityIndex:
    """Look up known identities by HubSpot id, Salesforce id or email."""

    def __init__(self, known: Iterable[Identity]) -> None:
        self.by_key: dict[str, Identity] = {}
        self.by_hs: dict[str, str] = {}
        self.by_sf: dict[str, str] = {}
        self.by_email: dict[str, str] = {}
        for ident in known:
            self.add(ident)

    def add(self, ident: Identity) -> None:
        self.by_key[ident.person_key] = ident
        if ident.hubspot_id:
            self.by_hs[ident.hubspot_id] = ident.person_key
        if ident.salesforce_id:
            self.by_sf[ident.salesforce_id] = ident.person_key
        email = normalize_email(ident.email)
        if email:
            self.by_email.setdefault(email, ident.person_key)

    def key_for(self, person: Person) -> str | None:
        own = self.by_hs if person.crm == "hubspot" else self.by_sf
        other = self.by_sf if person.crm == "hubspot" else self.by_hs
        if person.id in own:
            return own[person.id]
        if person.linked_id and person.linked_id in other:
            return other[person.linked_id]
        email = person.email  # normalised (``normalize_email``)
        key = self.by_email.get(email) if email else None
        if key is None:
            return None
        ident = self.by_key[key]
        taken = ident.hubspot_id if person.crm == "hubspot" else ident.salesforce_id
        return key if taken in (None, person.id) else None


def group_people(people: Iterable[Person], index: IdentityIndex) -> dict[str, Profile]:
    """Group CRM records into profiles, creating identities for new people."""
    profiles: dict[str, Profile] = {}
    for person in people:
        key = index.key_for(person) or f"{KEY_PREFIX[person.crm]}-{person.id}"
        prof = profiles.setdefault(key, Profile(key))
        slot = "hubspot" if person.crm == "hubspot" else "salesforce"
        current = getattr(prof, slot)
        if current is None or _prefer(person, current):
            setattr(prof, slot, person)
        known = index.by_key.get(key)
        index.add(_merge_ident(known, prof.identity()) if known else prof.identity())
    return profiles


def _prefer(new: Person, old: Person) -> bool:
    """Salesforce: a contact beats a lead; otherwise the newer record wins."""
    if new.object_type != old.object_type:
        return new.object_type == "contact"
    return new.modified_at >= old.modified_at


def _merge_ident(old: Identity, new: Identity) -> Identity:
    return Identity(
        old.person_key,
        new.hubspot_id or old.hubspot_id,
        new.salesforce_id or old.salesforce_id,
        new.salesforce_type or old.salesforce_type,
        new.email or old.email,
    )


def resolve(profile: Profile, mapping: MappingSet, last: Mapping[str, str | None]) -> None:
    """Fill canonical values, stages and the field writes each side needs."""
    hs, sf = profile.hubspot, profile.salesforce
    lc = mapping.lifecycle
    profile.hubspot_stage, profile.salesforce_stage, profile.stage = person_stages(lc, hs, sf)
    for fm in mapping.fields.fields:
        _resolve_field(profile, fm, last.get(fm.name))


def _resolve_field(profile: Profile, fm: FieldMapping, last: str | None) -> None:
    """One mapped field: its canonical value and, for a person in both CRMs, the writes."""
    hs, sf = profile.hubspot, profile.salesforce
    hs_value = hs.values.get(fm.hubspot) if hs and fm.hubspot else None
    sf_name = fm.salesforce_name(sf.object_type) if sf else None
    sf_value = sf.values.get(sf_name) if sf and sf_name else None
    if fm.name == EMAIL_FIELD:  # one address under two spellings is one value
        hs_value, sf_value = normalize_email(hs_value), normalize_email(sf_value)
    if not (hs and sf and fm.hubspot and sf_name):
        value = fm.to_hubspot(sf_value) if sf_value not in (None, "") else hs_value
        profile.values[fm.name] = normalize_email(value) if fm.name == EMAIL_FIELD else value
        return
    d = decide(
        fm, hs_value, sf_value, last, hs.field_modified_at.get(fm.hubspot, hs.modified_at), sf.modified_at
    )
    profile.values[fm.name] = d.value
    if d.to_hubspot is not None or d.clear_hubspot:
        profile.to_hubspot[fm.hubspot] = d.to_hubspot or ""
    if d.to_salesforce is not None or d.clear_salesforce:
        profile.to_salesforce[sf_name] = d.to_salesforce
