"""Mapping files: the shipped set loads; malformed files give one-line errors and exit 2."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from crm_handoff.errors import ConfigError
from mappings.loader import default_dir, load_mappings
from sync.cli import main


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(default_dir(), target)
    return target


def edit(cfg: Path, name: str, old: str, new: str) -> None:
    path = cfg / f"{name}.yaml"
    text = path.read_text()
    assert old in text, f"{old!r} not in {name}.yaml"
    path.write_text(text.replace(old, new, 1))


def test_shipped_mappings_load():
    m = load_mappings()
    assert m.lifecycle.funnel[:6] == ("subscriber", "lead", "mql", "sql", "opportunity", "customer")
    assert {"nurture", "disqualified"} <= set(m.lifecycle.side_stages)
    assert m.reps.reps[0].weekly_capacity == 6  # 120 minutes at 20 a lead


def test_validate_ok_prints_summary(cfg, capsys):
    assert main(["validate", "--config", str(cfg)]) == 0
    assert capsys.readouterr().out.startswith("ok: 8 stages")


def test_combined_single_file(tmp_path, cfg):
    combined = tmp_path / "all.yaml"
    parts = []
    for name in ("lifecycle", "fields", "sales_ready", "reps", "handoff"):
        body = (cfg / f"{name}.yaml").read_text()
        parts.append(f"{name}:\n" + "\n".join("  " + line for line in body.splitlines()))
    combined.write_text("\n".join(parts) + "\n")
    assert load_mappings(combined).sales_ready.threshold == 60


BAD = [
    ("bad YAML", "reps", "reps:\n", "reps: [\n", r"reps\.yaml:\d+: invalid YAML"),
    (
        "unknown stage",
        "sales_ready",
        "eligible_stages: [lead, mql, nurture]",
        "eligible_stages: [lead, hot]",
        r"sales_ready\.yaml:\d+: eligible_stages\[1\]: unknown stage 'hot'",
    ),
    (
        "negative minutes",
        "reps",
        "weekly_followup_minutes: 120, minutes_per_lead: 20, territories: [United States, Canada]",
        "weekly_followup_minutes: -5, minutes_per_lead: 20, territories: [United States, Canada]",
        r"reps\.yaml:\d+: reps\[0\]\.weekly_followup_minutes: Input should be greater than or equal to 0",
    ),
    (
        "rep with no email",
        "reps",
        "email: dana.cruz@northwind.example, ",
        "",
        r"reps\.yaml:\d+: reps\[0\]\.email: required key is missing",
    ),
    (
        "unknown sync rule",
        "fields",
        "rule: two_way}",
        "rule: sometimes}",
        r"fields\.yaml:\d+: fields\[3\]\.rule: Input should be .*got 'sometimes'",
    ),
    (
        "template syntax error",
        "handoff",
        'score {{ score }}"',
        'score {{ score "',
        r"handoff\.yaml:\d+: subject: template syntax error",
    ),
    (
        "zero minutes per lead",
        "reps",
        "minutes_per_lead: 30",
        "minutes_per_lead: 0",
        r"reps\.yaml:\d+: reps\[1\]\.minutes_per_lead: Input should be greater than or equal to 1",
    ),
    (
        "unknown activity kind",
        "sales_ready",
        "activity: meeting",
        "activity: smoke_signal",
        r"sales_ready\.yaml:\d+: behaviour\[4\]\.activity: unknown activity 'smoke_signal'",
    ),
    (
        "unknown key",
        "handoff",
        "due_in_days: 2",
        "due_in_dayz: 2",
        r"handoff\.yaml:\d+: due_in_dayz: unknown key",
    ),
    (
        "field not in fields.yaml",
        "sales_ready",
        "field: industry,",
        "field: revenue,",
        r"sales_ready\.yaml:\d+: fit\[2\]\.field: unknown field 'revenue'",
    ),
    (
        "fit rule with two tests",
        "sales_ready",
        "min: 50, max: 5000,",
        "min: 50, max: 5000, one_of: [x],",
        r"sales_ready\.yaml:\d+: fit\[3\]: give exactly one test",
    ),
    (
        "duplicate rep email",
        "reps",
        "email: lee.park@northwind.example",
        "email: dana.cruz@northwind.example",
        r"reps\.yaml:\d+: reps: rep emails must be unique",
    ),
    (
        "bad time zone",
        "reps",
        "timezone: Europe/London",
        "timezone: Mars/Olympus",
        r"reps\.yaml:\d+: reps\[2\]\.timezone: unknown time zone 'Mars/Olympus'",
    ),
    (
        "unknown stage in write",
        "lifecycle",
        "  sql:\n    hubspot: {lifecyclestage: salesqualifiedlead",
        "  hot:\n    hubspot: {lifecyclestage: salesqualifiedlead",
        r"lifecycle\.yaml:\d+: .*unknown stage 'hot' in write",
    ),
    (
        "threshold not a number",
        "sales_ready",
        "threshold: 60",
        "threshold: lots",
        r"sales_ready\.yaml:\d+: threshold: Input should be a valid integer",
    ),
    (
        "bad task target",
        "handoff",
        "\ntask_in: rep_crm",
        "\ntask_in: fax",
        r"handoff\.yaml:\d+: task_in: Input should be .*got 'fax'",
    ),
]


@pytest.mark.parametrize(("what", "name", "old", "new", "pattern"), BAD, ids=[b[0] for b in BAD])
def test_malformed_mapping_one_line_exit_2(cfg, capsys, tmp_path, monkeypatch, what, name, old, new, pattern):
    import re

    edit(cfg, name, old, new)
    state = tmp_path / "state.db"
    monkeypatch.setenv("HANDOFF_STATE_URL", f"sqlite:///{state}")
    monkeypatch.setenv("HUBSPOT_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "unused-token")
    for argv in (["validate", "--config", str(cfg)], ["sync", "--once", "--config", str(cfg)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln]
        assert lines, "no error printed"
        assert "Traceback" not in err
        assert any(re.search(pattern, ln) for ln in lines), err
        assert all(ln.startswith("error: ") for ln in lines)
    assert not state.exists(), "a config error must write nothing"


def test_missing_directory_is_one_line(capsys, tmp_path):
    assert main(["validate", "--config", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nope'}: no such file or directory"


def test_error_lists_every_problem(cfg):
    edit(cfg, "reps", "minutes_per_lead: 30", "minutes_per_lead: 0")
    edit(cfg, "reps", "weekly_followup_minutes: 100", "weekly_followup_minutes: -1")
    with pytest.raises(ConfigError) as err:
        load_mappings(cfg)
    assert len(err.value.problems) == 2
