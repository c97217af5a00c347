"""HubSpot webhooks on the wire: the v3 request signature, the event payload, and the batch
read of the contacts a delivery names.

A delivery is a POST whose body is a JSON array of events (``eventId, subscriptionType,
objectId, occurredAt, propertyName, propertyValue, attemptNumber, ...``), signed with the
app's client secret (``X-HubSpot-Signature-v3``: base64 HMAC-SHA256 of method + URI + body +
``X-HubSpot-Request-Timestamp``; the timestamp in epoch ms, refused when older than five
minutes). The HMAC itself is the SDK's (``hubspot.utils.signature.Signature``); HubSpot's
URI decoding, which the SDK leaves to its caller, is here. A delivery only says which
contacts to look at again: they are read back in batches (100 a call), never trusted from
the event's ``propertyValue``, so order and repetition of deliveries do not matter.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from hubspot.exceptions import InvalidSignatureTimestampError
from hubspot.utils.signature import Signature
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from crm_handoff.records import Person

if TYPE_CHECKING:
    from connectors.hubspot.connector import HubSpotConnector

SIGNATURE_HEADER = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"
MAX_AGE = timedelta(minutes=5)
#: Escapes HubSpot decodes in the request URI before signing (its validation guide).
URI_DECODE = {
    "%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'",
    "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";",
}  # fmt: skip
#: Subscription types (legacy ``contact.*`` and the new platform's ``object.*`` on contacts).
CONTACT_TYPES = ("creation", "propertyChange", "deletion", "privacyDeletion", "merge", "restore")
CONTACT_OBJECT_TYPE = "0-1"


def decode_uri(uri: str) -> str:
    """The request URI as HubSpot signs it: the listed escapes decoded (either case)."""
    out = uri
    for escaped, char in URI_DECODE.items():
        out = out.replace(escaped, char).replace(escaped.lower(), char)
    return out


def sign(secret: str, method: str, uri: str, body: str, timestamp_ms: int) -> str:
    """The ``X-HubSpot-Signature-v3`` value of a request (what HubSpot sends)."""
    return str(Signature.get_signature(secret, body, "v3", decode_uri(uri), method, str(timestamp_ms)))


def check_signature(
    secret: str,
    method: str,
    uri: str,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    now: datetime,
) -> str | None:
    """Why a delivery is refused (missing or stale timestamp, bad signature), or None if
    it is HubSpot's. ``uri`` is the full public URL HubSpot called, query included."""
    if not signature or not timestamp:
        return f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}"
    try:
        sent = datetime.fromtimestamp(int(timestamp) / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        return f"{TIMESTAMP_HEADER} is not epoch milliseconds"
    if abs(now - sent) > MAX_AGE:
        return "stale timestamp (more than 5 minutes from now)"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "body is not UTF-8"
    try:
        valid = Signature.is_valid(signature, secret, text, decode_uri(uri), method, "v3", timestamp)
    except InvalidSignatureTimestampError:
        return "stale timestamp (more than 5 minutes from now)"
    return None if valid else "bad signature"


class WebhookEvent(BaseModel):
    """One event of a delivery (unknown fields ignored; HubSpot: treat them as optional)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    event_id: int = Field(alias="eventId")
    subscription_type: str = Field(alias="subscriptionType")
    object_id: int = Field(alias="objectId")
    occurred_at: int = Field(0, alias="occurredAt")
    object_type_id: str | None = Field(None, alias="objectTypeId")
    portal_id: int | None = Field(None, alias="portalId")
    attempt_number: int = Field(0, alias="attemptNumber")
    property_name: str | None = Field(None, alias="propertyName")
    change_source: str | None = Field(None, alias="changeSource")
    merged_object_ids: list[int] = Field(default_factory=list, alias="mergedObjectIds")
    new_object_id: int | None = Field(None, alias="newObjectId")
    primary_object_id: int | None = Field(None, alias="primaryObjectId")

    @property
    def kind(self) -> str:
        """``creation``, ``propertyChange``, ``merge``...: the part after the object."""
        return self.subscription_type.partition(".")[2]

    @property
    def about_contacts(self) -> bool:
        """Whether the event concerns contacts (the only object crm-handoff reads)."""
        head = self.subscription_type.partition(".")[0]
        if head == "object":
            return self.object_type_id == CONTACT_OBJECT_TYPE and self.kind in CONTACT_TYPES
        return head == "contact" and self.kind in CONTACT_TYPES

    def contact_ids(self) -> list[str]:
        """Every contact id the event names (a merge: the primary and the merged ones)."""
        if not self.about_contacts:
            return []
        ids = [self.object_id, self.new_object_id, self.primary_object_id, *self.merged_object_ids]
        return sorted({str(i) for i in ids if i})


_EVENTS = TypeAdapter(list[WebhookEvent])


def parse_events(body: bytes) -> list[WebhookEvent]:
    """A delivery's events; ValueError (one line) when the body is not HubSpot's array."""
    try:
        return _EVENTS.validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ValueError(f"not a HubSpot webhook body: {where or 'body'}: {first['msg']}") from None


def event_json(event: WebhookEvent) -> dict[str, Any]:
    """The event as HubSpot names its fields (what the state keeps)."""
    return event.model_dump(by_alias=True, exclude_none=True)


def read_contacts(conn: HubSpotConnector, ids: Sequence[str]) -> list[Person]:
    """The contacts' current records, 100 a batch read; an id HubSpot no longer returns
    (deleted, or merged into another contact) comes back as a deleted person."""
    wanted = list(dict.fromkeys(str(i) for i in ids))
    found = [conn._person(obj) for obj in conn._batch_read("contacts", wanted, conn.properties)]
    have = {p.id for p in found}
    now = datetime.now(UTC)
    gone = [Person("hubspot", i, "contact", None, {}, now, deleted=True) for i in wanted if i not in have]
    return list({p.id: p for p in found}.values()) + gone
