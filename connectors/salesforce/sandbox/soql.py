"""SOQL subset: parse with ``lark`` (LALR), then compile to Python closures over stored rows.

Why lark: the grammar below is the whole syntax in one readable place, lark is a small,
pure-Python, dependency-free and well-maintained parser (LALR mode is fast enough to parse a
query per request), and its keyword handling keeps ``Selected__c`` a field, not ``SELECT``.

Supported: ``SELECT f1, Rel.f2, COUNT() FROM Obj [WHERE cond] [GROUP BY f, ...] [ORDER BY f
[ASC|DESC] [NULLS FIRST|LAST], ...] [LIMIT n] [OFFSET n]``; the aggregate ``COUNT(field) [alias]``
(results are ``AggregateResult`` rows, an unaliased aggregate named ``expr0``, ``expr1``...,
every other selected or ordered field grouped, at most 2,000 rows and never a query
locator, as Salesforce answers them); AND/OR/NOT with parentheses (mixing AND and
OR needs parentheses, as in Salesforce); ``= != <> < <= > >= IN NOT IN LIKE``; string literals
with the backslash escapes ``format_soql`` produces; numbers, true/false/null, date and
datetime literals. Text comparisons, LIKE and text ordering are case-insensitive; Ids are
compared exactly (15-char literals are widened to 18).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any, Protocol

from lark import Lark, Transformer, v_args
from lark.exceptions import UnexpectedInput, VisitError

from .schema import NUMBER_TYPES, FieldDef, SObjectDef, parse_datetime, sobject, to_wire

Row = tuple[Any, ...]
Getter = Callable[[Row], Any]

#: An aggregate query's rows come in one page: no query locator, so no more than this.
AGGREGATE_ROWS = 2000

GRAMMAR = r"""
query: "SELECT"i select_list "FROM"i NAME where? group? order? limit? offset?
select_list: select_item ("," select_item)*
?select_item: count | count_of | field
count: "COUNT"i "(" ")"
count_of: "COUNT"i "(" field ")" NAME?
group: "GROUP"i "BY"i field ("," field)*
field: NAME ("." NAME)?
where: "WHERE"i condition
?condition: and_chain | or_chain | not_expr
and_chain: not_expr ("AND"i not_expr)+
or_chain: not_expr ("OR"i not_expr)+
?not_expr: "NOT"i not_expr -> not_ | atom
?atom: "(" condition ")" | comparison
comparison: field OP value -> compare
          | field "IN"i value_list -> in_
          | field "NOT"i "IN"i value_list -> not_in
          | field "LIKE"i STRING -> like
value_list: "(" value ("," value)* ")"
value: STRING -> string
     | NUMBER -> number
     | DATETIME -> datetime
     | DATE -> date
     | "true"i -> true
     | "false"i -> false
     | "null"i -> null
order: "ORDER"i "BY"i order_item ("," order_item)*
order_item: field DIRECTION? nulls?
nulls: "NULLS"i NULLS_POS
limit: "LIMIT"i INT
offset: "OFFSET"i INT
DIRECTION: /asc|desc/i
NULLS_POS: /first|last/i
OP: /!=|<>|<=|>=|=|<|>/
NAME: /[a-z][a-z0-9_]*/i
STRING: /'(?:[^'\\]|\\.)*'/s
DATETIME.3: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?(Z|[+-]\d{2}:?\d{2})/
DATE.2: /\d{4}-\d{2}-\d{2}/
NUMBER: /[+-]?\d+(\.\d+)?/
INT: /\d+/
%ignore /\s+/
"""


class SoqlError(Exception):
    """A query Salesforce would refuse: ``error_code`` is MALFORMED_QUERY, INVALID_FIELD, ..."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


# ---------------------------------------------------------------------------- syntax tree


@dataclass(frozen=True, slots=True)
class Literal:
    kind: str  # str | num | bool | null | date | datetime | like
    value: Any


@dataclass(frozen=True, slots=True)
class FieldRef:
    path: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Count:
    pass


@dataclass(frozen=True, slots=True)
class CountOf:
    """``COUNT(field) [alias]``: non-null values of ``field`` (per group)."""

    field: FieldRef
    alias: str | None


@dataclass(frozen=True, slots=True)
class Compare:
    field: FieldRef
    op: str  # = != < <= > >= in notin like
    value: Any  # Literal, or tuple[Literal, ...] for IN


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # and | or | not
    items: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class OrderItem:
    field: FieldRef
    desc: bool
    nulls_first: bool


@dataclass(frozen=True, slots=True)
class Query:
    select: tuple[FieldRef | Count | CountOf, ...]
    sobject: str
    where: Any
    order: tuple[OrderItem, ...]
    limit: int | None
    offset: int
    group: tuple[FieldRef, ...] = ()


_ESCAPES = {"'": "'", '"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}


def unescape(body: str, like: bool = False) -> str:
    """Decode a quoted literal's body; with ``like``, return a regex for the LIKE pattern."""
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1 : i + 2]
            if nxt in _ESCAPES:
                out.append(re.escape(_ESCAPES[nxt]) if like else _ESCAPES[nxt])
            elif nxt in ("%", "_"):
                out.append(re.escape(nxt) if like else nxt)
            elif nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", body[i + 2 : i + 6]):
                char = chr(int(body[i + 2 : i + 6], 16))
                out.append(re.escape(char) if like else char)
                i += 4
            else:
                raise SoqlError("MALFORMED_QUERY", f"Invalid string literal '{body}'")
            i += 2
            continue
        if like and ch == "%":
            out.append(".*")
        elif like and ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch) if like else ch)
        i += 1
    return "".join(out)


@v_args(inline=True)
class _ToAst(Transformer[Any, Any]):
    def query(self, select: Any, name: Any, *clauses: Any) -> Query:
        parts = {kind: val for kind, val in clauses}
        return Query(
            tuple(select),
            str(name),
            parts.get("where"),
            parts.get("order", ()),
            parts.get("limit"),
            parts.get("offset", 0),
            parts.get("group", ()),
        )

    def select_list(self, *items: Any) -> list[Any]:
        return list(items)

    def count(self) -> Count:
        return Count()

    def count_of(self, field: FieldRef, alias: Any = None) -> CountOf:
        return CountOf(field, None if alias is None else str(alias))

    def group(self, *fields: FieldRef) -> tuple[str, tuple[FieldRef, ...]]:
        return ("group", fields)

    def field(self, *names: Any) -> FieldRef:
        return FieldRef(tuple(str(n) for n in names))

    def where(self, cond: Any) -> tuple[str, Any]:
        return ("where", cond)

    def and_chain(self, *items: Any) -> BoolOp:
        return BoolOp("and", items)

    def or_chain(self, *items: Any) -> BoolOp:
        return BoolOp("or", items)

    def not_(self, item: Any) -> BoolOp:
        return BoolOp("not", (item,))

    def compare(self, field: FieldRef, op: Any, value: Literal) -> Compare:
        return Compare(field, "!=" if str(op) == "<>" else str(op), value)

    def in_(self, field: FieldRef, values: tuple[Literal, ...]) -> Compare:
        return Compare(field, "in", values)

    def not_in(self, field: FieldRef, values: tuple[Literal, ...]) -> Compare:
        return Compare(field, "notin", values)

    def like(self, field: FieldRef, token: Any) -> Compare:
        pattern = unescape(str(token)[1:-1], like=True)
        return Compare(field, "like", Literal("like", re.compile(pattern, re.I | re.S)))

    def value_list(self, *values: Literal) -> tuple[Literal, ...]:
        return values

    def string(self, token: Any) -> Literal:
        return Literal("str", unescape(str(token)[1:-1]))

    def number(self, token: Any) -> Literal:
        text = str(token)
        return Literal("num", float(text) if "." in text else int(text))

    def datetime(self, token: Any) -> Literal:
        return Literal("datetime", parse_datetime(str(token)))

    def date(self, token: Any) -> Literal:
        return Literal("date", date.fromisoformat(str(token)))

    def true(self) -> Literal:
        return Literal("bool", True)

    def false(self) -> Literal:
        return Literal("bool", False)

    def null(self) -> Literal:
        return Literal("null", None)

    def order(self, *items: OrderItem) -> tuple[str, Any]:
        return ("order", items)

    def order_item(self, field: FieldRef, *rest: Any) -> OrderItem:
        desc = any(str(r).lower() == "desc" for r in rest)
        nulls = [r for r in rest if isinstance(r, bool)]
        return OrderItem(field, desc, nulls[0] if nulls else not desc)

    def nulls(self, pos: Any) -> bool:
        return str(pos).lower() == "first"

    def limit(self, n: Any) -> tuple[str, int]:
        return ("limit", int(n))

    def offset(self, n: Any) -> tuple[str, int]:
        return ("offset", int(n))


_PARSER = Lark(GRAMMAR, start="query", parser="lalr", transformer=_ToAst())


@lru_cache(maxsize=512)
def parse(soql: str) -> Query:
    """Parse SOQL text; raises ``SoqlError('MALFORMED_QUERY', ...)`` on bad syntax."""
    try:
        result = _PARSER.parse(soql)
    except UnexpectedInput as exc:
        token = getattr(exc, "token", None) or soql[exc.pos_in_stream or 0 :][:20]
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{token}'") from None
    except VisitError as exc:
        if isinstance(exc.orig_exc, SoqlError):
            raise exc.orig_exc from None
        raise SoqlError("MALFORMED_QUERY", str(exc.orig_exc)) from None
    assert isinstance(result, Query)
    return result


# ---------------------------------------------------------------------------- evaluation


class Resolver(Protocol):
    """Looks up sObject definitions, and records by Id for relationship fields (``Owner.Email``)."""

    def resolve(self, record_id: str) -> tuple[SObjectDef, Row] | None: ...

    def schema(self, sobject_name: str) -> SObjectDef | None:
        """The definition queries see (custom fields created at runtime included)."""
        ...


@dataclass(slots=True)
class Column:
    """A selected field: output path (canonical names) and how to read it from a row."""

    path: tuple[str, ...]
    getter: Getter
    target: Callable[[Row], tuple[SObjectDef, Row] | None] | None = None
    polymorphic: bool = False


@dataclass(slots=True)
class Aggregate:
    """The GROUP BY / ``COUNT(field)`` part of a query: what its ``AggregateResult`` rows hold.

    A result row is the grouped values (``keys``, in GROUP BY order) then the counts;
    ``output`` names the SELECT items and where each one's value is in that row.
    """

    keys: list[Getter]
    counts: list[Getter]
    output: list[tuple[str, int]]

    def rows(self, rows: Iterable[Row]) -> list[Row]:
        """One row per group (one row in all without GROUP BY, even over no records)."""
        groups: dict[Row, list[int]] = {}
        for row in rows:
            key = tuple(k(row) for k in self.keys)
            tally = groups.setdefault(key, [0] * len(self.counts))
            for i, value in enumerate(self.counts):
                if value(row) is not None:
                    tally[i] += 1
        if not self.keys and not groups:
            groups[()] = [0] * len(self.counts)
        return [key + tuple(tally) for key, tally in groups.items()]


@dataclass(slots=True)
class Plan:
    """A compiled query, ready to run over an sObject's rows."""

    sobject: SObjectDef
    columns: list[Column]
    count_only: bool
    predicate: Callable[[Row], bool] | None
    order: list[tuple[Getter, bool, bool]]
    limit: int | None
    offset: int
    aggregate: Aggregate | None = None

    def run(self, rows: Iterable[Row]) -> list[Row]:
        """Filter, (group,) sort, offset and limit; the result is a list to page through."""
        pred = self.predicate
        result = list(rows) if pred is None else [r for r in rows if pred(r)]
        if self.aggregate is not None:
            result = self.aggregate.rows(result)
        self._sort(result)
        end = None if self.limit is None else self.offset + self.limit
        result = result[self.offset : end] if self.offset or end is not None else result
        if self.aggregate is not None and len(result) > AGGREGATE_ROWS:
            raise SoqlError(
                "MALFORMED_QUERY",
                "Aggregate query does not support queryMore(), use LIMIT to restrict the results "
                "to a single batch",
            )
        return result

    def _sort(self, rows: list[Row]) -> None:
        for getter, desc, nulls_first in reversed(self.order):
            null_rank = 0 if nulls_first != desc else 1
            other = 1 - null_rank

            def key(row: Row, g: Getter = getter, n: int = null_rank, o: int = other) -> Any:
                value = g(row)
                return (n,) if value is None else (o, value)

            rows.sort(key=key, reverse=desc)

    def project(self, row: Row, base_url: str) -> dict[str, Any]:
        """The JSON record for one row, with ``attributes`` and nested parents."""
        if self.aggregate is not None:
            out: dict[str, Any] = {"attributes": {"type": "AggregateResult"}}
            out.update((name, to_wire(row[pos])) for name, pos in self.aggregate.output)
            return out
        out = record_attributes(self.sobject.name, row[0], base_url)
        for col in self.columns:
            if len(col.path) == 1:
                out[col.path[0]] = to_wire(col.getter(row))
                continue
            rel, name = col.path
            assert col.target is not None
            parent = col.target(row)
            if parent is None:
                out[rel] = None
                continue
            nested = out.get(rel) or record_attributes(parent[0].name, parent[1][0], base_url)
            if col.polymorphic:
                nested["attributes"]["type"] = "Name"  # as Salesforce reports Who/What
            nested[name] = to_wire(col.getter(row))
            out[rel] = nested
        return out

    def header(self) -> list[str]:
        if self.aggregate is not None:
            return [name for name, _ in self.aggregate.output]
        return [".".join(c.path) for c in self.columns]

    def flat(self, row: Row) -> list[Any]:
        """Values in column order (for CSV)."""
        if self.aggregate is not None:
            return [to_wire(row[pos]) for _, pos in self.aggregate.output]
        return [to_wire(c.getter(row)) for c in self.columns]


def record_attributes(sobject_name: str, record_id: str, base_url: str) -> dict[str, Any]:
    return {"attributes": {"type": sobject_name, "url": f"{base_url}/sobjects/{sobject_name}/{record_id}"}}


def compile_query(query: Query, resolver: Resolver) -> Plan:
    """Check names against the schema and build closures over row slots."""
    definition = resolver.schema(query.sobject)
    if definition is None:
        raise SoqlError(
            "INVALID_TYPE",
            f"sObject type '{query.sobject}' is not supported. If you are attempting to use a "
            "custom object, be sure to append the '__c' after the entity name.",
        )
    counts = [s for s in query.select if isinstance(s, Count)]
    if counts and len(query.select) > 1:
        raise SoqlError("MALFORMED_QUERY", "COUNT() cannot be combined with other fields")
    columns: list[Column] = []
    seen: set[tuple[str, ...]] = set()
    for selected in query.select:
        if isinstance(selected, FieldRef):
            col = _column(definition, selected, resolver)
            if col.path not in seen:
                seen.add(col.path)
                columns.append(col)
    predicate = None if query.where is None else _predicate(definition, query.where, resolver)
    aggregate = _aggregate(definition, query, resolver)
    order = []
    for item in query.order:
        col = _column(definition, item.field, resolver)
        ftype = _field_def(definition, item.field).type
        getter = col.getter
        if aggregate is not None:  # a result row holds the grouped values, in GROUP BY order
            getter = _slot(_grouped_at(definition, query.group, item.field, "Ordered field"))
        order.append((_sort_getter(getter, ftype), item.desc, item.nulls_first))
    return Plan(definition, columns, bool(counts), predicate, order, query.limit, query.offset, aggregate)


def _aggregate(definition: SObjectDef, query: Query, resolver: Resolver) -> Aggregate | None:
    """The GROUP BY and ``COUNT(field)`` part, checked as Salesforce checks it (None: neither)."""
    counted = [s for s in query.select if isinstance(s, CountOf)]
    if not counted and not query.group:
        return None
    if any(isinstance(s, Count) for s in query.select):
        raise SoqlError("MALFORMED_QUERY", "COUNT() cannot be combined with GROUP BY or other aggregates")
    keys = []
    for ref in query.group:
        fdef = _field_def(definition, ref)
        if fdef.type == "textarea":
            raise SoqlError("INVALID_FIELD", f"field '{fdef.name}' can not be grouped in a query call")
        keys.append(_column(definition, ref, resolver).getter)
    output: list[tuple[str, int]] = []
    unnamed = done = 0
    for item in query.select:
        if isinstance(item, FieldRef):
            pos = _grouped_at(definition, query.group, item, "Field")
            name = _field_def(definition, item).name
        else:
            assert isinstance(item, CountOf)
            pos, done = len(keys) + done, done + 1
            name = item.alias or f"expr{unnamed}"
            unnamed += item.alias is None
        if any(name.lower() == seen.lower() for seen, _ in output):
            raise SoqlError("MALFORMED_QUERY", f"duplicate alias: {name}")
        output.append((name, pos))
    counts = [_column(definition, c.field, resolver).getter for c in counted]
    return Aggregate(keys, counts, output)


def _grouped_at(definition: SObjectDef, group: tuple[FieldRef, ...], ref: FieldRef, what: str) -> int:
    """Where a grouped field's value is in a result row; MALFORMED_QUERY if it is not grouped."""
    name = _field_def(definition, ref).name.lower()
    for i, key in enumerate(group):
        same_parent = [p.lower() for p in key.path[:-1]] == [p.lower() for p in ref.path[:-1]]
        if same_parent and _field_def(definition, key).name.lower() == name:
            return i
    raise SoqlError("MALFORMED_QUERY", f"{what} must be grouped or aggregated: {'.'.join(ref.path)}")


def _no_column(definition: SObjectDef, name: str) -> SoqlError:
    return SoqlError(
        "INVALID_FIELD",
        f"No such column '{name}' on entity '{definition.name}'. If you are attempting to use a "
        "custom field, be sure to append the '__c' after the custom field name.",
    )


def _relationship(definition: SObjectDef, rel: str) -> tuple[FieldDef, list[SObjectDef]]:
    ref = definition.relationships.get(rel.lower())
    if ref is None:
        raise SoqlError(
            "INVALID_FIELD",
            f"Didn't understand relationship '{rel}' in field path. If you are attempting to use "
            "a custom relationship, be sure to append the '__r' after the custom relationship name.",
        )
    targets = [d for name in ref.reference_to if (d := sobject(name)) is not None]
    return ref, targets


def _field_def(definition: SObjectDef, ref: FieldRef) -> FieldDef:
    if len(ref.path) == 1:
        fdef = definition.field(ref.path[0])
        if fdef is None:
            raise _no_column(definition, ref.path[0])
        return fdef
    _, targets = _relationship(definition, ref.path[0])
    name = ref.path[1]
    if name.lower() == "type" and len(targets) > 1:
        return FieldDef("Type", "string", 40)
    for target in targets:
        if (fdef := target.field(name)) is not None:
            return fdef
    raise _no_column(targets[0], name)


def _column(definition: SObjectDef, ref: FieldRef, resolver: Resolver) -> Column:
    fdef = _field_def(definition, ref)
    if len(ref.path) == 1:
        pos = definition.by_lower[fdef.name.lower()]
        return Column((fdef.name,), _slot(pos))
    ref_field, targets = _relationship(definition, ref.path[0])
    ref_pos = definition.by_lower[ref_field.name.lower()]
    rel_name = ref_field.relationship_name or ref.path[0]

    def target(row: Row) -> tuple[SObjectDef, Row] | None:
        value = row[ref_pos]
        return None if value is None else resolver.resolve(value)

    name = fdef.name

    def getter(row: Row) -> Any:
        parent = target(row)
        if parent is None:
            return None
        pdef, prow = parent
        if name == "Type" and pdef.position("Type") is None:
            return pdef.name
        pos = pdef.position(name)
        return None if pos is None else prow[pos]

    return Column((rel_name, name), getter, target, polymorphic=len(targets) > 1)


def _slot(pos: int) -> Getter:
    def get(row: Row) -> Any:
        return row[pos]

    return get


def _sort_getter(getter: Getter, ftype: str) -> Getter:
    if ftype in ("string", "textarea", "email", "phone", "picklist"):

        def lower(row: Row) -> Any:
            value = getter(row)
            return value.lower() if isinstance(value, str) else value

        return lower
    return getter


def _predicate(definition: SObjectDef, node: Any, resolver: Resolver) -> Callable[[Row], bool]:
    if isinstance(node, BoolOp):
        parts = [_predicate(definition, item, resolver) for item in node.items]
        if node.op == "not":
            inner = parts[0]
            return lambda row: not inner(row)
        if node.op == "and":
            return lambda row: all(p(row) for p in parts)
        return lambda row: any(p(row) for p in parts)
    assert isinstance(node, Compare)
    return _comparison(definition, node, resolver)


def _comparison(definition: SObjectDef, node: Compare, resolver: Resolver) -> Callable[[Row], bool]:
    fdef = _field_def(definition, node.field)
    getter = _column(definition, node.field, resolver).getter
    if node.op == "like":
        if fdef.type in NUMBER_TYPES or fdef.type in ("boolean", "date", "datetime"):
            raise SoqlError("INVALID_FIELD", f"invalid operator on {fdef.type} field: LIKE")
        regex = node.value.value

        def like(row: Row) -> bool:
            value = getter(row)
            return value is not None and regex.fullmatch(value) is not None

        return like
    if node.op in ("in", "notin"):
        values = {_coerce(fdef, lit, in_list=True) for lit in node.value}
        norm = _normaliser(fdef)
        if node.op == "in":
            return lambda row: norm(getter(row)) in values
        return lambda row: norm(getter(row)) not in values
    value = _coerce(fdef, node.value)
    return _ordered_comparison(fdef, getter, node.op, value)


def _ordered_comparison(fdef: FieldDef, getter: Getter, op: str, value: Any) -> Callable[[Row], bool]:
    norm = _normaliser(fdef)
    if value is None:
        if op not in ("=", "!="):
            raise SoqlError("MALFORMED_QUERY", f"invalid operator on null value: {op}")
        if op == "=":
            return lambda row: getter(row) is None
        return lambda row: getter(row) is not None
    if op == "=":
        return lambda row: norm(getter(row)) == value
    if op == "!=":
        return lambda row: norm(getter(row)) != value
    cmp = _OPS[op]

    def ordered(row: Row) -> bool:
        current = getter(row)
        return current is not None and cmp(norm(current), value)

    return ordered


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _normaliser(fdef: FieldDef) -> Callable[[Any], Any]:
    if fdef.type in ("string", "textarea", "email", "phone", "picklist"):
        return lambda v: v.lower() if isinstance(v, str) else v
    return lambda v: v


def _coerce(fdef: FieldDef, lit: Literal, in_list: bool = False) -> Any:
    """The literal as a comparable value for this field, or INVALID_FIELD on a type mismatch."""
    if lit.kind == "null":
        return None
    ftype = fdef.type
    expected = _expected_kind(ftype)
    if lit.kind != expected:
        raise SoqlError(
            "INVALID_FIELD",
            f"value of filter criterion for field '{fdef.name}' must be of type {ftype}"
            + (" and should not be enclosed in quotes" if lit.kind == "str" else ""),
        )
    value = lit.value
    if ftype in ("id", "reference"):
        return full_id(value)
    if expected == "str":
        return value.lower()
    return value


def _expected_kind(ftype: str) -> str:
    if ftype in NUMBER_TYPES:
        return "num"
    if ftype == "boolean":
        return "bool"
    if ftype in ("date", "datetime"):
        return ftype
    return "str"


_CHECKSUM_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def full_id(value: str) -> str:
    """Widen a 15-character Salesforce Id to its 18-character case-safe form."""
    if len(value) != 15:
        return value
    suffix = ""
    for start in range(0, 15, 5):
        bits = sum(1 << i for i, ch in enumerate(value[start : start + 5]) if "A" <= ch <= "Z")
        suffix += _CHECKSUM_CHARS[bits]
    return value + suffix
