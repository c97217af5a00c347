"""reps.yaml ``outside_work``: off by default, overridable per rep, every mistake one line (exit 2)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from mappings.loader import default_dir, load_mappings
from sync.cli import main


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(default_dir(), target)
    return target


def write_reps(cfg: Path, top: str = "", dana: str = "") -> Path:
    """The shipped reps.yaml with ``top`` appended and ``dana`` added to the first rep's keys."""
    path = cfg / "reps.yaml"
    text = path.read_text()
    if dana:
        text = text.replace("timezone: America/Chicago}", f"timezone: America/Chicago, {dana}}}", 1)
    path.write_text(text + top)
    return path


def test_off_by_default_nothing_counts():
    reps = load_mappings().reps
    for r in reps.reps:
        rule = reps.outside_for(r)
        assert rule.salesforce.task_types == () and rule.salesforce.lead_statuses == ()
        assert rule.hubspot.task_types == () and rule.minutes_each is None


def test_top_level_applies_to_every_rep_and_a_rep_block_replaces_it(cfg):
    top = (
        "outside_work:\n"
        "  salesforce: {task_types: [Call, Follow-up], lead_statuses: [Working - Contacted]}\n"
        "  hubspot: {task_types: any}\n"
        "  minutes_each: 15\n"
    )
    write_reps(cfg, top, dana="outside_work: {salesforce: {task_types: ANY}}")
    reps = load_mappings(cfg).reps
    dana, lee = reps.reps[0], reps.reps[1]
    assert reps.outside_for(lee).salesforce.task_types == ("Call", "Follow-up")
    assert reps.outside_for(lee).salesforce.lead_statuses == ("Working - Contacted",)
    assert reps.outside_for(lee).hubspot.task_types == "any" and reps.outside_for(lee).minutes_each == 15
    own = reps.outside_for(dana)  # her own block, whole: no leads, no HubSpot, one lead each
    assert own.salesforce.task_types == "any" and own.salesforce.lead_statuses == ()
    assert own.hubspot.task_types == () and own.minutes_each is None


BAD = [
    (
        "salesforce: {task_types: []}",
        r"outside_work\.salesforce\.task_types: expected a list of task types, or any",
    ),
    (
        "salesforce: {task_types: every}",
        r"outside_work\.salesforce\.task_types: expected a list of task types",
    ),
    (
        "salesforce: {task_types: [Call, 3]}",
        r"outside_work\.salesforce\.task_types: expected task type names",
    ),
    (
        "salesforce: {lead_statuses: ['']}",
        r"outside_work\.salesforce\.lead_statuses\[0\]: String should have",
    ),
    (
        "hubspot: {task_types: [Call]}",
        r"outside_work\.hubspot\.task_types: HubSpot task types are internal .*'Call'",
    ),
    ("hubspot: {lead_statuses: [Open]}", r"outside_work\.hubspot\.lead_statuses: unknown key"),
    ("salesforce: {task_type: [Call]}", r"outside_work\.salesforce\.task_type: unknown key"),
    ("minutes_each: 0", r"outside_work\.minutes_each: Input should be greater than or equal to 1"),
    ("minutes_each: lots", r"outside_work\.minutes_each: Input should be a valid integer"),
]


@pytest.mark.parametrize(("block", "pattern"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_top_level_block_is_one_line_with_file_and_line(cfg, capsys, block, pattern):
    path = write_reps(cfg, f"outside_work:\n  {block}\n")
    line = len(path.read_text().splitlines())  # the block's last line is the file's last
    assert main(["validate", "--offline", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"error: {path}:{line}: "), lines[0]
    assert re.search(pattern, lines[0]), lines[0]


def test_a_bad_rep_block_names_the_rep(cfg, capsys):
    path = write_reps(cfg, dana="outside_work: {hubspot: {task_types: [todo]}}")
    assert main(["validate", "--offline", "--config", str(cfg)]) == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln]
    assert re.match(
        rf"error: {re.escape(str(path))}:\d+: reps\[0\]\.outside_work\.hubspot\.task_types: ", line
    )
    assert "got 'todo'" in line
