"""sales_ready.yaml definitions: every new key checked, one line with its file and line."""

from __future__ import annotations

import re
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


def edit(cfg: Path, old: str, new: str) -> tuple[Path, int]:
    """Replace the first ``old`` in sales_ready.yaml; (file, line the change is on)."""
    path = cfg / "sales_ready.yaml"
    text = path.read_text()
    at = text.index(old)
    path.write_text(text.replace(old, new, 1))
    return path, text.count("\n", 0, at) + 1


SENIOR = "{fit: Senior title}"
INDUSTRY = "{fit: Target industry}"
WEBINAR = "{activity: webinar_attended, at_least: 1, within_days: 60}"
CASES = [
    (
        SENIOR,
        "{fit: Senior titel}",
        r"definitions\[0\]\.all_of\[1\]\.fit: unknown fit rule 'Senior titel'; "
        r"expected 'Senior title', 'Manager title', ",
    ),
    (
        INDUSTRY,
        "{field: sector, one_of: [Tech]}",
        r"definitions\[1\]\.all_of\[1\]\.field: unknown field 'sector'; "
        r"expected a name from fields\.yaml \(company, ",
    ),
    (
        SENIOR,
        "{fit: Senior title, score_at_least: 50}",
        r"definitions\[0\]\.all_of\[1\]: give exactly one kind of "
        r"condition: .*; got fit, score_at_least$",
    ),
    (
        INDUSTRY,
        "{one_of: [Tech]}",
        r"definitions\[1\]\.all_of\[1\]: one_of is a test on a field; give field: too$",
    ),
    (INDUSTRY, "{field: industry}", r"definitions\[1\]\.all_of\[1\]: give exactly one test: one_of, "),
    (
        INDUSTRY,
        "{field: company_size, min: 500, max: 50}",
        r"definitions\[1\]\.all_of\[1\]: min is greater than max$",
    ),
    (
        SENIOR,
        "{fit: Senior title, at_least: 2}",
        r"definitions\[0\]\.all_of\[1\]: at_least counts activities, not fit$",
    ),
    (
        WEBINAR,
        "{activity: webinar_attended}",
        r"definitions\[2\]\.all_of\[0\]: an activity condition needs within_days",
    ),
    (
        WEBINAR,
        "{activity: webinar, within_days: 60}",
        r"definitions\[2\]\.all_of\[0\]\.activity: unknown activity "
        r"'webinar'; expected one of \[",
    ),
    (
        WEBINAR,
        "{activity: webinar_attended, at_least: 0, within_days: 60}",
        r"definitions\[2\]\.all_of\[0\]\.at_least: Input should be greater than or equal to 1$",
    ),
    (
        WEBINAR,
        "{activity: webinar_attended, within_day: 60}",
        r"definitions\[2\]\.all_of\[0\]\.within_day: unknown key \(check the spelling",
    ),
    (
        WEBINAR,
        "{activity: call, within_days: 60, title_contains_any: []}",
        r"definitions\[2\]\.all_of\[0\]\.title_contains_any: .*at least 1 item",
    ),
    (
        "{score_at_least: threshold}",
        "{score_at_least: 0}",
        r"definitions\[3\]\.all_of\[0\]\.score_at_least: expected points \(a whole number, 1 or more\) or "
        r"threshold; got 0$",
    ),
    (
        "{score_at_least: threshold}",
        "{score_at_least: treshold}",
        r"definitions\[3\]\.all_of\[0\]\.score_at_least: expected points .* got 'treshold'$",
    ),
    (
        "  - name: Attended a webinar",
        "  - name: downloads WITH a senior title",
        r"definitions\[2\]\.name: 'downloads WITH a senior title' is already definitions\[0\]$",
    ),
    (
        "  - name: Attended a webinar",
        "  - name: ''",
        r"definitions\[2\]\.name: String should have at least 1 char",
    ),
]


@pytest.mark.parametrize(("old", "new", "pattern"), CASES, ids=[c[1][:40] for c in CASES])
def test_a_bad_definition_is_one_line_with_its_line(cfg, old, new, pattern):
    path, line = edit(cfg, old, new)
    with pytest.raises(ConfigError) as err:
        load_mappings(cfg)
    assert len(err.value.problems) == 1, err.value.problems
    problem = err.value.problems[0]
    assert problem.startswith(f"{path}:{line}: "), problem
    assert re.search(pattern, problem.split(": ", 1)[1]), problem
    assert "\n" not in problem


def test_an_empty_all_of_points_at_its_line(cfg):
    path, line = edit(cfg, f"    all_of:\n      - {WEBINAR}", "    all_of: []")
    with pytest.raises(ConfigError) as err:
        load_mappings(cfg)
    assert err.value.problems == [f"{path}:{line}: definitions[2].all_of: give at least one condition"]


def test_validate_and_sync_exit_2_without_a_traceback(cfg, capsys, tmp_path, monkeypatch):
    path, line = edit(cfg, SENIOR, "{fit: Senior titel}")
    monkeypatch.setenv("HANDOFF_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("HUBSPOT_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "unused-token")
    for argv in (["validate", "--config", str(cfg)], ["sync", "--once", "--config", str(cfg)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert err.startswith(f"error: {path}:{line}: definitions[0].all_of[1].fit: unknown fit rule")
    assert not (tmp_path / "state.db").exists()


def test_a_file_with_only_definitions_conditions_it_needs_loads(cfg):
    path = cfg / "sales_ready.yaml"
    text = path.read_text().split("\n# Definitions:")[0]
    path.write_text(
        text
        + "\ndefinitions:\n"
        + "  - name: Telemarketing said yes\n"
        + "    all_of:\n"
        + "      - {field: phone, present: true}\n"
        + "      - {field: company_size, min: 10}\n"
    )
    sr = load_mappings(cfg).sales_ready
    assert [d.name for d in sr.effective_definitions] == ["Telemarketing said yes"]
    assert sr.definitions[0].all_of[1].test is not None and sr.definitions[0].all_of[1].test.min == 10


def test_validate_counts_the_definitions(cfg, capsys):
    assert main(["validate", "--config", str(cfg)]) == 0
    assert "(threshold 60), 4 sales-ready definitions, 5 reps " in capsys.readouterr().out
    path = cfg / "sales_ready.yaml"
    path.write_text(path.read_text().split("\n# Definitions:")[0] + "\n")
    assert main(["validate", "--config", str(cfg)]) == 0
    assert "(threshold 60), 5 reps " in capsys.readouterr().out  # a file without: as before
