"""What a state database's tables say about its revision, whatever ``alembic_version`` says.

A database is described by its *shape*: the state tables, their columns (with lengths)
and their named indexes. The shape of every revision is known by migrating a scratch
in-memory SQLite database; a database whose shape is not that of its recorded revision
was left half-migrated by a version of crm-handoff whose migrations were not atomic
(SQLite autocommitted every DDL statement). ``plan`` says how to bring it back to a
revision: which of the next revision's new tables (empty, never used) and which leftover
batch tables to drop, and which revision to record, or why that is not safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from itertools import pairwise

from alembic import command
from sqlalchemy import Connection, create_engine, inspect, text
from sqlalchemy.pool import StaticPool

Key = tuple[str, ...]
Shape = frozenset[Key]
References = tuple[tuple[str | None, Shape], ...]
TMP_PREFIX = "_alembic_tmp_"  # the copy a SQLite batch migration builds before it swaps tables


@dataclass(frozen=True)
class Plan:
    """How to bring a database to a revision it fully has."""

    at: str | None  # the revision whose shape the database has, once ``drop_*`` are dropped
    drop_tables: tuple[str, ...] = ()
    drop_indexes: tuple[str, ...] = ()
    problem: str | None = None  # why it cannot be repaired safely (then nothing else is set)
    partial: tuple[str, ...] = field(default=())  # the half-made objects, for the log


def shape(conn: Connection, only: frozenset[str] | None = None) -> tuple[Shape, tuple[str, ...]]:
    """The shape of the tables in ``only`` (every table but ``alembic_version`` when None),
    and the leftover batch tables."""
    insp = inspect(conn)
    keys: set[Key] = set()
    leftovers = []
    for name in insp.get_table_names():
        if name.startswith(TMP_PREFIX):
            leftovers.append(name)
        elif name != "alembic_version" and (only is None or name in only):
            keys.add(("table", name))
            keys.update(
                ("column", name, c["name"], str(getattr(c["type"], "length", None)))
                for c in insp.get_columns(name)
            )
            keys.update(
                ("index", name, str(ix["name"]))
                for ix in insp.get_indexes(name)
                if not ix.get("duplicates_constraint")  # a unique constraint's index (PostgreSQL)
            )
    return frozenset(keys), tuple(sorted(leftovers))


@lru_cache(maxsize=1)
def reference() -> References:
    """(revision, shape) of every revision, oldest first, starting with (None, empty)."""
    from sync.migrations import config, order

    engine = create_engine("sqlite://", poolclass=StaticPool)
    shapes: list[tuple[str | None, Shape]] = [(None, frozenset())]
    try:
        with engine.begin() as conn:
            cfg = config(conn)
            for rev in order():
                command.upgrade(cfg, rev)
                shapes.append((rev, shape(conn)[0]))
    finally:
        engine.dispose()
    return tuple(shapes)


def state_tables() -> frozenset[str]:
    """Every table some revision has."""
    return frozenset(k[1] for _, s in reference() for k in s if k[0] == "table")


def plan(conn: Connection, recorded: str | None) -> Plan:
    """How to bring the database on ``conn`` (``recorded`` in alembic_version) to a revision."""
    names = set(inspect(conn).get_table_names()) - {"alembic_version"}
    if not names:  # a new database (or one whose creation was stopped before its first table)
        return Plan(None)
    observed, leftovers = shape(conn, state_tables())
    if not observed:
        return Plan(None, drop_tables=leftovers)
    refs = reference()
    for strict in (True, False):  # lengths too, then names only (SQLite does not enforce lengths)
        these = refs if strict else _loose_refs()
        mine = (observed if strict else _loose(observed)) & _every_key(these)  # not an index of the DBA's
        fix = _match(conn, mine, these, recorded)
        if fix is not None:
            return replace(fix, drop_tables=(*leftovers, *fix.drop_tables)) if not fix.problem else fix
    return Plan(None, problem=_mismatch(observed & _every_key(refs), refs, recorded))


def _match(conn: Connection, observed: Shape, refs: References, recorded: str | None) -> Plan | None:
    """The revision the tables have, or have plus part of the next one's; None if neither."""
    if dict(refs).get(recorded) == observed:
        return Plan(recorded)
    for rev, ref in refs:  # oldest first: after a revision that changed no table, run it again
        if ref == observed:
            return Plan(rev)
    for (rev, ref), (nxt, ref_next) in reversed(list(pairwise(refs))):
        extra = observed - ref
        if ref <= observed and extra <= ref_next - ref:
            return _partial(conn, rev, nxt, extra)
    return None


def _loose(keys: Shape) -> Shape:
    return frozenset(k[:3] if k[0] == "column" else k for k in keys)


@lru_cache(maxsize=1)
def _loose_refs() -> References:
    return tuple((rev, _loose(ref)) for rev, ref in reference())


@lru_cache(maxsize=2)
def _every_key(refs: References) -> Shape:
    """What some revision has: anything else (an index a DBA added) is not the migrations' concern."""
    return frozenset().union(*(ref for _, ref in refs))


def _partial(conn: Connection, rev: str | None, nxt: str | None, extra: Shape) -> Plan:
    """The database has ``rev`` and part of what ``nxt`` adds: drop that part, if unused."""
    tables = sorted({k[1] for k in extra if k[0] == "table"})
    indexes = sorted(k[2] for k in extra if k[0] == "index" and k[1] not in tables)
    columns = sorted(f"{k[1]}.{k[2]}" for k in extra if k[0] == "column" and k[1] not in tables)
    if columns:  # a column added to a table in use: dropping it is not for us to decide
        return Plan(
            None,
            problem=f"columns {', '.join(columns)} of revision {nxt} exist but revision {nxt} is not recorded",
        )
    used = [t for t in tables if conn.execute(text(f"SELECT 1 FROM {_quote(conn, t)} LIMIT 1")).first()]
    if used:
        return Plan(
            None, problem=f"table {', '.join(used)} of the half-applied revision {nxt} already holds rows"
        )
    return Plan(rev, drop_tables=tuple(tables), drop_indexes=tuple(indexes), partial=(*tables, *indexes))


def _mismatch(observed: Shape, refs: References, recorded: str | None) -> str:
    """One line on how the tables differ from the closest revision."""
    rev, ref = min(refs, key=lambda r: len(r[1] ^ observed))
    parts = []
    if missing := _whole(ref - observed):
        parts.append(
            "missing " + ", ".join(_describe(k) for k in missing[:3]) + (" ..." if len(missing) > 3 else "")
        )
    if unexpected := _whole(observed - ref):
        parts.append(
            "unexpected "
            + ", ".join(_describe(k) for k in unexpected[:3])
            + (" ..." if len(unexpected) > 3 else "")
        )
    return f"its tables match no revision (recorded {recorded or 'none'}, closest {rev or 'empty'}: {'; '.join(parts)})"


def _whole(keys: Shape) -> list[Key]:
    """The keys, without the columns and indexes of tables that are among them."""
    tables = {k[1] for k in keys if k[0] == "table"}
    return sorted(k for k in keys if k[0] == "table" or k[1] not in tables)


def _describe(key: Key) -> str:
    if key[0] == "column":
        return f"column {key[1]}.{key[2]} (length {key[3]})"
    return f"{key[0]} {key[-1]}"


def _quote(conn: Connection, name: str) -> str:
    return str(conn.dialect.identifier_preparer.quote(name))
