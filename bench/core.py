"""CPU time of the pure core (stage mapping, merge + field resolution, qualification,
routing) over synthetic people, in-process, no I/O."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.world import COMPANIES, COUNTRIES, FIRST, HS_STAGES, INDUSTRIES, LAST, SF_STATUS, TITLES
from crm_handoff.records import Activity, Person
from mappings.lifecycle import person_stage
from mappings.loader import load_mappings
from sync.profiles import IdentityIndex, group_people, resolve
from sync.qualify import qualify
from sync.routing import Candidate, plan_routing

KINDS = ("form_fill", "content_download", "webinar_attended", "email_click", "meeting")


@dataclass(frozen=True)
class CoreTimes:
    """CPU seconds per stage for ``people`` people."""

    people: int
    stages: float
    merge_resolve: float
    qualify: float
    routing: float
    qualified: int

    @property
    def total(self) -> float:
        return self.stages + self.merge_resolve + self.qualify + self.routing

    def per_100k(self, seconds: float) -> float:
        return seconds * 100_000 / self.people


def _people(n: int, now: datetime, rnd: random.Random) -> tuple[list[Person], dict[str, list[Activity]]]:
    people: list[Person] = []
    acts: dict[str, list[Activity]] = {}
    for i in range(n):
        first, last, company = rnd.choice(FIRST), rnd.choice(LAST), rnd.choice(COMPANIES)
        email = f"{first}.{last}.{i}@x.example".lower()
        title, industry, country = rnd.choice(TITLES), rnd.choice(list(INDUSTRIES)), rnd.choice(COUNTRIES)
        size = str(rnd.choice([8, 60, 400, 3000, 9000]))
        where, mod = rnd.random(), now - timedelta(days=rnd.randint(1, 300))
        if where < 0.70:
            values = {"email": email, "firstname": first, "lastname": last, "company": company}
            values |= {"jobtitle": title, "industry": industry, "numemployees": size, "country": country}
            values["lifecyclestage"] = rnd.choice(HS_STAGES)
            people.append(Person("hubspot", str(i), "contact", email, values, mod))
        if where >= 0.55:
            values = {"Email": email, "FirstName": first, "LastName": last, "Company": company}
            values |= {"Title": title, "Industry": INDUSTRIES[industry], "NumberOfEmployees": size}
            values |= {"Country": country, "Status": rnd.choice(SF_STATUS)}
            people.append(Person("salesforce", f"00Q{i:015d}", "lead", email, values, mod))
        if rnd.random() < 0.12:
            acts[email] = [
                Activity("hubspot", f"a{i}-{k}", rnd.choice(KINDS), now - timedelta(days=rnd.randint(0, 28)))
                for k in range(rnd.randint(1, 6))
            ]
    return people, acts


def measure(people: int, config: Path) -> CoreTimes:
    """Time each pure stage with ``time.process_time`` over ``people`` synthetic people."""
    mapping = load_mappings(config)
    now = datetime.now(UTC)
    records, acts = _people(people, now, random.Random(5))
    t0 = time.process_time()
    for p in records:
        person_stage(mapping.lifecycle, p)
    t1 = time.process_time()
    profiles = group_people(records, IdentityIndex(()))
    for prof in profiles.values():
        resolve(prof, mapping, {})
    t2 = time.process_time()
    quals = {
        key: qualify(mapping.sales_ready, prof.values, prof.stage, acts.get(prof.email or "", []), now)
        for key, prof in profiles.items()
    }
    t3 = time.process_time()
    cands = [
        Candidate(key, q.score, dict(profiles[key].values), None, now)
        for key, q in quals.items()
        if q.qualified
    ]
    plan_routing(cands, mapping.reps.reps, {}, mapping.reps.pools)
    t4 = time.process_time()
    return CoreTimes(people, t1 - t0, t2 - t1, t3 - t2, t4 - t3, len(cands))
