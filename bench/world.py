"""The benchmark's CRMs: a shifted clock, N synthetic people, reps, changes and a probe.

Seeding goes through the stores' Python APIs (no HTTP), so 100k people take seconds.
Mix: ~70% HubSpot contacts, ~45% Salesforce leads (15% in both, half of those linked by
id, the rest by email), a minority engaged enough to be sales-ready.
"""

from __future__ import annotations

import bisect
import random
import shutil
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from connectors.hubspot.sandbox import HubSpotStore
from connectors.salesforce.sandbox import SalesforceStore
from mappings.loader import default_dir
from sync.demo import hubspot_props, salesforce_lead

FIRST = ["Ava", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Isla", "Jon", "Kemi", "Luis"]
LAST = ["Adams", "Brennan", "Chen", "Dubois", "Eriksen", "Garcia", "Ito", "Lopez", "Patel", "Rossi"]
TITLES = ["VP Marketing", "Director of IT", "Head of Data", "CTO", "Marketing Manager", "IT Manager"]
TITLES += ["Analyst", "Engineer", "Student", "Consultant", "Office Manager", "Sales Operations Lead"]
COMPANIES = ["Acme Corp", "Globex", "Initech", "Umbrella Health", "Stark Finance", "Hooli", "Cyberdyne"]
INDUSTRIES = {
    "COMPUTER_SOFTWARE": "Technology",
    "FINANCIAL_SERVICES": "Finance",
    "HOSPITAL_HEALTH_CARE": "Healthcare",
    "RETAIL": "Retail",
    "MANUFACTURING": "Manufacturing",
}
COUNTRIES = ["United States"] * 4 + ["Canada", "United Kingdom", "Germany", "France", "Brazil", "India"]
HS_STAGES = ["subscriber"] * 3 + ["lead"] * 8 + ["marketingqualifiedlead"] * 5 + ["customer"] * 2
SF_STATUS = ["Open - Not Contacted"] * 6 + ["Marketing Qualified"] * 3 + ["Working - Contacted", "Nurture"]
ENGAGED = 0.12  # share of people with real buying behaviour
REPS = 8
REP_CAPACITY_MINUTES = 7 * 24 * 60  # the maximum reps.yaml allows: 10,080 leads a week at 1 minute


class SimClock:
    """Wall-clock time plus an offset: each cycle runs one schedule interval later."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@dataclass
class World:
    """Seeded ids the benchmark changes later."""

    hs: HubSpotStore
    sf: SalesforceStore
    clock: SimClock
    hs_ids: list[str] = field(default_factory=list)
    sf_leads: list[str] = field(default_factory=list)
    rep_users: list[str] = field(default_factory=list)
    webinar: str = ""
    probe_contact: str = ""
    #: Fit (45 points) people with no behaviour yet, ("hubspot"|"salesforce", id), in the
    #: order the latency series makes them sales-ready.
    probes: list[tuple[str, str]] = field(default_factory=list)
    rnd: random.Random = field(default_factory=lambda: random.Random(11))


def rep_emails() -> list[str]:
    return [f"rep{i}@bench.example" for i in range(REPS)]


def mapping_dir(target: Path) -> Path:
    """The shipped mappings with reps.yaml replaced by REPS high-capacity reps."""
    shutil.copytree(default_dir(), target)
    reps = [
        {
            "name": f"Rep {i}",
            "email": email,
            "works_in": "salesforce" if i % 2 == 0 else "hubspot",
            "weekly_followup_minutes": REP_CAPACITY_MINUTES,
            "minutes_per_lead": 1,
            "timezone": "UTC",
        }
        for i, email in enumerate(rep_emails())
    ]
    (target / "reps.yaml").write_text(yaml.safe_dump({"version": 1, "reps": reps, "pools": []}))
    return target


def seed(world: World, people: int, probes: int = 0) -> None:
    """Reps in both CRMs, ``people`` people with activity (``probes`` of them fit people
    with no behaviour, two HubSpot contacts to one Salesforce lead), and the latency probe."""
    hs, sf = world.hs, world.sf
    now = world.clock()
    for i, email in enumerate(rep_emails()):
        hs.add_owner(email, "Rep", str(i))
        user = {"Username": email, "Email": email, "FirstName": "Rep", "LastName": str(i), "IsActive": True}
        world.rep_users.append(sf.insert("User", user))
    webinar = sf.insert(
        "Campaign", {"Name": "Webinar: Scaling revops", "Type": "Webinar", "Status": "Completed"}
    )
    content = sf.insert(
        "Campaign", {"Name": "Security whitepaper", "Type": "Content", "Status": "In Progress"}
    )
    world.probe_contact = hs.add_contact(_probe_props(), created_at=now - timedelta(days=90))
    for n in range(probes):
        world.probes.append(_seed_probe(world, n, now))
    for i in range(1, people - probes):
        _seed_person(world, i, now, webinar, content)
    world.webinar = webinar


def _probe_props() -> dict[str, str]:
    return {
        "email": "probe@latency.example",
        "firstname": "Pat",
        "lastname": "Probe",
        "company": "Probe Inc",
        "jobtitle": "VP Marketing",
        "industry": "COMPUTER_SOFTWARE",
        "numemployees": "250",
        "country": "United States",
        "lifecyclestage": "lead",
    }


def _seed_probe(world: World, n: int, now: datetime) -> tuple[str, str]:
    props = _probe_props() | {"email": f"probe{n}@latency.example", "lastname": f"Probe{n}"}
    if n % 3 != 2:
        return "hubspot", world.hs.add_contact(props, created_at=now - timedelta(days=90))
    lead = {
        "FirstName": "Pat", "LastName": f"Probe{n}", "Email": props["email"], "Company": "Probe Inc",
        "Title": "VP Marketing", "Industry": "Technology", "NumberOfEmployees": 250,
        "Country": "United States", "Status": "Open - Not Contacted", "OwnerId": world.rep_users[0],
        "LeadSource": "Web",
    }  # fmt: skip
    return "salesforce", world.sf.insert("Lead", lead, at=now - timedelta(days=90))


def _seed_person(world: World, i: int, now: datetime, webinar: str, content: str) -> None:
    rnd = world.rnd
    p = _person(rnd, i)
    where = rnd.random()
    engaged = rnd.random() < ENGAGED
    hs_id = None
    if where < 0.70:
        hs_id = world.hs.add_contact(
            hubspot_props(rnd, p, HS_STAGES), created_at=now - timedelta(days=rnd.randint(20, 400))
        )
        world.hs_ids.append(hs_id)
        _hs_activity(world.hs, rnd, hs_id, p["email"], now, engaged)
    if where >= 0.55:
        lead = salesforce_lead(rnd, p, rnd.choice(world.rep_users), INDUSTRIES)
        if hs_id and rnd.random() < 0.5:
            lead["HubSpot_Contact_Id__c"] = hs_id
        sf_id = world.sf.insert("Lead", lead, at=now - timedelta(days=rnd.randint(5, 300)))
        if hs_id and "HubSpot_Contact_Id__c" in lead:
            world.hs.update_contact(hs_id, {"crm_handoff_salesforce_id": sf_id}, at=_ago(rnd, now, 30))
        _sf_activity(world.sf, rnd, sf_id, webinar, content, world.rep_users[0], now, engaged)
        if where > 0.985:
            opp = {"Name": f"{p['company']} {i}", "StageName": "Prospecting"}
            world.sf.convert_lead(
                sf_id, opportunity=opp | {"CloseDate": (now + timedelta(days=30)).date().isoformat()}
            )
        else:
            world.sf_leads.append(sf_id)


def _person(rnd: random.Random, i: int) -> dict[str, str]:
    first, last, company = rnd.choice(FIRST), rnd.choice(LAST), rnd.choice(COMPANIES)
    domain = company.lower().replace(" ", "") + ".example"
    return {
        "first": first,
        "last": last,
        "company": company,
        "email": f"{first}.{last}.{i}@{domain}".lower(),
        "title": rnd.choice(TITLES),
        "industry": rnd.choice(list(INDUSTRIES)),
        "size": str(rnd.choice([8, 25, 60, 150, 400, 1200, 3000, 9000])),
        "country": rnd.choice(COUNTRIES),
    }


def _ago(rnd: random.Random, now: datetime, days: int = 28) -> datetime:
    return now - timedelta(days=rnd.randint(0, days), hours=rnd.randint(1, 23))


def _hs_activity(
    hs: HubSpotStore, rnd: random.Random, cid: str, email: str, now: datetime, engaged: bool
) -> None:
    if engaged and rnd.random() < 0.6:
        hs.add_event("e_submitted_form", cid, _ago(rnd, now), {"hs_title": "Request a demo"})
    for _ in range(rnd.choice([1, 2, 3]) if engaged else rnd.choice([0, 0, 0, 1])):
        hs.add_event("e_downloaded_content", cid, _ago(rnd, now), {"hs_title": "Pricing guide"})
    if engaged and rnd.random() < 0.3:
        hs.add_event("e_attended_webinar", cid, _ago(rnd, now, 50), {"hs_title": "Webinar: Scaling revops"})
    for _ in range(rnd.choice([0, 1, 3, 4]) if engaged else rnd.choice([0, 0, 0, 1])):
        hs.add_email_event(email, "CLICK", _ago(rnd, now), url="https://northwind.example/pricing")


def _sf_activity(
    sf: SalesforceStore,
    rnd: random.Random,
    lead: str,
    webinar: str,
    content: str,
    owner: str,
    now: datetime,
    engaged: bool,
) -> None:
    if engaged and rnd.random() < 0.4:
        member = {"CampaignId": webinar, "LeadId": lead, "Status": "Attended"}
        sf.insert("CampaignMember", member, at=_ago(rnd, now, 50))
    if rnd.random() < (0.4 if engaged else 0.05):
        member = {"CampaignId": content, "LeadId": lead, "Status": "Downloaded"}
        sf.insert("CampaignMember", member, at=_ago(rnd, now))
    if engaged and rnd.random() < 0.15:
        at = _ago(rnd, now, 20)
        stamp = at.strftime("%Y-%m-%dT%H:%M:%S.000+0000")
        event = {"Subject": "Discovery meeting", "WhoId": lead, "OwnerId": owner}
        sf.insert("Event", event | {"StartDateTime": stamp, "EndDateTime": stamp}, at=at)


def change_some(world: World, share: float = 0.01) -> int:
    """Edit ``share`` of the people as users would (titles; a tenth also act); returns how many."""
    rnd, now = world.rnd, world.clock()
    hs_pick = rnd.sample(world.hs_ids, max(1, int(len(world.hs_ids) * share)))
    sf_pick = rnd.sample(world.sf_leads, max(1, int(len(world.sf_leads) * share)))
    for n, cid in enumerate(hs_pick):
        world.hs.update_contact(cid, {"jobtitle": rnd.choice(TITLES)})
        if n % 10 == 0:
            world.hs.add_event("e_submitted_form", cid, now, {"hs_title": "Contact sales"})
    for lead in sf_pick:
        world.sf.update("Lead", lead, {"Title": rnd.choice(TITLES)})
    return len(hs_pick) + len(sf_pick)


def make_probe_ready(world: World) -> datetime:
    """The probe contact (fit 45 points) requests a demo and attends a webinar: now sales-ready."""
    at = world.clock()
    world.hs.add_event("e_submitted_form", world.probe_contact, at, {"hs_title": "Request a demo"})
    world.hs.add_event("e_attended_webinar", world.probe_contact, at, {"hs_title": "Webinar: Scaling revops"})
    return at


def make_ready(world: World, crm: str, person: str) -> datetime:
    """A probe (fit 45 points) acts now: a demo request and a webinar in HubSpot, a meeting
    and a webinar in Salesforce. It is then sales-ready; returns the moment."""
    at = world.clock()
    if crm == "hubspot":
        world.hs.add_event("e_submitted_form", person, at, {"hs_title": "Request a demo"})
        world.hs.add_event("e_attended_webinar", person, at, {"hs_title": "Webinar: Scaling revops"})
        return at
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    event = {"Subject": "Discovery meeting", "WhoId": person, "OwnerId": world.rep_users[0]}
    world.sf.insert("Event", event | {"StartDateTime": stamp, "EndDateTime": stamp}, at=at)
    member = {"CampaignId": world.webinar, "LeadId": person, "Status": "Attended"}
    world.sf.insert("CampaignMember", member, at=at)
    return at


def tasks_created(world: World) -> dict[str, datetime]:
    """Creation time of every handoff task in either CRM, by the id in its key
    (``hs-<id>#1`` / ``sf-<id>#1``: the lower-case id of the person it hands off)."""
    out: dict[str, datetime] = {}
    with world.hs.lock:
        for rec in world.hs.tables["tasks"].records.values():
            key = str(rec.props.get("crm_handoff_key") or "")
            if key:
                out.setdefault(_key_id(key), datetime.fromtimestamp(rec.created / 1000, UTC))
    table = world.sf._table("Task")
    with world.sf.lock:
        ids = list(table.rows)
    for task_id in ids:
        row = world.sf.get("Task", task_id) or {}
        key = str(row.get("Handoff_Key__c") or "")
        created = row.get("CreatedDate")
        if key and isinstance(created, datetime):
            out.setdefault(_key_id(key), created if created.tzinfo else created.replace(tzinfo=UTC))
    return out


def _key_id(key: str) -> str:
    return key.partition("#")[0].partition("-")[2].lower()


def activity_in_window(
    hs: HubSpotStore, events_after: int | None, email_after: int | None
) -> tuple[Counter[str], int]:
    """Events by type occurring at/after ``events_after`` (ms), and email clicks at/after
    ``email_after``, in the store now: what a cycle's activity reads must page through."""
    by_type: Counter[str] = Counter()
    clicks = 0
    with hs.lock:
        if events_after is not None:
            start = bisect.bisect_left(hs._events, (events_after,))
            by_type.update(ev[3] for ev in hs._events[start:])
        if email_after is not None:
            start = bisect.bisect_left(hs._email_events, (email_after,))
            clicks = sum(1 for ev in hs._email_events[start:] if ev[4] == "CLICK")
    return by_type, clicks


def probe_task_created(world: World, key: str) -> datetime | None:
    """When the handoff task with ``key`` was created, in whichever CRM holds it."""
    table = world.hs.tables["tasks"]
    with world.hs.lock:
        for rec in table.records.values():
            if rec.props.get("crm_handoff_key") == key:
                return datetime.fromtimestamp(rec.created / 1000, UTC)
    for task_id in world.sf.find("Task", "Handoff_Key__c", key):
        row = world.sf.get("Task", task_id)
        if row:
            created: datetime = row["CreatedDate"]
            return created if created.tzinfo else created.replace(tzinfo=UTC)
    return None
