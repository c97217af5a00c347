"""The content library by buyer gate: versions, retired and superseded assets, what a person
consumed, the next gate's assets (pure); and every content key's mistake as one line."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crm_handoff.records import Activity
from mappings.content import consumed, current, gate_order, lines, norm_url, opens, pick
from mappings.loader import default_dir, load_mappings
from mappings.models import Handoff
from sync.cli import main

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _did(*acts: tuple[str, str]) -> list[Activity]:
    return [Activity("hubspot", str(i), kind, NOW, title=title) for i, (kind, title) in enumerate(acts)]


@pytest.fixture(scope="module")
def shipped() -> Handoff:
    return load_mappings().handoff


def _ids(h: Handoff, acts: list[Activity], stage: str | None, industry: str | None = None) -> list[str]:
    return [a.key for a in pick(h, acts, acts, stage, industry)]


def test_a_lead_who_downloaded_the_security_whitepaper_gets_the_next_gate_never_that_paper(shipped):
    acts = _did(("content_download", "Security whitepaper"))
    got = _ids(shipped, acts, "lead")
    assert got == ["roi-calculator", "implementation-plan"]  # decision: the gate after consideration
    assert "security-whitepaper" not in got and "security-whitepaper-2023" not in got
    # without the download, a lead is at awareness: the consideration assets (the current whitepaper, not 2023's)
    assert _ids(shipped, [], "lead") == ["security-whitepaper", "contoso-story"]


def test_downloading_the_retired_version_counts_as_the_paper_consumed(shipped):
    acts = _did(("content_download", "Security whitepaper (2023 edition)"))
    h = shipped.model_copy(
        update={"content": shipped.content.model_copy(update={"stages": {}})} if shipped.content else {}
    )
    assert "security-whitepaper" not in _ids(h, acts, None)
    assert _ids(h, acts, None) == ["roi-calculator", "implementation-plan"]


def test_a_retired_or_superseded_asset_is_never_recommended(shipped):
    library = shipped.assets
    keys = [a.key for a in current(library)]
    assert "security-whitepaper-2023" not in keys and "security-whitepaper" in keys
    # un-retire 2023's edition: still superseded by version 2
    revived = [a.model_copy(update={"retired": False}) for a in library]
    assert "security-whitepaper-2023" not in [a.key for a in current(revived)]
    # two versions of one id: only the highest
    v1 = library[-1]
    v2 = v1.model_copy(update={"version": 2, "url": "https://northwind.example/implementation-v2"})
    assert [(a.key, a.version) for a in current([v1, v2])] == [("implementation-plan", 2)]
    assert lines([v1, v2]) == {"implementation-plan": "implementation-plan"}


def test_an_asset_already_consumed_is_skipped_by_url_or_title(shipped):
    clicked = _did(("email_click", "https://www.northwind.example/roi/?utm_source=nurture#top"))
    assert _ids(shipped, clicked, "sql") == ["implementation-plan"]
    titled = _did(("page_view", "Implementation plan and timeline | Northwind"))
    assert _ids(shipped, titled, "sql") == ["roi-calculator"]
    both = clicked + titled
    # nothing left at decision (the last gate): back to consideration, nearest first
    assert _ids(shipped, both, "sql") == ["security-whitepaper", "contoso-story"]
    # a page on another url, or a title merely sharing a word, consumes nothing
    assert _ids(
        shipped, _did(("email_click", "https://northwind.example/roi-2"), ("note", "ROI")), "sql"
    ) == [
        "roi-calculator",
        "implementation-plan",
    ]


def test_behaviour_moves_a_person_to_a_gate(shipped):
    # a demo request shows decision reached: the last gate stays the last
    acts = _did(("form_fill", "Request a demo"))
    assert _ids(shipped, acts, "lead") == ["roi-calculator", "implementation-plan"]
    # the same title as a page view is no form fill: awareness, as the stage says
    assert _ids(shipped, _did(("page_view", "Request a demo")), "lead") == [
        "security-whitepaper",
        "contoso-story",
    ]


def test_assets_matching_recent_topics_come_first_and_the_limit_holds(shipped):
    acts = _did(("page_view", "Onboarding checklist"))
    assert _ids(shipped, acts, "sql") == ["implementation-plan", "roi-calculator"]
    one = shipped.model_copy(update={"content": shipped.content.model_copy(update={"limit": 1})})
    assert _ids(one, acts, "sql") == ["implementation-plan"]


def test_without_gates_the_topic_rules_stay_and_consumed_or_retired_assets_are_skipped(shipped):
    h = shipped.model_copy(update={"content": None})
    assert [a.title for a in pick(h, [], [], "mql", None)][:1] == ["Pricing and ROI calculator"]
    paper = h.content_library[1].model_copy(update={"retired": True})
    retired = h.model_copy(update={"content_library": (h.content_library[0], paper)})
    sec = _did(("page_view", "SOC2 and security"))
    assert pick(retired, sec, sec, "mql", None) == [h.content_library[0]]
    seen = _did(("email_click", "https://northwind.example/roi"))
    assert h.content_library[0] not in pick(h, seen, seen, "mql", None)


def test_urls_compare_without_scheme_www_query_or_trailing_slash():
    assert norm_url("HTTPS://WWW.Northwind.example/roi/?a=1#x") == "northwind.example/roi"
    assert opens(_did(("email_click", "http://northwind.example/roi"))[0], "https://northwind.example/roi/")
    assert not opens(
        _did(("email_click", "https://northwind.example/roi2"))[0], "https://northwind.example/roi"
    )
    assert consumed([], _did(("email_click", "https://x.example"))) == set()


def test_gate_order():
    assert gate_order(None, 3) == [0, 1, 2]
    assert gate_order(0, 3) == [1, 2, 0]
    assert gate_order(1, 3) == [2, 1, 0]
    assert gate_order(2, 3) == [2, 1, 0]


# --- every content key's mistake: one line, file:line -------------------------------


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(default_dir(), target)
    return target


BAD = [
    # (text replaced, replacement, text of the line the error must name, pattern)
    (
        "gate: decision, title: Pricing",
        "gate: closing, title: Pricing",
        "gate: closing",
        r"content\.assets\[4\]\.gate: unknown gate 'closing'; expected one of \['awareness', 'consideration', 'decision'\]",
    ),
    (
        "supersedes: security-whitepaper-2023,",
        "supersedes: security-paper-2023,",
        "supersedes: security-paper-2023",
        r"content\.assets\[2\]\.supersedes: 'security-paper-2023' is not the id of another asset; expected one of \[",
    ),
    (
        "{id: implementation-plan, gate: decision,",
        "{id: roi-calculator, gate: decision,",
        "{id: roi-calculator, gate: decision, title: Impl",
        r"content\.assets\[5\]: asset 'roi-calculator' version 1 is listed twice \(first at content\.assets\[4\]\)",
    ),
    (
        "{id: contoso-story, gate: consideration,",
        "{id: contoso-story,",
        "{id: contoso-story, title",
        r"content\.assets\[3\]: asset 'contoso-story' has no gate; with content\.gates every asset needs one of",
    ),
    (
        "sql: decision, opportunity",
        "sql: decided, opportunity",
        "sql: decided",
        r"content\.stages\.sql: unknown gate 'decided'; expected one of",
    ),
    (
        "{subscriber: awareness,",
        "{subscriber: awareness, prospect: awareness,",
        "prospect: awareness",
        r"content\.stages\.prospect: unknown stage 'prospect'; expected one of \[",
    ),
    (
        "{gate: decision, kinds: [form_fill]",
        "{gate: decision, kinds: [form_fil]",
        "kinds: [form_fil]",
        r"content\.behaviour\[0\]\.kinds\[0\]: unknown activity kind 'form_fil'; expected one of \['form_fill'",
    ),
    (
        "{gate: decision, kinds: [form_fill]",
        "{gate: decide, kinds: [form_fill]",
        "{gate: decide",
        r"content\.behaviour\[0\]\.gate: unknown gate 'decide'; expected one of",
    ),
    (
        "gates: [awareness, consideration, decision]",
        "gates: [awareness, consideration, awareness, decision]",
        "gates: [awareness, consideration, awareness",
        r"content\.gates\[2\]: gate 'awareness' is listed twice",
    ),
    (
        "version: 2, supersedes",
        "version: 0, supersedes",
        "version: 0",
        r"content\.assets\[2\]\.version: Input should be greater than or equal to 1",
    ),
    (
        "retired: true,",
        "retired: maybe,",
        "retired: maybe",
        r"content\.assets\[1\]\.retired: Input should be a valid boolean",
    ),
    ("  limit: 3\n", "  limit: 3\n  limits: 3\n", "limits: 3", r"content\.limits: unknown key"),
]


@pytest.mark.parametrize(("old", "new", "needle", "pattern"), BAD, ids=[b[3][:40] for b in BAD])
def test_a_content_mistake_is_one_line_with_file_and_line(cfg, capsys, old, new, needle, pattern):
    path = cfg / "handoff.yaml"
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if needle in t)
    assert main(["validate", "--offline", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    out = [ln for ln in err.splitlines() if ln]
    assert len(out) == 1 and "Traceback" not in err, err
    assert out[0].startswith(f"error: {path}:{line}: "), out[0]
    assert re.search(pattern, out[0]), out[0]


def test_supersedes_in_a_circle_is_named(cfg, capsys):
    path = cfg / "handoff.yaml"
    text = path.read_text()
    old = "{id: security-whitepaper-2023, gate: consideration, retired: true,"
    path.write_text(
        text.replace(
            old, "{id: security-whitepaper-2023, supersedes: security-whitepaper, gate: consideration,"
        )
    )
    lines_ = path.read_text().splitlines()
    first = next(i for i, t in enumerate(lines_, 1) if "supersedes: security-whitepaper," in t)
    second = next(i for i, t in enumerate(lines_, 1) if "supersedes: security-whitepaper-2023," in t)
    assert main(["validate", "--offline", "--config", str(cfg)]) == 2
    out = [ln for ln in capsys.readouterr().err.splitlines() if ln]
    assert out == [
        f"error: {path}:{first}: content.assets[1].supersedes: supersedes goes round in a circle: "
        "security-whitepaper-2023 -> security-whitepaper -> security-whitepaper-2023",
        f"error: {path}:{second}: content.assets[2].supersedes: supersedes goes round in a circle: "
        "security-whitepaper -> security-whitepaper-2023 -> security-whitepaper",
    ]


def test_a_gate_without_content_gates_is_one_line(cfg, capsys):
    path = cfg / "handoff.yaml"
    text = path.read_text()
    path.write_text(
        text[: text.index("# content:")].replace(
            "{title: Security whitepaper,", "{gate: consideration, title: Security whitepaper,"
        )
    )
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "gate: consideration" in t)
    assert main(["validate", "--offline", "--config", str(cfg)]) == 2
    out = [ln for ln in capsys.readouterr().err.splitlines() if ln]
    assert out == [
        f"error: {path}:{line}: content_library[1].gate: unknown gate 'consideration'; "
        "gates need the content key (content.gates)"
    ]


def test_the_shipped_file_validates(cfg, capsys):
    assert main(["validate", "--offline", "--config", str(cfg)]) == 0
