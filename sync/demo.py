"""``handoff demo`` and ``handoff sandbox serve``: the embedded sandboxes with a story.

The seeded data tells the problem crm-handoff solves: a few reps with realistic weekly
capacity, a few hundred people across HubSpot and Salesforce with activity histories,
and clearly more sales-ready leads than the reps can take this week.
"""

from __future__ import annotations

import json
import random
import re
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mappings.loader import load_mappings
from mappings.models import MappingSet
from mappings.outcomes import Sla
from sync.settings import Settings

FIRST = [
    "Ava",
    "Ben",
    "Chloe",
    "Dev",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Isla",
    "Jon",
    "Kemi",
    "Luis",
    "Maya",
    "Nils",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tara",
    "Uma",
    "Victor",
    "Wen",
    "Yara",
    "Zoe",
]
LAST = [
    "Adams",
    "Brennan",
    "Chen",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Haddad",
    "Ito",
    "Jensen",
    "Kowalski",
    "Lopez",
    "Mensah",
    "Nakamura",
    "O'Brien",
    "Patel",
    "Quist",
    "Rossi",
    "Silva",
    "Tanaka",
]
TITLES = [
    "VP Marketing",
    "Director of IT",
    "Head of Data",
    "Chief Revenue Officer",
    "CTO",
    "Marketing Manager",
    "IT Manager",
    "Sales Operations Lead",
    "Analyst",
    "Engineer",
    "Student",
    "Consultant",
    "Office Manager",
]
COMPANIES = [
    "Acme Corp",
    "Globex",
    "Initech",
    "Umbrella Health",
    "Stark Finance",
    "Wayne Retail",
    "Hooli",
    "Vandelay Imports",
    "Soylent Foods",
    "Tyrell Systems",
    "Cyberdyne",
    "Wonka Industries",
]
INDUSTRIES = [
    "COMPUTER_SOFTWARE",
    "FINANCIAL_SERVICES",
    "HOSPITAL_HEALTH_CARE",
    "RETAIL",
    "MANUFACTURING",
    "EDUCATION_MANAGEMENT",
]
SF_INDUSTRY = {
    "COMPUTER_SOFTWARE": "Technology",
    "FINANCIAL_SERVICES": "Finance",
    "HOSPITAL_HEALTH_CARE": "Healthcare",
    "RETAIL": "Retail",
    "MANUFACTURING": "Manufacturing",
    "EDUCATION_MANAGEMENT": "Education",
}
COUNTRIES = ["United States"] * 5 + [
    "Canada",
    "United Kingdom",
    "United Kingdom",
    "Germany",
    "France",
    "Brazil",
    "India",
]
DOWNLOADS = [
    "Pricing guide",
    "Security whitepaper",
    "ROI calculator",
    "Product tour video",
    "Case study: Contoso",
]
HS_STAGES = (
    ["subscriber"] * 3 + ["lead"] * 9 + ["marketingqualifiedlead"] * 6 + ["salesqualifiedlead", "customer"]
)
SF_STATUS = ["Open - Not Contacted"] * 6 + ["Marketing Qualified"] * 3 + ["Working - Contacted", "Nurture"]


@dataclass
class Sandboxes:
    """Both sandboxes running, and the settings that reach them."""

    hubspot: Any
    salesforce: Any
    hubspot_store: Any
    salesforce_store: Any

    def settings(self, state_url: str, config: str | None) -> Settings:
        return Settings(
            handoff_state_url=state_url,
            handoff_config=Path(config) if config else None,
            hubspot_base_url=self.hubspot.base_url,
            hubspot_access_token=self.hubspot.token,
            salesforce_instance_url=self.salesforce.instance_url,
            salesforce_access_token=self.salesforce.token,
            salesforce_ca_bundle=Path(self.salesforce.ca_bundle),
        )  # type: ignore[call-arg]

    def env(self) -> dict[str, str]:
        return {
            "HUBSPOT_BASE_URL": self.hubspot.base_url,
            "HUBSPOT_ACCESS_TOKEN": self.hubspot.token,
            "SALESFORCE_INSTANCE_URL": self.salesforce.instance_url,
            "SALESFORCE_ACCESS_TOKEN": self.salesforce.token,
            "SALESFORCE_CA_BUNDLE": self.salesforce.ca_bundle,
        }


@contextmanager
def running_sandboxes(
    data_dir: Path,
    mapping: MappingSet,
    seed: bool = True,
    hubspot_port: int = 0,
    salesforce_port: int = 0,
    now: datetime | None = None,
) -> Iterator[Sandboxes]:
    """Start both sandboxes (seeding them on first use); save their data on exit."""
    from connectors.hubspot.sandbox import HubSpotSandbox, HubSpotStore
    from connectors.salesforce.sandbox import SalesforceSandbox, SalesforceStore

    data_dir.mkdir(parents=True, exist_ok=True)
    hs_path, sf_path = data_dir / "hubspot.json", data_dir / "salesforce.json"
    fresh = not (hs_path.exists() and sf_path.exists())
    hs_store = HubSpotStore() if fresh else HubSpotStore.load(hs_path)
    sf_store = SalesforceStore() if fresh else SalesforceStore.load(sf_path)
    hs = HubSpotSandbox(hs_store)
    sf = SalesforceSandbox(sf_store)
    hs.start(port=hubspot_port)
    sf.start(port=salesforce_port)
    boxes = Sandboxes(hs, sf, hs_store, sf_store)
    try:
        if fresh:
            _install_hubspot(boxes, mapping)
        if fresh and seed:
            seed_demo(hs_store, sf_store, mapping, now or datetime.now(UTC))
        else:  # every start: the reps of this mapping exist as owners and users
            seed_reps(hs_store, sf_store, mapping)
        yield boxes
    finally:
        hs.stop()
        sf.stop()
        hs_store.save(hs_path)
        sf_store.save(sf_path)


def _install_hubspot(boxes: Sandboxes, mapping: MappingSet) -> None:
    from connectors.hubspot.connector import HubSpotConnector, HubSpotSettings

    conn = HubSpotConnector(HubSpotSettings.with_token(boxes.hubspot.base_url, boxes.hubspot.token))
    conn.install([(c.value, c.display) for c in mapping.handoff.outcomes.choices])  # fields, outcome picklist


def seed_demo(hs: Any, sf: Any, mapping: MappingSet, now: datetime, people: int = 300, seed: int = 7) -> None:
    """Fill both stores with reps, people and their activity."""
    rnd = random.Random(seed)
    sf_users = seed_reps(hs, sf, mapping) + [_seed_ops(hs, sf)] * 3
    webinar = sf.insert(
        "Campaign", {"Name": "Webinar: Scaling revenue ops", "Type": "Webinar", "Status": "Completed"}
    )
    content = sf.insert(
        "Campaign", {"Name": "Security whitepaper download", "Type": "Content", "Status": "In Progress"}
    )
    for i in range(people):
        p = _person(rnd, i)
        where = rnd.random()
        hs_id = sf_id = None
        if where < 0.70:
            hs_id = hs.add_contact(
                hubspot_props(rnd, p), created_at=now - timedelta(days=rnd.randint(20, 400))
            )
            _hs_activity(rnd, hs, hs_id, p["email"], now)
        if where >= 0.55:
            lead = salesforce_lead(rnd, p, rnd.choice(sf_users))
            if hs_id and rnd.random() < 0.5:
                lead["HubSpot_Contact_Id__c"] = hs_id
            sf_id = sf.insert("Lead", lead, at=now - timedelta(days=rnd.randint(5, 300)))
            _sf_activity(rnd, sf, sf_id, webinar, content, sf_users, now)
            if hs_id and lead.get("HubSpot_Contact_Id__c"):
                hs.update_contact(hs_id, {"crm_handoff_salesforce_id": sf_id}, at=now - timedelta(days=2))
        if sf_id and where > 0.95:
            sf.convert_lead(
                sf_id,
                opportunity={
                    "Name": f"{p['company']} - platform",
                    "StageName": rnd.choice(["Prospecting", "Negotiation/Review", "Closed Won"]),
                    "CloseDate": (now + timedelta(days=30)).date().isoformat(),
                },
            )


def seed_reps(hs: Any, sf: Any, mapping: MappingSet) -> list[str]:
    """The mapping's reps as HubSpot owners and Salesforce users, each added once (by email);
    the Salesforce user ids of the active reps."""
    have = {str(u.get("Username", "")).lower(): u["Id"] for u in sf.all("User")}
    users = []
    for rep in mapping.reps.reps:
        first, _, last = rep.name.partition(" ")
        if not hs.owners(email=rep.email):
            hs.add_owner(rep.email, first, last or first, archived=not rep.active)
        user = have.get(rep.email.lower())
        if user is None:
            user = sf.insert(
                "User",
                {
                    "Username": rep.email,
                    "Email": rep.email,
                    "FirstName": first,
                    "LastName": last or first,
                    "IsActive": rep.active,
                },
            )
        if rep.active:
            users.append(user)
    return users


def _seed_ops(hs: Any, sf: Any) -> str:
    """The demo's marketing-ops user, who owns the leads nobody has worked yet."""
    hs.add_owner("marketing.ops@northwind.example", "Morgan", "Ops")
    return str(
        sf.insert(
            "User",
            {
                "Username": "marketing.ops@northwind.example",
                "Email": "marketing.ops@northwind.example",
                "FirstName": "Morgan",
                "LastName": "Ops",
                "IsActive": True,
            },
        )
    )


def _person(rnd: random.Random, i: int) -> dict[str, str]:
    first, last = rnd.choice(FIRST), rnd.choice(LAST)
    company = rnd.choice(COMPANIES)
    domain = company.lower().replace(" ", "") + ".example"
    email = f"{first}.{last}.{i}@{domain}".lower().replace("'", "")
    return {
        "first": first,
        "last": last,
        "company": company,
        "email": email,
        "title": rnd.choice(TITLES),
        "industry": rnd.choice(INDUSTRIES),
        "size": str(rnd.choice([8, 25, 60, 150, 400, 1200, 3000, 9000])),
        "country": rnd.choice(COUNTRIES),
    }


def hubspot_props(rnd: random.Random, p: dict[str, str], stages: Sequence[str] = HS_STAGES) -> dict[str, str]:
    """A synthetic person (``_person``) as HubSpot contact properties (the demo and ``bench/``)."""
    return {
        "email": p["email"],
        "firstname": p["first"],
        "lastname": p["last"],
        "company": p["company"],
        "jobtitle": p["title"],
        "industry": p["industry"],
        "numemployees": p["size"],
        "country": p["country"],
        "lifecyclestage": rnd.choice(stages),
    }


def salesforce_lead(
    rnd: random.Random, p: dict[str, str], owner: str, industries: Mapping[str, str] = SF_INDUSTRY
) -> dict[str, Any]:
    """The same person as Salesforce Lead fields, ``industries`` mapping HubSpot's values."""
    return {
        "FirstName": p["first"],
        "LastName": p["last"],
        "Email": p["email"],
        "Company": p["company"],
        "Title": p["title"],
        "Industry": industries[p["industry"]],
        "NumberOfEmployees": int(p["size"]),
        "Country": p["country"],
        "Status": rnd.choice(SF_STATUS),
        "OwnerId": owner,
        "LeadSource": "Web",
    }


def _ago(rnd: random.Random, now: datetime, days: int = 40) -> datetime:
    return now - timedelta(days=rnd.randint(0, days), hours=rnd.randint(0, 23))


def _hs_activity(rnd: random.Random, hs: Any, contact_id: str, email: str, now: datetime) -> None:
    engaged = rnd.random() < 0.55
    for _ in range(rnd.choice([0, 0, 1, 2]) if engaged else 0):
        hs.add_event(
            "e_submitted_form",
            contact_id,
            _ago(rnd, now),
            {"hs_title": rnd.choice(["Request a demo", "Contact sales", "Pricing question"])},
        )
    for _ in range(rnd.choice([0, 1, 2, 3, 4]) if engaged else rnd.choice([0, 1])):
        hs.add_event("e_downloaded_content", contact_id, _ago(rnd, now), {"hs_title": rnd.choice(DOWNLOADS)})
    if engaged and rnd.random() < 0.35:
        hs.add_event(
            "e_attended_webinar", contact_id, _ago(rnd, now, 55), {"hs_title": "Webinar: Scaling revenue ops"}
        )
    for _ in range(rnd.choice([0, 1, 3, 5]) if engaged else 0):
        hs.add_email_event(
            email,
            "CLICK",
            _ago(rnd, now),
            url=rnd.choice(["https://northwind.example/pricing", "https://northwind.example/security"]),
        )
    if engaged and rnd.random() < 0.08:
        hs.add_engagement(
            "meetings",
            {"hs_timestamp": _ago(rnd, now, 20).isoformat(), "hs_meeting_title": "Intro call"},
            [contact_id],
        )


def _sf_activity(
    rnd: random.Random, sf: Any, lead_id: str, webinar: str, content: str, users: list[str], now: datetime
) -> None:
    if rnd.random() < 0.3:
        sf.insert(
            "CampaignMember",
            {"CampaignId": webinar, "LeadId": lead_id, "Status": "Attended"},
            at=_ago(rnd, now, 50),
        )
    if rnd.random() < 0.3:
        sf.insert(
            "CampaignMember",
            {"CampaignId": content, "LeadId": lead_id, "Status": "Downloaded"},
            at=_ago(rnd, now),
        )
    if rnd.random() < 0.1:
        sf.insert(
            "Event",
            {
                "Subject": "Discovery meeting",
                "WhoId": lead_id,
                "OwnerId": users[0],
                "StartDateTime": _ago(rnd, now, 20).strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
                "EndDateTime": _ago(rnd, now, 20).strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
            },
            at=_ago(rnd, now, 20),
        )


def run_demo(data_dir: Path, reset: bool = False, as_json: bool = False, config: str | None = None) -> int:
    """Seed (first time), run one cycle on the sandboxes and SQLite, print the summary;
    then the story goes on (first time): a few days later on the demo clock, the reps have
    worked their tasks (``act_two``), and a second cycle reads back what they did."""
    from sync.cycle import run_cycle
    from sync.report import print_summary
    from sync.wiring import build_engine, open_state

    if reset:
        for name in (*DEMO_FILES, ACT_TWO):
            (data_dir / name).unlink(missing_ok=True)
    mapping = load_mappings(config)
    now = datetime.now(UTC)
    with running_sandboxes(data_dir, mapping) as boxes:
        settings = boxes.settings(f"sqlite:///{data_dir / 'state.db'}", config)
        state = open_state(settings)
        try:
            result = run_cycle(build_engine(settings, mapping, state), now)
            second = None
            if not (data_dir / ACT_TWO).exists():
                story = act_two(boxes, now + REPS_ACT)
                story["opened_content"] = open_content(boxes, now + REPS_ACT, mapping)
                later = demo_sla(mapping)
                second = run_cycle(build_engine(settings, later, state), next_week(now))
                (data_dir / ACT_TWO).write_text(json.dumps(story, sort_keys=True))
                story["reassigned"] = _moved(state, mapping)
                story["rejected_in_hubspot"] = _hubspot_view(boxes, story.get("rejected_contact"))
        finally:
            state.close()
        hs_tasks, sf_tasks = len(boxes.hubspot_store.tasks()), len(boxes.salesforce_store.all("Task"))
    if as_json:
        out = result.summary.to_json()
        if second is not None:
            out["act_two"] = {"story": story, "summary": second.summary.to_json()}
        print(json.dumps(out, default=str, sort_keys=True))
        return max(result.exit_code, second.exit_code if second else 0)
    print_summary(result.summary)
    if second is not None:
        _print_act_two(story, second.summary)
    print(f"\nThe sandboxes now hold {sf_tasks} Salesforce tasks and {hs_tasks} HubSpot tasks in total.")
    print(f"Data kept in {data_dir}/ - run `handoff demo` again: nothing new is handed off twice.")
    print(f"See `HANDOFF_STATE_URL=sqlite:///{data_dir}/state.db handoff report` for stage conversion.")
    return max(result.exit_code, second.exit_code if second else 0)


DEMO_FILES = ("hubspot.json", "salesforce.json", "state.db", "state.db-wal", "state.db-shm")
ACT_TWO = "act_two.json"  # the second act has been played (the reps acted once)
REPS_ACT = timedelta(hours=2)  # when, after the first cycle, the reps work their tasks


def next_week(now: datetime) -> datetime:
    """The demo clock of the second cycle: Tuesday of the next week, 10:00 UTC (the SLA has
    passed and the reps' weekly capacity has come back)."""
    monday = (now + timedelta(days=7 - now.weekday())).replace(hour=10, minute=0, second=0, microsecond=0)
    return monday + timedelta(days=1)


def demo_sla(mapping: MappingSet) -> MappingSet:
    """The demo's SLA: a first touch due within 16 business hours, else reassigned once (with
    two reps or more; the shipped files only notify, as many set-ups start with one rep)."""
    sla = mapping.handoff.sla
    if sla.on_breach == "reassign" or sum(1 for r in mapping.reps.reps if r.active) < 2:
        return mapping
    demo = Sla(first_touch_within_hours=sla.first_touch_within_hours or 16, on_breach="reassign")
    return mapping.model_copy(update={"handoff": mapping.handoff.model_copy(update={"sla": demo})})


def act_two(boxes: Sandboxes, at: datetime) -> dict[str, Any]:
    """The reps at work, as in the CRMs' UIs: of the handoff tasks (in key order) the first
    HubSpot one is rejected as not a fit, the next gets a logged call, the first Salesforce
    one is ignored, and every other one is completed."""
    hs, sf = boxes.hubspot_store, boxes.salesforce_store
    hs_tasks = sorted(
        (t for t in hs.tasks() if t["properties"].get("crm_handoff_key")),
        key=lambda t: t["properties"]["crm_handoff_key"],
    )
    sf_tasks = sorted(
        (t for t in sf.all("Task") if t.get("Handoff_Key__c")), key=lambda t: t["Handoff_Key__c"]
    )
    story: dict[str, Any] = {"completed": 0, "called": 0, "rejected": 0, "ignored": 0}
    for i, task in enumerate(hs_tasks):
        contacts = task["associations"].get("contacts") or []
        if i == 0 and contacts:
            hs.complete_task(task["id"], at=at, outcome="not_a_fit")
            story |= {"rejected": 1, "rejected_contact": contacts[0]}
        elif i == 1 and contacts:
            hs.log_call(contacts[0], task["properties"]["hubspot_owner_id"], at=at, title="Intro call")
            story["called"] += 1
        else:
            hs.complete_task(task["id"], at=at)
            story["completed"] += 1
    for i, task in enumerate(sf_tasks):
        if i == 0:
            story["ignored"] += 1
            continue
        sf.update("Task", task["Id"], {"Status": "Completed"}, at=at)
        story["completed"] += 1
    return story


def open_content(boxes: Sandboxes, at: datetime, mapping: MappingSet) -> str | None:
    """The lead of the last HubSpot handoff (in key order) clicks, in a marketing email, the
    first library asset its brief recommends (``handoff report`` counts it used); returns its url."""
    hs = boxes.hubspot_store
    urls = {a.url for a in mapping.handoff.assets}
    tasks = sorted(
        (t for t in hs.tasks() if t["properties"].get("crm_handoff_key")),
        key=lambda t: t["properties"]["crm_handoff_key"],
    )
    for task in reversed(tasks):
        contacts = task["associations"].get("contacts") or []
        body = task["properties"].get("hs_task_body") or ""
        found: list[str] = [u for u in re.findall(r"https?://\S+", body) if u in urls]
        email = hs.contact(contacts[0]).get("email") if contacts else None
        if found and email:
            hs.add_email_event(email, "CLICK", at, url=found[0])
            return found[0]
    return None


def _moved(state: Any, mapping: MappingSet) -> list[tuple[str, str, str]]:
    """(person, rep before, rep now) of each handoff reassigned."""
    rows = {r.key: r for r in state.outcome_rows()}
    names = {r.email: r.name for r in mapping.reps.reps}
    out = []
    for r in rows.values():
        if r.state == "reassigned" and r.next_key in rows:
            idents = state.identities_by_key([r.person_key])
            who = (idents[0].email if idents else None) or r.person_key
            after = rows[r.next_key].rep_email
            out.append((who, names.get(r.rep_email, r.rep_email), names.get(after, after)))
    return out


def _hubspot_view(boxes: Sandboxes, contact_id: str | None) -> dict[str, str]:
    """What a marketer sees on the rejected lead's HubSpot contact."""
    if contact_id is None:
        return {}
    found: dict[str, Any] = next(
        (c for c in boxes.hubspot_store.objects("contacts") if c["id"] == contact_id), {}
    )
    values = found.get("properties", {})
    keys = (
        "email",
        "crm_handoff_status",
        "crm_handoff_reason",
        "crm_handoff_outcome",
        "crm_handoff_outcome_reason",
    )
    return {k: str(values.get(k) or "") for k in keys}


def _print_act_two(story: dict[str, Any], s: Any) -> None:
    f = s.follow_up
    print(f"\n--- Next week on the demo clock ({s.at[:10]}) ---")
    print(
        f"The reps completed {story['completed']} tasks, logged a call on {story['called']}, rejected "
        f"{story['rejected']} as not a fit and ignored {story['ignored']}."
    )
    print(
        f"crm-handoff read it back: {f.get('worked', 0)} worked, {f.get('acted', 0)} acted on, "
        f"{f.get('rejected', 0)} rejected, {f.get('reassigned', 0)} reassigned after a missed SLA."
    )
    view = story.get("rejected_in_hubspot") or {}
    if view:
        print(
            f"In HubSpot, {view['email']} is '{view['crm_handoff_status']}' "
            f"(outcome {view['crm_handoff_outcome']}: {view['crm_handoff_outcome_reason']})."
        )
    for who, before, after in story.get("reassigned", []):
        print(f"Reassigned after a missed SLA: {who}, from {before} to {after}")
    if story.get("opened_content"):
        print(
            f"A lead clicked {story['opened_content']}, recommended in their brief, in a marketing email: "
            "`handoff report` counts it used."
        )
    print(
        f"tasks created: hubspot {s.tasks_created.get('hubspot', 0)}, salesforce {s.tasks_created.get('salesforce', 0)}"
    )


def serve_sandboxes(
    data_dir: Path,
    hubspot_port: int,
    salesforce_port: int,
    seed: bool = True,
    config: str | Path | None = None,
) -> int:
    """Serve both sandboxes until SIGINT/SIGTERM; print the connection settings first.

    The reps of ``config`` (the mapping ``handoff sync`` will read) are its HubSpot owners
    and Salesforce users, added on every start if missing; ``seed`` adds the demo people."""
    mapping = load_mappings(config)  # a broken mapping: exit 2 before anything is served
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with running_sandboxes(
        data_dir, mapping, seed=seed, hubspot_port=hubspot_port, salesforce_port=salesforce_port
    ) as boxes:
        for key, value in boxes.env().items():
            print(f"{key}={value}", flush=True)
        stop.wait()
    return 0
