"""Checks of ``sales_ready.yaml definitions`` that need the rest of the mapping set (pure).

Definition names are unique (case-insensitive), a ``fit:`` condition names a fit rule of
the same file and a ``field:`` condition a canonical field of ``fields.yaml``;
``definition_problems`` lists what breaks this, as (file, field path, message) for the
loader to give their lines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mappings.models import MappingSet

Loc = tuple[str | int, ...]


def definition_problems(m: MappingSet) -> list[tuple[str, Loc, str]]:
    """(file, field path, message) for repeated names, unknown fit rules and fields in definitions."""
    sr = m.sales_ready
    fits = [r.name for r in sr.fit]
    fields = sorted(m.canonical_fields())
    problems: list[tuple[str, Loc, str]] = []
    seen: dict[str, int] = {}
    for i, definition in enumerate(sr.definitions):
        first = seen.setdefault(definition.name.strip().casefold(), i)
        if first != i:
            problems.append(
                (
                    "sales_ready",
                    ("definitions", i, "name"),
                    f"{definition.name!r} is already definitions[{first}]",
                )
            )
        for j, cond in enumerate(definition.all_of):
            loc: Loc = ("definitions", i, "all_of", j)
            if cond.fit is not None and cond.fit not in fits:
                known = ", ".join(repr(f) for f in fits) if fits else "none: this file has no fit rules"
                problems.append(
                    ("sales_ready", (*loc, "fit"), f"unknown fit rule {cond.fit!r}; expected {known}")
                )
            if cond.field is not None and cond.field not in fields:
                problems.append(
                    (
                        "sales_ready",
                        (*loc, "field"),
                        f"unknown field {cond.field!r}; expected a name from fields.yaml ({', '.join(fields)})",
                    )
                )
    return problems
