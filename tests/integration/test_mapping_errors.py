"""Hostile or mistaken mapping files through the real CLI, with both CRMs up.

For every class of bad mapping file, ``handoff validate --offline`` and ``handoff sync
--once`` exit 2 with one ``error:`` line naming the file (and line and key where there
is one), no traceback, and write nothing: no task in either CRM, no state database.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import state_tables
from tests.integration.conftest import (
    Crms,
    add_lead,
    add_ready_contact,
    add_rep_users,
    mapping_dir,
    rep,
    run_cli,
)

REP = "dana@northwind.example"
FILES = ("lifecycle", "fields", "sales_ready", "reps", "handoff")
EMAIL_LINE = "Email: {{ person.email }}"


def _edit(name: str, old: str, new: str) -> Callable[[Path], Path]:
    def build(cfg: Path) -> Path:
        path = cfg / f"{name}.yaml"
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))
        return cfg

    return build


def _append(name: str, text: str) -> Callable[[Path], Path]:
    def build(cfg: Path) -> Path:
        path = cfg / f"{name}.yaml"
        path.write_bytes(path.read_bytes() + text.encode("latin-1"))
        return cfg

    return build


def _directory(cfg: Path) -> Path:
    (cfg / "reps.yaml").unlink()
    (cfg / "reps.yaml").mkdir()
    return cfg


def _huge(cfg: Path) -> Path:
    with (cfg / "fields.yaml").open("r+b") as fh:
        fh.truncate(50 * 1024 * 1024)
    return cfg


def _deep(cfg: Path) -> Path:
    path = cfg / "reps.yaml"
    text = path.read_text().replace("pools: []\n", "")
    path.write_text(text + "pools:\n" + "  [\n" * 3000 + "  " + "]" * 3000 + "\n")  # 3,000 lines
    return cfg


def _combined_with_unknown_key(cfg: Path) -> Path:
    parts = [
        f"{name}:\n" + "\n".join("  " + ln for ln in (cfg / f"{name}.yaml").read_text().splitlines())
        for name in FILES
    ]
    path = cfg.parent / "all.yaml"
    path.write_text("\n".join(parts) + "\nsales_redy:\n  threshold: 10\n")
    return path


BOMB = "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 10)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)

CASES: list[tuple[str, Callable[[Path], Path], str]] = [
    ("directory", _directory, r"reps\.yaml: is a directory; expected a YAML file"),
    (
        "non-UTF-8",
        _append("reps", "# caf\xe9\n"),
        r"reps\.yaml:\d+: not UTF-8 text \(byte 0xe9 at column 6\)",
    ),
    ("nested 3000 deep", _deep, r"reps\.yaml:\d+: (nested deeper than 50 levels|invalid YAML: exceeded max)"),
    (
        "alias bomb",
        _append("sales_ready", "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + BOMB),
        r"sales_ready\.yaml:\d+: aliases expand to more than 10000 values",
    ),
    ("50 MB", _huge, r"fields\.yaml: 52,428,800 bytes is too large; .* at most 1,048,576 bytes \(1 MiB\)"),
    (
        "unknown variable",
        _edit("handoff", "{{ person.name }}{% if", "{{ persn.name }}{% if"),
        r"handoff\.yaml:18: subject: unknown variable 'persn'",
    ),
    (
        "unknown attribute",
        _edit("handoff", EMAIL_LINE, "Email: {{ person.emial }}"),
        r"handoff\.yaml:43: body: unknown attribute 'emial' of person",
    ),
    (
        "sandbox escape",
        _edit("handoff", EMAIL_LINE, "{{ ''.__class__.__mro__[1].__subclasses__() }}"),
        r"handoff\.yaml:43: body: not allowed in a sandboxed template: attribute '__class__'",
    ),
    (
        "threshold twice",
        _edit("sales_ready", "threshold: 60\n", "threshold: 60\nthreshold: 10\n"),
        r"sales_ready\.yaml:6: threshold: duplicate key \(first given on line 5\)",
    ),
    (
        "unknown top-level key of a combined file",
        _combined_with_unknown_key,
        r"all\.yaml:\d+: sales_redy: unknown key \(a combined file has the keys",
    ),
    (
        "value python cannot build",
        _edit("sales_ready", "threshold: 60", "threshold: " + "9" * 5000),
        r"sales_ready\.yaml:5: cannot read this value: Exceeds the limit \(4300 digits\)",
    ),
]


@pytest.fixture
def seeded(crms: Crms, tmp_path: Path) -> Path:
    """A sales-ready person and a rep: a sync with a good mapping would write a task."""
    add_rep_users(crms, REP)
    add_ready_contact(crms, 1)
    add_lead(crms, 1)
    return mapping_dir(tmp_path, reps=[rep(REP, "salesforce", 120, 20)])


def one_error_line(code: int, err: str, pattern: str, logs: bool = False) -> str:
    """The one ``error:`` line of stderr (with ``logs``, among the run's log lines)."""
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip() and (not logs or ln.startswith("error"))]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and re.search(pattern, lines[0]), lines[0]
    return lines[0]


@pytest.mark.parametrize("state_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("what", "build", "pattern"), CASES, ids=[c[0] for c in CASES])
def test_bad_mapping_is_one_line_exit_2_and_writes_nothing(
    crms, seeded, monkeypatch, state_url, what, build, pattern
):
    config = str(build(seeded))
    for argv in (["validate", "--offline", "--config", config], ["sync", "--once", "--config", config]):
        started = time.monotonic()
        code, _, err = run_cli(crms, monkeypatch, *argv)
        assert time.monotonic() - started < 5, f"{argv[0]} took too long"
        assert str(seeded.parent) in one_error_line(code, err, pattern)  # the full path of the file
    assert crms.sf_tasks() == [] and crms.hs_tasks() == []
    assert state_tables(state_url) == []


@pytest.mark.parametrize("state_url", ["sqlite"], indirect=True)
def test_template_failing_only_on_real_data_stops_the_run_in_one_line_and_loses_nothing(
    crms, seeded, monkeypatch, state_url
):
    handoff = seeded / "handoff.yaml"
    good = handoff.read_text()
    handoff.write_text(good.replace(EMAIL_LINE, "{% if person.company == 'Acme' %}{{ 1 // 0 }}{% endif %}"))
    code, _, err = run_cli(crms, monkeypatch, "validate", "--offline", "--config", str(seeded))
    assert code == 0, err  # no sample person works at Acme

    code, _, err = run_cli(crms, monkeypatch, "sync", "--once", "--config", str(seeded))
    one_error_line(code, err, r"handoff\.yaml:43: body: template failed: ZeroDivisionError", logs=True)
    assert crms.sf_tasks() == [] and crms.hs_tasks() == []

    handoff.write_text(good)  # fixed: the next run hands the person off
    code, _, err = run_cli(crms, monkeypatch, "sync", "--once", "--config", str(seeded))
    assert code == 0, err
    assert len(crms.sf_tasks()) == 1
