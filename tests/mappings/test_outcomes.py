"""handoff.yaml ``outcomes:`` and ``sla:``: absent means today's behaviour; every mistake one line."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from mappings.loader import default_dir, load_mappings
from mappings.outcomes import Outcomes, Sla
from sync.cli import main


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(default_dir(), target)
    return target


def write_handoff(cfg: Path, tail: str) -> Path:
    """The shipped handoff.yaml without its outcomes/sla sections, ``tail`` appended."""
    path = cfg / "handoff.yaml"
    text = path.read_text()
    path.write_text(text[: text.index("# outcomes:")] + tail)
    return path


def test_a_handoff_file_without_the_sections_means_no_outcome_handling(cfg):
    write_handoff(cfg, "")
    handoff = load_mappings(cfg).handoff
    assert handoff.outcomes == Outcomes() and handoff.outcomes.choices == ()
    assert handoff.outcomes.capacity_counts == "assigned_week"
    assert handoff.outcomes.give_back_if_rejected_within_hours is None
    assert handoff.sla == Sla() and not handoff.sla.active


def test_the_shipped_sections(cfg):
    handoff = load_mappings().handoff
    choices = handoff.outcomes.by_value()
    assert list(choices) == ["worked", "not_a_fit", "no_response", "invalid"]
    assert choices["worked"].action == "keep" and not choices["worked"].rejects
    assert choices["not_a_fit"].action == "nurture" and choices["not_a_fit"].offer_again_after_days == 90
    assert choices["no_response"].display == "No response after my attempts"
    assert handoff.outcomes.give_back_if_rejected_within_hours == 1
    assert handoff.sla.active and handoff.sla.first_touch_within_hours == 16
    assert handoff.sla.on_breach == "notify"


def test_reroute_and_reassign_with_two_active_reps(cfg):
    write_handoff(
        cfg,
        "outcomes:\n"
        "  choices:\n"
        "    - {value: wrong_rep, action: reroute}\n"
        "sla: {first_touch_within_hours: 8, on_breach: reassign, max_reassignments: 2, after_max_reassignments: recycle}\n",
    )
    handoff = load_mappings(cfg).handoff
    assert handoff.outcomes.choices[0].display == "Wrong rep"
    assert handoff.sla.max_reassignments == 2 and handoff.sla.after_max_reassignments == "recycle"


def check_one_line(
    cfg: Path, capsys: pytest.CaptureFixture[str], path: Path, needle: str, pattern: str
) -> None:
    lines = path.read_text().splitlines()
    line = max(i for i, text in enumerate(lines, 1) if needle in text)
    assert main(["validate", "--offline", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    out = [ln for ln in err.splitlines() if ln]
    assert len(out) == 1 and "Traceback" not in err, err
    assert out[0].startswith(f"error: {path}:{line}: "), out[0]
    assert re.search(pattern, out[0]), out[0]


CHOICE = "outcomes:\n  choices:\n    - {value: worked, action: keep}\n"
BAD = [
    # (tail of handoff.yaml, text of the line the error must name, pattern)
    (
        "outcomes:\n  choices:\n    - {value: worked, action: keep}\n    - {value: meh, action: shrug}\n",
        "shrug",
        r"outcomes\.choices\[1\]\.action: Input should be 'keep', 'nurture', 'disqualify', 'reroute' or 'recycle', got 'shrug'",
    ),
    (
        "outcomes:\n  choices:\n    - {value: Not a fit, action: nurture}\n",
        "Not a fit",
        r"outcomes\.choices\[0\]\.value: String should match pattern",
    ),
    (
        "outcomes:\n  choices:\n    - {value: worked, action: keep}\n    - {value: worked, action: recycle}\n",
        "recycle",
        r"outcomes\.choices\[1\]\.value: 'worked' is already the value of choice 0",
    ),
    (
        "outcomes:\n  choices:\n    - {value: a, label: Done, action: keep}\n    - {value: b, label: done, action: recycle}\n",
        "value: b",
        r"outcomes\.choices\[1\]\.label: 'done' is already the label of choice 0",
    ),
    (
        "outcomes:\n  choices:\n    - {value: bad, action: disqualify, offer_again_after_days: 30}\n",
        "bad",
        r"outcomes\.choices\[0\]: offer_again_after_days applies to action nurture only, not disqualify",
    ),
    (
        "outcomes:\n  choices:\n    - {value: later, action: nurture, offer_again_after_days: -1}\n",
        "later",
        r"offer_again_after_days: Input should be greater than or equal to 0",
    ),
    (
        "outcomes:\n  choices:\n    - {action: keep}\n",
        "action: keep",
        r"outcomes\.choices\[0\]\.value: required key is missing",
    ),
    (
        CHOICE + "  give_back_if_rejected_within_hours: 1\n",
        "outcomes:",
        r"outcomes: give_back_if_rejected_within_hours needs a choice that rejects",
    ),
    (
        CHOICE + "  capacity_counts: completed\n",
        "capacity_counts",
        r"capacity_counts: Input should be 'assigned_week'",
    ),
    (CHOICE + "  give_back_if_rejected_within_hours: 0\n", "give_back", r"Input should be greater than 0"),
    ("outcomes: [worked]\n", "outcomes:", r"outcomes: Input should be a valid dictionary"),
    (CHOICE + "  choice: []\n", "choice: []", r"outcomes\.choice: unknown key"),
    ("sla: {on_breach: reassign}\n", "sla:", r"sla: on_breach needs first_touch_within_hours"),
    (
        "sla: {first_touch_within_hours: 8}\n",
        "sla:",
        r"sla: first_touch_within_hours needs on_breach: reassign, notify or recycle",
    ),
    (
        "sla: {first_touch_within_hours: 8, on_breach: reassign, max_reassignments: 0}\n",
        "sla:",
        r"sla: on_breach: reassign with max_reassignments: 0 never reassigns",
    ),
    (
        "sla:\n  first_touch_within_hours: 8\n  on_breach: escalate\n",
        "escalate",
        r"sla\.on_breach: Input should be 'reassign', 'notify' or 'recycle', got 'escalate'",
    ),
    (
        "sla:\n  first_touch_within_hours: -2\n  on_breach: notify\n",
        "-2",
        r"sla\.first_touch_within_hours: Input should be greater than 0",
    ),
    (
        "sla:\n  first_touch_within_hours: soon\n  on_breach: notify\n",
        "soon",
        r"Input should be a valid number",
    ),
    (
        "sla:\n  first_touch_within_hours: 8\n  on_breach: notify\n  max_reasignments: 2\n",
        "max_reasignments",
        r"sla\.max_reasignments: unknown key",
    ),
]


@pytest.mark.parametrize(("tail", "needle", "pattern"), BAD, ids=[b[2] for b in BAD])
def test_a_bad_section_is_one_line_naming_its_line(cfg, capsys, tail, needle, pattern):
    path = write_handoff(cfg, tail)
    check_one_line(cfg, capsys, path, needle, pattern)


def only_dana_active(cfg: Path) -> None:
    path = cfg / "reps.yaml"
    data = yaml.safe_load(path.read_text())
    for rep in data["reps"][1:]:
        rep["active"] = False
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_a_reroute_with_no_other_rep(cfg, capsys):
    only_dana_active(cfg)
    path = write_handoff(cfg, "outcomes:\n  choices:\n    - {value: wrong_rep, action: reroute}\n")
    check_one_line(
        cfg,
        capsys,
        path,
        "reroute",
        r"outcomes\.choices\[0\]\.action: reroute needs another rep, but only dana\.cruz@northwind\.example is active in reps\.yaml",
    )


def test_a_reassigning_sla_with_no_other_rep(cfg, capsys):
    only_dana_active(cfg)
    path = write_handoff(cfg, "sla:\n  first_touch_within_hours: 8\n  on_breach: reassign\n")
    check_one_line(
        cfg, capsys, path, "reassign", r"sla\.on_breach: reassign needs another rep, but only dana"
    )


def test_the_shipped_sections_need_no_second_rep(cfg):
    only_dana_active(cfg)
    assert load_mappings(cfg).handoff.sla.on_breach == "notify"
