"""Mapping files that used to crash the loader or mislead it: each is now one line, fast.

A directory where a file belongs, a non-UTF-8 byte, brackets nested thousands deep, a
YAML alias bomb, a 50 MB file, values Python cannot build, a key given twice, an
unknown top-level key of a combined file: each gives one ``ConfigError`` line naming
the file (and the line and key path where there is one), within a second.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from crm_handoff.errors import ConfigError
from mappings.loader import MAX_ALIAS_NODES, MAX_DEPTH, MAX_FILE_BYTES, default_dir, load_mappings

FILES = ("lifecycle", "fields", "sales_ready", "reps", "handoff")


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(default_dir(), target)
    return target


def problems(config: Path) -> list[str]:
    """The loader's problem lines for ``config``; it must answer within a second."""
    started = time.monotonic()
    with pytest.raises(ConfigError) as err:
        load_mappings(config)
    assert time.monotonic() - started < 1.0, "the loader took over a second"
    return err.value.problems


def append(cfg: Path, name: str, text: str) -> Path:
    path = cfg / f"{name}.yaml"
    path.write_text(path.read_text() + text)
    return path


def lines_of(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_a_directory_where_a_file_belongs(cfg):
    (cfg / "reps.yaml").unlink()
    (cfg / "reps.yaml").mkdir()
    assert problems(cfg) == [f"{cfg / 'reps.yaml'}: is a directory; expected a YAML file"]


def test_a_fifo_is_refused_without_blocking(cfg):
    (cfg / "reps.yaml").unlink()
    os.mkfifo(cfg / "reps.yaml")
    assert problems(cfg) == [f"{cfg / 'reps.yaml'}: not a regular file; expected a YAML file"]


def test_a_non_utf8_byte_names_its_line_and_column(cfg):
    path = cfg / "reps.yaml"
    before = lines_of(path)
    path.write_bytes(path.read_bytes() + b"# caf\xe9 au lait\n")
    assert problems(cfg) == [
        f"{path}:{before + 1}: not UTF-8 text (byte 0xe9 at column 6); save the file as UTF-8"
    ]


def test_a_control_character_names_its_line(cfg):
    path = append(cfg, "reps", "# a\x00b\n")
    (line,) = problems(cfg)
    assert line.startswith(f"{path}:{lines_of(path)}: invalid YAML: unacceptable character #x0000")


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 3000])
def test_deep_nesting_is_refused_before_python_recurses(cfg, depth):
    path = cfg / "reps.yaml"
    text = path.read_text().replace("pools: []\n", "")
    path.write_text(text + "pools: " + "[" * depth + "]" * depth + "\n")
    (line,) = problems(cfg)
    assert re.fullmatch(
        rf"{re.escape(str(path))}:{lines_of(path)}: "
        rf"(nested deeper than {MAX_DEPTH} levels|invalid YAML: exceeded maximum nesting depth)",
        line,
    ), line


def test_deep_block_nesting_is_refused(cfg):
    path = cfg / "lifecycle.yaml"
    text = "".join(f"{'  ' * i}k{i}:\n" for i in range(MAX_DEPTH + 5)) + "  " * (MAX_DEPTH + 5) + "x: 1\n"
    path.write_text(text)
    (line,) = problems(cfg)
    assert line == f"{path}:{MAX_DEPTH}: nested deeper than {MAX_DEPTH} levels"


BOMB = """
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def test_an_alias_bomb_is_refused_at_the_alias_that_crosses_the_bound(cfg):
    path = append(cfg, "sales_ready", BOMB)
    start = lines_of(path) - BOMB.count("\n") + 1
    (line,) = problems(cfg)
    # *a adds 11 nodes, *b 111, *c 1,111: the eighth *c on d's line crosses 10,000
    bomb_line = start + 4
    assert (
        line == f"{path}:{bomb_line}: aliases expand to more than {MAX_ALIAS_NODES} values (an alias bomb?)"
    )


def test_an_alias_inside_its_own_anchor_is_refused(cfg):
    path = append(cfg, "sales_ready", "loop: &loop [*loop]\n")
    assert problems(cfg) == [
        f"{path}:{lines_of(path)}: alias *loop is inside its own anchor (a structure that never ends)"
    ]


def test_ordinary_anchors_and_aliases_still_work(cfg):
    path = cfg / "sales_ready.yaml"
    text = path.read_text().replace(
        "eligible_stages: [lead, mql, nurture]", "eligible_stages: &stages [lead, mql, nurture]"
    )
    path.write_text(text)
    handoff = cfg / "handoff.yaml"
    text = handoff.read_text().replace("stages: [mql, sql]}", "stages: &mql_sql [mql, sql]}")
    handoff.write_text(text.replace("stages: [mql]}", "stages: *mql_sql}"))
    m = load_mappings(cfg)
    assert m.sales_ready.eligible_stages == ("lead", "mql", "nurture")
    assert m.handoff.content_library[2].stages == ("mql", "sql")


def test_a_50_mb_file_is_refused_before_it_is_read(cfg):
    path = cfg / "fields.yaml"
    with path.open("r+b") as fh:
        fh.truncate(50 * 1024 * 1024)  # sparse: 50 MB of NULs that must never be read
    assert problems(cfg) == [
        f"{path}: 52,428,800 bytes is too large; a mapping file may be at most 1,048,576 bytes (1 MiB)"
    ]


def test_a_file_just_under_the_cap_still_loads(cfg):
    path = cfg / "fields.yaml"
    text = path.read_text()
    path.write_text(text + "#" * (MAX_FILE_BYTES - len(text.encode()) - 1) + "\n")
    assert len(load_mappings(cfg).fields.fields) == 9


@pytest.mark.parametrize(
    ("name", "old", "new", "message"),
    [
        (
            "sales_ready",
            "threshold: 60",
            "threshold: " + "9" * 5000,
            "cannot read this value: Exceeds the limit (4300 digits) for integer string conversion",
        ),
        (
            "handoff",
            "due_in_days: 2",
            "due_in_days: 2024-13-45",
            "cannot read this value: month must be in 1..12",
        ),
    ],
    ids=["int of 5000 digits", "impossible date"],
)
def test_a_value_python_cannot_build_names_its_line(cfg, name, old, new, message):
    path = cfg / f"{name}.yaml"
    text = path.read_text()
    line_no = text[: text.index(old)].count("\n") + 1
    path.write_text(text.replace(old, new))
    (line,) = problems(cfg)
    assert line.startswith(f"{path}:{line_no}: {message}"), line
    assert "sys.set_int_max_str_digits" not in line


@pytest.mark.parametrize(
    ("name", "old", "new", "path_text"),
    [
        ("sales_ready", "threshold: 60\n", "threshold: 60\nthreshold: 10\n", "threshold"),
        ("lifecycle", "    label: Lead\n", "    label: Lead\n    label: Prospect\n", "stages.lead.label"),
        ("lifecycle", "  customer:\n", "  lead:\n    label: Again\n  customer:\n", "stages.lead"),
        (
            "fields",
            "{name: phone, hubspot: phone,",
            "{name: phone, hubspot: phone, hubspot: mobile,",
            "fields[8].hubspot",
        ),
        ("reps", "\npools: []", "\npools: []\npools: []", "pools"),
    ],
    ids=["top-level threshold", "nested label", "stage given twice", "same line flow mapping", "pools"],
)
def test_a_key_given_twice_is_refused_with_its_path(cfg, name, old, new, path_text):
    path = cfg / f"{name}.yaml"
    text = path.read_text()
    assert old in text
    key = path_text.split(".")[-1].split("[")[0] + ":"
    at = text.index(old) + new.rindex(key)  # the second occurrence, in the edited text
    first = text.rindex(key, 0, at) if path_text != "stages.lead" else text.index("  lead:")
    text = text.replace(old, new, 1)
    path.write_text(text)
    line, first_line = text[:at].count("\n") + 1, text[:first].count("\n") + 1
    assert problems(cfg) == [f"{path}:{line}: {path_text}: duplicate key (first given on line {first_line})"]


def combined(cfg: Path, tmp_path: Path, extra: str = "", skip: str = "") -> Path:
    parts = []
    for name in FILES:
        if name != skip:
            body = (cfg / f"{name}.yaml").read_text()
            parts.append(f"{name}:\n" + "\n".join("  " + line for line in body.splitlines()))
    path = tmp_path / "all.yaml"
    path.write_text("\n".join(parts) + "\n" + extra)
    return path


def test_a_combined_file_refuses_an_unknown_top_level_key(cfg, tmp_path):
    path = combined(cfg, tmp_path, extra="sales_redy:\n  threshold: 10\n")
    assert problems(path) == [
        f"{path}:{lines_of(path) - 1}: sales_redy: unknown key "
        "(a combined file has the keys lifecycle, fields, sales_ready, reps, handoff)"
    ]


def test_a_combined_file_names_a_missing_section(cfg, tmp_path):
    path = combined(cfg, tmp_path, skip="reps")
    assert problems(path) == [f"{path}:1: reps: required key is missing"]


def test_a_combined_file_refuses_a_section_given_twice(cfg, tmp_path):
    path = combined(cfg, tmp_path, extra="sales_ready:\n  threshold: 10\n")
    (line,) = problems(path)
    assert re.fullmatch(
        rf"{re.escape(str(path))}:\d+: sales_ready: duplicate key \(first given on line \d+\)", line
    )


def test_a_combined_file_that_is_fine_loads(cfg, tmp_path):
    assert load_mappings(combined(cfg, tmp_path)).sales_ready.threshold == 60
