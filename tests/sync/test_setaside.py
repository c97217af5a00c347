"""Who is set aside instead of routed: duplicates, shared addresses, no email (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from crm_handoff.records import Person, normalize_email
from sync.setaside import NO_EMAIL, QueuedPerson, missing_email, set_aside


def test_normalize_email_trims_and_case_folds_the_whole_address():
    assert normalize_email("  Case.Variant@Example.COM ") == "case.variant@example.com"
    assert normalize_email("   ") is None and normalize_email(None) is None


def test_person_and_activity_carry_the_identity_form():
    from datetime import UTC, datetime

    p = Person("hubspot", "1", "contact", " A@B.Example ", {}, datetime.now(UTC))
    assert p.email == "a@b.example"


def test_shared_address_sets_aside_everyone_with_it_as_errors():
    queued = [QueuedPerson(f"k{i}", "orders@r.example") for i in range(3)] + [
        QueuedPerson("x", "x@y.example")
    ]
    out = set_aside(queued, {"orders@r.example": {"salesforce": 6, "hubspot": 1}}, {}, limit=5)
    assert set(out) == {"k0", "k1", "k2"}
    assert all(a.is_error and "shared by 6 salesforce records" in a.reason for a in out.values())


def test_up_to_the_limit_one_email_is_one_person_the_best_ranked_first():
    queued = [QueuedPerson("best", "p@d.example"), QueuedPerson("next", "p@d.example")]
    out = set_aside(queued, {"p@d.example": {"salesforce": 5}}, {}, limit=5)
    assert set(out) == {"next"} and not out["next"].is_error
    assert out["next"].reason == "set aside: duplicate of best (same email)"


def test_a_person_handed_off_already_keeps_the_address():
    queued = [QueuedPerson("new", "p@d.example")]
    out = set_aside(queued, {"p@d.example": {"salesforce": 2}}, {"p@d.example": "old"})
    assert out["new"].reason.startswith("set aside: duplicate of old") and not out["new"].is_error
    assert set_aside(queued, {}, {"p@d.example": "new"}) == {}


def test_blocked_people_are_set_aside_with_their_reason():
    out = set_aside([QueuedPerson("k", None, NO_EMAIL)], {}, {})
    assert out["k"].reason == NO_EMAIL


@given(st.lists(st.sampled_from(["a@x.example", "b@x.example", None]), max_size=12))
def test_at_most_one_person_per_email_is_left_to_route(emails):
    queued = [QueuedPerson(f"k{i}", e) for i, e in enumerate(emails)]
    out = set_aside(queued, {}, {})
    left = [q.email for q in queued if q.person_key not in out and q.email]
    assert len(left) == len(set(left)) and set(left) == {e for e in emails if e}


def test_missing_email_only_when_data_is_all_that_is_missing():
    assert missing_email(70, 60, ("missing email",)) == NO_EMAIL
    assert missing_email(70, 60, ("missing email", "missing company")) == NO_EMAIL + " (also missing company)"
    assert missing_email(50, 60, ("missing email",)) is None
    assert missing_email(70, 60, ("missing email", "excluded: Competitor")) is None
    assert missing_email(70, 60, ("missing company",)) is None
