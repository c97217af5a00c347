"""Load the mapping files into a validated ``MappingSet``.

Every problem becomes one line ``FILE:LINE: FIELD.PATH: what was expected`` and all
problems are raised together as one ``ConfigError``. PyYAML's node tree gives the lines;
pydantic gives the field paths.

A mapping file is read defensively: at most ``MAX_FILE_BYTES``, UTF-8 only, nested at
most ``MAX_DEPTH`` levels, aliases adding at most ``MAX_ALIAS_NODES`` nodes in all
(no "billion laughs"), no key given twice in a mapping, no key the format does not
know. Templates are rendered against sample contexts before a run can reach them.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.parser import Parser
from yaml.reader import Reader, ReaderError
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from crm_handoff.errors import ConfigError
from mappings.content import content_problems
from mappings.context import sample_contexts
from mappings.definitions import definition_problems
from mappings.models import FILES, TEMPLATE_KEYS, MappingSet
from mappings.outcomes import outcome_problems
from mappings.templates import check_template

Loc = tuple[str | int, ...]

MAX_FILE_BYTES = 1 << 20  # 1 MiB: hundreds of times the shipped set
MAX_DEPTH = 50  # nesting levels; the shipped files use 6
MAX_ALIAS_NODES = 10_000  # nodes all aliases of a file may add when expanded


def default_dir() -> Path:
    """The directory of the mapping files shipped with crm-handoff."""
    return Path(str(resources.files("mappings") / "default"))


class _Refused(yaml.MarkedYAMLError):
    """A YAML construct the loader refuses (too deep, alias bomb...), with its position."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem=problem, problem_mark=mark)


class _PyEvents(Reader, Scanner, Parser):
    """PyYAML's pure-Python event source (used where libyaml is missing)."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)


def _event_source() -> type:
    """libyaml's parser (four times faster) when PyYAML has it; composing stays here."""
    try:
        from yaml._yaml import CParser
    except ImportError:
        return _PyEvents
    return CParser


if TYPE_CHECKING:
    _Events = _PyEvents
else:
    _Events = _event_source()
_LIBYAML = _Events is not _PyEvents


class _Loader(Composer, _Events, SafeConstructor, Resolver):
    """A safe loader that bounds nesting and alias expansion and records duplicate keys."""

    def __init__(self, stream: str) -> None:
        _Events.__init__(self, stream)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.depth = 0
        self.sizes: dict[int, int] = {}  # id(node) -> node count once aliases are expanded
        self.alias_nodes = 0
        self.path: list[str | int] = []
        self.duplicates: list[tuple[Loc, int, int]] = []  # (key path, line, first line)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            return self._alias(parent, index, event)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        step = index.value if isinstance(index, yaml.ScalarNode) else index
        tracked = parent is not None and isinstance(step, str | int)
        if tracked:
            self.path.append(step)
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
            if tracked:
                self.path.pop()
        if node is not None:
            self.sizes[id(node)] = 1 + sum(self.sizes[id(child)] for child in _children(node))
        return node

    def _alias(self, parent: yaml.Node | None, index: Any, event: yaml.AliasEvent) -> Any:
        node = super().compose_node(parent, index)
        size = self.sizes.get(id(node))
        if size is None:
            raise _Refused(
                f"alias *{event.anchor} is inside its own anchor (a structure that never ends)",
                event.start_mark,
            )
        self.alias_nodes += size
        if self.alias_nodes > MAX_ALIAS_NODES:
            raise _Refused(
                f"aliases expand to more than {MAX_ALIAS_NODES} values (an alias bomb?)", event.start_mark
            )
        return node

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        seen: dict[tuple[str, Any], int] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode):
                continue
            line, ident = key.start_mark.line + 1, (key.tag, key.value)
            if ident in seen:
                self.duplicates.append(((*self.path, str(key.value)), line, seen[ident]))
            seen.setdefault(ident, line)
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:  # 2024-13-45, an int of 10,000 digits...
            reason = str(exc).split("; use sys.")[0]
            raise _Refused(f"cannot read this value: {reason}", node.start_mark) from None


def _children(node: yaml.Node) -> Iterable[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        items: list[yaml.Node] = node.value
        return items
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return ()


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


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                found: yaml.Node = v
                return found
    return None


class _Source:
    """One YAML document with its file name, node tree and line index."""

    def __init__(self, file: str, data: Any, node: yaml.Node | None, lines: dict[Loc, int]) -> None:
        self.file, self.data, self.node, self.lines = file, data, node, lines

    def line(self, loc: Loc) -> int | None:
        for cut in range(len(loc), -1, -1):
            if loc[:cut] in self.lines:
                return self.lines[loc[:cut]]
        return None

    def first_line(self, key: str) -> int:
        """The line a string value's text starts on (the line after ``|`` or ``>``)."""
        node = _child(self.node, key)
        if node is None:
            return self.line((key,)) or 1
        return node.start_mark.line + 1 + (1 if getattr(node, "style", None) in ("|", ">") else 0)


def _read_text(path: Path) -> str:
    """A mapping file's text; ConfigError for a directory, a huge or a non-UTF-8 file."""
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{path}: is a directory; expected a YAML file")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path}: not a regular file; expected a YAML file")
    too_big = f"a mapping file may be at most {MAX_FILE_BYTES:,} bytes (1 MiB)"
    if info.st_size > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: {info.st_size:,} bytes is too large; {too_big}")
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: too large; {too_big}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {column}); "
            "save the file as UTF-8"
        ) from None


def _compose(text: str) -> tuple[yaml.Node | None, Any, list[tuple[Loc, int, int]]]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
        return node, data, loader.duplicates
    finally:
        loader.dispose()


def _parse(path: Path, text: str) -> _Source:
    try:
        node, data, duplicates = _compose(text)
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_problem(path, text, exc)) from None
    if duplicates:
        raise ConfigError(
            [
                f"{path}:{line}: {_format_loc(loc)}: duplicate key (first given on line {first})"
                for loc, line, first in duplicates
            ]
        )
    return _Source(str(path), data, node, _line_index(node) if node is not None else {})


def _yaml_problem(path: Path, text: str, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        where = f"{path}:{mark.line + 1}"
    elif isinstance(exc, ReaderError):  # libyaml counts bytes, PyYAML characters
        if _LIBYAML:
            line = text.encode("utf-8")[: exc.position].count(b"\n") + 1
        else:
            line = text[: exc.position].count("\n") + 1
        where = f"{path}:{line}"
    else:
        where = str(path)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    label = "" if isinstance(exc, _Refused) else "invalid YAML: "
    return f"{where}: {label}{problem}"


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
            sources[name] = _parse(path, _read_text(path))
        return sources
    return _combined_sources(config)


def _combined_sources(config: Path) -> dict[str, _Source]:
    """The five sections of a single combined file, each with its own line index."""
    whole = _parse(config, _read_text(config))
    if not isinstance(whole.data, dict):
        raise ConfigError(f"{config}:1: expected a mapping with keys {list(FILES)}")
    problems = [
        f"{config}:{whole.line((str(key),)) or 1}: {key}: unknown key "
        f"(a combined file has the keys {', '.join(FILES)})"
        for key in whole.data
        if key not in FILES
    ]
    problems += [f"{config}:1: {name}: required key is missing" for name in FILES if name not in whole.data]
    if problems:
        raise ConfigError(problems)
    sources = {}
    for name in FILES:
        sub = {loc[1:]: ln for loc, ln in whole.lines.items() if loc[:1] == (name,)}
        sources[name] = _Source(str(config), whole.data.get(name), _child(whole.node, name), sub)
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
        mapping = MappingSet.model_validate(raw, context={"config_dir": Path(sources["reps"].file).parent})
    except ValidationError as exc:
        raise ConfigError(_validation_problems(sources, exc)) from None
    src = sources["handoff"]
    mapping.handoff._template_origin.update({key: (src.file, src.first_line(key)) for key in TEMPLATE_KEYS})
    problems = _cross_checks(mapping, sources) + _template_problems(mapping)
    problems += [
        f"{_where(sources, n, loc)}: {_format_loc(loc)}: {msg}"
        for n, loc, msg in [
            *outcome_problems(mapping),
            *definition_problems(mapping),
            *content_problems(mapping),
        ]
    ]
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


def _template_problems(m: MappingSet) -> list[str]:
    """Each template checked against sample contexts built by the code a run uses."""
    contexts = sample_contexts(m)
    return [
        f"{m.handoff.template_where(key, p.line)}: {key}: {p.message}"
        for key in TEMPLATE_KEYS
        for p in check_template(getattr(m.handoff, key), contexts)
    ]


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
    return problems
