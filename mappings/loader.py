"""Load the mapping files into a validated ``MappingSet``.

Every problem becomes one line ``FILE:LINE: FIELD.PATH: what was expected`` and all
problems are raised together as one ``ConfigError``. PyYAML's node tree gives the lines;
pydantic gives the field paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jinja2 import TemplateSyntaxError
from pydantic import ValidationError

from mappings.models import FILES, MappingSet
from mappings.templates import compile_template
from sync.errors import ConfigError

Loc = tuple[str | int, ...]


def default_dir() -> Path:
    """The directory of the mapping files shipped with crm-handoff."""
    return Path(str(resources.files("mappings") / "default"))


def _line_index(node: yaml.Node, path: Loc = ()) -> dict[Loc, int]:
    """Map every key path in a YAML node tree to its 1-based line."""
    index = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, str(key.value))
            index.update(_line_index(value, sub))
            index[sub] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            index.update(_line_index(item, (*path, i)))
    return index


class _Source:
    """One YAML document with its file name and line index."""

    def __init__(self, file: str, data: Any, lines: dict[Loc, int]) -> None:
        self.file, self.data, self.lines = file, data, lines

    def line(self, loc: Loc) -> int | None:
        for cut in range(len(loc), -1, -1):
            if loc[:cut] in self.lines:
                return self.lines[loc[:cut]]
        return None


def _parse(path: Path, text: str) -> _Source:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    return _Source(str(path), data, _line_index(node) if node is not None else {})


def _format_loc(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _describe(err: Any) -> str:
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return "unknown key (check the spelling; see the README for the keys of this file)"
    if err["type"] == "missing":
        return "required key is missing"
    if err["type"] in {"enum", "literal_error"}:
        return f"{msg}, got {err.get('input')!r}"
    return msg


def _read_sources(config: Path) -> dict[str, _Source]:
    if not config.exists():
        raise ConfigError(f"{config}: no such file or directory")
    if config.is_dir():
        sources = {}
        for name in FILES:
            path = config / f"{name}.yaml"
            if not path.exists():
                raise ConfigError(f"{path}: missing mapping file (expected {name}.yaml in {config})")
            sources[name] = _parse(path, path.read_text(encoding="utf-8"))
        return sources
    whole = _parse(config, config.read_text(encoding="utf-8"))
    if not isinstance(whole.data, dict):
        raise ConfigError(f"{config}:1: expected a mapping with keys {list(FILES)}")
    sources = {}
    for name in FILES:
        sub = {loc[1:]: ln for loc, ln in whole.lines.items() if loc[:1] == (name,)}
        sources[name] = _Source(str(config), whole.data.get(name), sub)
    return sources


def _validation_problems(sources: dict[str, _Source], exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        name, rest = str(loc[0]), loc[1:]
        source = sources[name]
        line = source.line(rest)
        where = f"{source.file}:{line}" if line else source.file
        problems.append(f"{where}: {_format_loc(rest)}: {_describe(err)}")
    return problems


def load_mappings(config: Path | str | None = None) -> MappingSet:
    """Load and validate a mapping directory (or single combined file); raise ConfigError."""
    sources = _read_sources(Path(config) if config else default_dir())
    raw = {name: src.data for name, src in sources.items()}
    for name, data in raw.items():
        if not isinstance(data, dict):
            raise ConfigError(f"{sources[name].file}:1: {name}: expected a mapping of keys")
    try:
        mapping = MappingSet.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_validation_problems(sources, exc)) from None
    problems = _cross_checks(mapping, sources)
    if problems:
        raise ConfigError(problems)
    return mapping


def locate(config: Path | str | None, problems: list[tuple[str, Loc, str]]) -> list[str]:
    """Format (file, field path, message) problems as ``FILE:LINE: PATH: message`` lines."""
    sources = _read_sources(Path(config) if config else default_dir())
    return [
        f"{_where(sources, name, loc)}: {_format_loc(loc) if loc else name}: {msg}"
        for name, loc, msg in problems
    ]


def _where(sources: dict[str, _Source], name: str, loc: Loc) -> str:
    src = sources[name]
    line = src.line(loc)
    return f"{src.file}:{line}" if line else src.file


def _cross_checks(m: MappingSet, sources: dict[str, _Source]) -> list[str]:
    problems: list[str] = []
    fields = m.canonical_fields()
    stages = set(m.lifecycle.all_stages)
    sr = m.sales_ready

    def need_field(file: str, loc: Loc, name: str) -> None:
        if name not in fields:
            problems.append(
                f"{_where(sources, file, loc)}: {_format_loc(loc)}: unknown field {name!r}; "
                f"expected a name from fields.yaml ({', '.join(sorted(fields))})"
            )

    for i, fname in enumerate(sr.required_fields):
        need_field("sales_ready", ("required_fields", i), fname)
    for group in ("fit", "exclude"):
        for i, rule in enumerate(getattr(sr, group)):
            need_field("sales_ready", (group, i, "field"), rule.field)
    for i, pool in enumerate(m.reps.pools):
        need_field("reps", ("pools", i, "field"), pool.field)
    for i, stage in enumerate(sr.eligible_stages):
        if stage not in stages:
            loc: Loc = ("eligible_stages", i)
            problems.append(
                f"{_where(sources, 'sales_ready', loc)}: {_format_loc(loc)}: unknown stage "
                f"{stage!r}; expected one of {sorted(stages)}"
            )
    for i, asset in enumerate(m.handoff.content_library):
        for j, stage in enumerate(asset.stages):
            if stage not in stages:
                loc = ("content_library", i, "stages", j)
                problems.append(
                    f"{_where(sources, 'handoff', loc)}: {_format_loc(loc)}: unknown stage "
                    f"{stage!r}; expected one of {sorted(stages)}"
                )
    for key in ("subject", "body"):
        try:
            compile_template(getattr(m.handoff, key))
        except TemplateSyntaxError as exc:
            src = sources["handoff"]
            base = src.line((key,)) or 1
            offset = (exc.lineno or 1) - 1 if key == "body" else 0
            problems.append(
                f"{src.file}:{base + offset + (1 if key == 'body' else 0)}: {key}: "
                f"template syntax error: {exc.message}"
            )
    return problems
