"""Task templates are checked when the mapping loads, against what a run gives them.

An unknown variable or attribute (in any branch), a reach outside the sandbox, an
expression that fails or would build something huge: each is one line naming the
file, the line, the template key and the name, at load time (so ``validate`` and
``sync`` both refuse it before anything is written). A template that only fails on
some person's real data fails that run with a ``ConfigError`` line, never a traceback.
"""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crm_handoff.errors import ConfigError
from crm_handoff.records import Activity, Reason
from mappings.context import brief_context, rep_view, sample_contexts
from mappings.loader import default_dir, load_mappings
from mappings.templates import TemplateProblem, render
from sync.brief import build_brief

EMAIL_LINE = "Email: {{ person.email }}"


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(default_dir(), target)
    return target


def with_template(cfg: Path, old: str, new: str) -> tuple[Path, int]:
    """Edit handoff.yaml; (its path, the file line of the edit)."""
    path = cfg / "handoff.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path, text[: text.index(old)].count("\n") + 1


def problems(cfg: Path) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_mappings(cfg)
    return err.value.problems


KNOWN = "known: activities, content, due, person, reasons, rep, score, threshold"
PERSON = "it has: company, country, email, fields, name, stage, title"


@pytest.mark.parametrize(
    ("old", "new", "key", "message"),
    [
        ("{{ person.name }}{% if", "{{ persn.name }}{% if", "subject", f"unknown variable 'persn' ({KNOWN})"),
        (EMAIL_LINE, "Email: {{ person.emial }}", "body", f"unknown attribute 'emial' of person ({PERSON})"),
        (
            EMAIL_LINE,
            "{% if score > 1000 %}{{ person.emial }}{% endif %}",
            "body",
            f"unknown attribute 'emial' of person ({PERSON})",
        ),
        ("- none recorded", "- {{ nobody }}", "body", f"unknown variable 'nobody' ({KNOWN})"),
        (
            EMAIL_LINE,
            "{{ person.fields.revenue }}",
            "body",
            "unknown attribute 'revenue' of person.fields (it has: company, company_size, country, email, "
            "first_name, industry, last_name, phone, title)",
        ),
        (EMAIL_LINE, "{{ rep.phone }}", "body", "unknown attribute 'phone' of rep (it has: email, name)"),
        (
            "{{ r.rule }}",
            "{{ r.rulez }}",
            "body",
            "unknown attribute 'rulez' of r (it has: detail, points, rule)",
        ),
        (
            "{{ r.rule }}",
            "{% if r.points > 1000 %}{{ r.rulez }}{% endif %}",
            "body",
            "unknown attribute 'rulez' of r (it has: detail, points, rule)",
        ),
        (
            "{{ c.url }}",
            "{{ c.link }}",
            "body",
            "unknown attribute 'link' of c (it has: gate, id, title, url, version)",
        ),
        (
            EMAIL_LINE,
            "{% for x in reasons %}{{ x.rule }}{% endfor %}{% for x in content %}{{ x.rule }}{% endfor %}",
            "body",
            "unknown variable or attribute: 'dict object' has no attribute 'rule'",
        ),
    ],
    ids=[
        "unknown variable",
        "unknown attribute",
        "unknown attribute in a branch no sample takes",
        "unknown variable in a for-else branch",
        "unknown canonical field",
        "unknown rep attribute",
        "unknown attribute of a loop variable",
        "unknown attribute of a loop variable in a branch no sample takes",
        "unknown attribute of recommended content",
        "loop variable bound twice: found by rendering",
    ],
)
def test_unknown_names_are_one_line_with_file_line_and_key(cfg, old, new, key, message):
    path, line = with_template(cfg, old, new)
    assert problems(cfg) == [f"{path}:{line}: {key}: {message}"]


ESCAPES = [
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "__class__"),
    ("{{ person|attr('__class__') }}", "__class__"),
    ("{{ person.name['__class__'] }}", "__class__"),
    ("{{ cycler.__init__.__globals__ }}", "__init__"),
    ("{{ lipsum.__globals__['os'] }}", "__globals__"),
    ("{{ self._TemplateReference__context }}", "_TemplateReference__context"),
    ("{{ person.name.upper.__self__ }}", "__self__"),
    ("{% if score > 1000 %}{{ ().__class__.__base__ }}{% endif %}", "__class__"),
]


@pytest.mark.parametrize(("expression", "attribute"), ESCAPES, ids=[e for e, _ in ESCAPES])
def test_sandbox_escapes_are_refused_in_one_line(cfg, expression, attribute):
    path, line = with_template(cfg, EMAIL_LINE, expression)
    assert problems(cfg) == [
        f"{path}:{line}: body: not allowed in a sandboxed template: attribute {attribute!r}"
    ]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("{{ 1 // 0 }}", "template failed: ZeroDivisionError: integer division or modulo by zero"),
        ("{{ score + 'points' }}", "template failed: TypeError: unsupported operand type(s)"),
        (
            "{{ 'x' * 10**9 }}",
            "not allowed in a sandboxed template: 1 characters/items times 1000000000 is too large",
        ),
        ("{{ 9 ** 999999 }}", "not allowed in a sandboxed template: 9 ** 999999 is too large"),
        ("{{ range(10**9) | list }}", "template failed: OverflowError: Range too big"),
    ],
    ids=["division by zero", "type error", "huge string", "huge number", "huge range"],
)
def test_expressions_that_fail_are_refused_in_one_line(cfg, expression, message):
    path, line = with_template(cfg, EMAIL_LINE, expression)
    (problem,) = problems(cfg)
    assert problem.startswith(f"{path}:{line}: body: {message}"), problem


def test_every_documented_variable_passes(cfg):
    body = (
        "{{ person.name }} {{ person.email }} {{ person.title }} {{ person.company }} {{ person.country }} "
        "{{ person.stage }} {{ person.fields.phone }} {{ person.fields['industry'] }} {{ rep.name }} "
        "{{ rep.email }} {{ score }}/{{ threshold }} {{ due }} {{ person.name.upper() }} "
        "{{ person.fields | length }} {% set p = person %}{{ p.email }}\n"
        "  {% for r in reasons %}{{ r.rule }} {{ r.points }} {{ r.detail }}{% endfor %}\n"
        "  {% for a in activities %}{{ loop.index }} {{ a.kind }} {{ a.title }} {{ a.when }}{% endfor %}\n"
        "  {% for c in content %}{{ c.title }} {{ c.url }}{% endfor %}"
    )
    with_template(cfg, EMAIL_LINE, body)
    assert load_mappings(cfg).handoff.body.startswith("{{ person.name }}")


def test_a_template_that_fails_only_on_real_data_is_a_config_error_at_run_time(cfg):
    path, line = with_template(cfg, EMAIL_LINE, "{% if person.company == 'Acme' %}{{ 1 // 0 }}{% endif %}")
    m = load_mappings(cfg)  # the samples never have company Acme
    with pytest.raises(ConfigError) as err:
        build_brief(
            m.handoff,
            60,
            {"email": "a@acme.example", "company": "Acme"},
            "mql",
            70,
            [],
            [],
            rep_view(m.reps.reps[0]),
            datetime(2024, 5, 6, tzinfo=UTC),
        )
    assert err.value.problems == [
        f"{path}:{line}: body: template failed: ZeroDivisionError: integer division or modulo by zero"
    ]


def test_the_samples_are_built_by_the_code_a_run_uses():
    m = load_mappings()
    full, empty = sample_contexts(m)
    real = brief_context(
        m.handoff,
        m.sales_ready.threshold,
        {f.name: "x" for f in m.fields.fields},
        "mql",
        70,
        [Reason("Senior title", 20, "VP")],
        [Activity(crm="hubspot", id="1", kind="form_fill", occurred_at=datetime(2024, 5, 1, tzinfo=UTC))],
        rep_view(m.reps.reps[0]),
        datetime(2024, 5, 6, tzinfo=UTC),
    )

    def shape(value: object) -> object:
        if isinstance(value, dict):
            return {k: shape(v) for k, v in value.items()}
        if isinstance(value, list):
            return [shape(v) for v in value[:1]]
        return type(value).__name__

    assert shape(full) == shape(real)  # every list non-empty, every key the run has
    assert set(empty) == set(real) and empty["reasons"] == empty["activities"] == empty["content"] == []


def test_render_never_lets_a_jinja_error_out():
    for source, line in (("a\n{{ x.y }}", 2), ("{{ ''.__class__ }}", 1), ("{% if %}", 1)):
        with pytest.raises(TemplateProblem) as err:
            render(source, x={})
        assert err.value.line == line
        assert re.match(r"(unknown variable|not allowed|template syntax error)", err.value.message)
