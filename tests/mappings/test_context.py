"""Content recommended in the brief: whole words or phrases, and the industries an asset serves (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from crm_handoff.records import Activity
from mappings.context import recommend
from mappings.models import ContentAsset

ROI = ContentAsset(title="ROI calculator", url="https://x.example/roi", topics=("roi",))
STORY = ContentAsset(title="Customer story", url="https://x.example/story", topics=("case study", "story"))
BANK = ContentAsset(
    title="Banking brief", url="https://x.example/bank", topics=("security",), industries=("Finance",)
)
TOUR = ContentAsset(title="Tour", url="https://x.example/tour", stages=("mql",))


def _did(*titles: str) -> list[Activity]:
    now = datetime.now(UTC)
    return [Activity("hubspot", str(i), "page_view", now, title=t) for i, t in enumerate(titles)]


def test_a_topic_matches_whole_words_only():
    assert recommend([ROI, STORY, TOUR], _did("Android app launch", "History of the company"), "mql") == [
        TOUR
    ]
    assert recommend([ROI, STORY], _did("Our ROI, explained"), "mql") == [ROI]
    assert recommend([ROI, STORY], _did("A success STORY"), "mql") == [STORY]


def test_a_phrase_matches_as_a_phrase_case_insensitively():
    assert recommend([STORY], _did("Read the Case  Study"), None) == [STORY]
    assert recommend([STORY.model_copy(update={"topics": ("case study",)})], _did("case studies"), None) == []


def test_an_asset_serves_only_the_industries_it_names():
    acts = _did("Security checklist")
    assert recommend([BANK, TOUR], acts, "mql", industry="finance") == [BANK]
    assert recommend([BANK, TOUR], acts, "mql", industry="Healthcare") == [TOUR]
    assert recommend([BANK, TOUR], acts, "mql", industry=None) == [TOUR]
