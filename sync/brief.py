"""The brief a rep reads on the handoff task, rendered from the mapping's templates (pure).

The variables the templates see are built by ``mappings.context`` (shared with
``handoff validate``'s template checks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from crm_handoff.errors import ConfigError
from crm_handoff.records import Activity, Reason
from mappings.context import brief_context, due_date
from mappings.models import Handoff
from mappings.templates import TemplateProblem, render

SUBJECT_MAX = 255
BODY_MAX = 32_000


@dataclass(frozen=True)
class Brief:
    subject: str
    body: str
    due: date
    #: the assets recommended in the body: (id, version, url) each, recorded on the ledger
    content: tuple[tuple[str, int, str], ...] = ()


def render_template(cfg: Handoff, key: str, context: Mapping[str, Any]) -> str:
    """Render the ``subject`` or ``body`` template; a failure is a one-line ConfigError."""
    try:
        return render(getattr(cfg, key), **context)
    except TemplateProblem as exc:
        raise ConfigError(f"{cfg.template_where(key, exc.line)}: {key}: {exc.message}") from None


def definitions_text(met: Sequence[tuple[str, str]]) -> str:
    """The definitions a person met, as the brief names them (empty when none is given)."""
    if not met:
        return ""
    lines = [f"- {name}: {found}" if found else f"- {name}" for name, found in met]
    return f"Sales-ready by definition{'s' if len(met) > 1 else ''}:\n" + "\n".join(lines)


def build_brief(
    cfg: Handoff,
    threshold: int,
    values: Mapping[str, str | None],
    stage: str | None,
    score: int,
    reasons: Sequence[Reason],
    activities: Sequence[Activity],
    rep: Mapping[str, str],
    now: datetime,
    definitions: Sequence[tuple[str, str]] = (),
) -> Brief:
    """Render the task subject and body from the mapping's templates.

    ``definitions``: (name, what made it hold) of the sales-ready definitions met; when
    given, the body starts with them (a mapping without ``definitions`` passes none, and
    its body is the template's alone).
    """
    context = brief_context(cfg, threshold, values, stage, score, reasons, activities, rep, now)
    subject = " ".join(render_template(cfg, "subject", context).split())[:SUBJECT_MAX]
    body = render_template(cfg, "body", context).strip()
    named = definitions_text(definitions)
    body = (f"{named}\n\n{body}" if named else body)[:BODY_MAX]
    content = tuple((c["id"], c["version"], c["url"]) for c in context["content"])
    return Brief(
        subject=subject, body=body, due=due_date(now, cfg.due_in_days, cfg.business_days), content=content
    )
