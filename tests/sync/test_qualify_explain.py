"""Why a rep may not take a person (``sync.explain.ineligible_why``): the reason names the
rule ``sync.routing.eligible`` applies, and fixing what it names removes that reason."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.loader import load_mappings
from mappings.models import Pool, Rep
from sync.explain import ineligible_why
from sync.qualify import matches
from sync.routing import Candidate, eligible

BASE = load_mappings()
POOLS = (
    Pool(name="tech", field="industry", one_of=("Technology",)),
    Pool(name="big", field="company_size", min=1000),
)
MAPPING = BASE.model_copy(update={"reps": BASE.reps.model_copy(update={"pools": POOLS})})

reps = st.builds(
    lambda active, minutes, territories, pools: Rep(
        name="Dana",
        email="dana@northwind.example",
        works_in="hubspot",
        weekly_followup_minutes=minutes,
        minutes_per_lead=20,
        territories=territories,
        pools=pools,
        active=active,
    ),
    st.booleans(),
    st.sampled_from([0, 10, 120]),
    st.lists(st.sampled_from(["Germany", "Canada", "United States"]), max_size=2, unique=True).map(tuple),
    st.lists(st.sampled_from(["tech", "big"]), max_size=2, unique=True).map(tuple),
)
people = st.fixed_dictionaries(
    {
        "country": st.sampled_from(["", "Germany", "Canada", "Peru"]),
        "industry": st.sampled_from(["", "Technology", "Retail"]),
        "company_size": st.sampled_from(["", "50", "5000"]),
    }
)


def ok(rep: Rep, values: dict[str, str]) -> bool:
    return eligible(rep, Candidate("p", 0, values), POOLS)


@settings(max_examples=400, deadline=None)
@given(rep=reps, values=people)
def test_the_reason_names_what_to_change(rep, values):
    if ok(rep, values):
        return
    why = ineligible_why(rep, values, MAPPING)
    if why == "inactive in reps.yaml":
        assert not rep.active
        fixed = rep.model_copy(update={"active": True})
    elif why.startswith("no weekly capacity"):
        assert rep.active and rep.weekly_capacity == 0
        fixed = rep.model_copy(update={"weekly_followup_minutes": 120})
    elif why.startswith("territory: "):
        country = values["country"] or "(blank)"
        assert why == f"territory: country {country} is not in {', '.join(rep.territories)}"
        fixed = rep.model_copy(update={"territories": (*rep.territories, values["country"])})
    else:
        assert why.startswith("pool: the person is in ")
        theirs = sorted(p.name for p in POOLS if matches(p, values)[0])
        mine = ", ".join(rep.pools) or "none"
        assert why == f"pool: the person is in {', '.join(theirs) or 'no pool'}, the rep in {mine}"
        fixed = rep.model_copy(update={"pools": tuple(theirs)})  # a person in no pool: reps in none
        assert ok(fixed, values)
        return
    assert ineligible_why(fixed, values, MAPPING) != why
