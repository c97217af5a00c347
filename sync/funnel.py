"""The report page's figures, aggregated in SQL (SQLAlchemy Core, SQLite and PostgreSQL).

Every query groups in the database and returns a few rows per week, month, stage, rep or
CRM, never one row per person, so the report stays fast at a million people. Python only
reshapes those rows (the pure helpers at the end). The tables are read, never written.

Dimensions every figure carries so the page can filter client-side:

- ``crm``: where the person lives: ``hubspot``, ``salesforce``, ``both`` (linked records)
  or ``unknown`` (no identity row). A filter on one CRM keeps that CRM's rows and ``both``.
- ``week`` (the Monday, UTC) or ``month`` (``YYYY-MM``) for the date range.
- ``rep`` (email) where a figure is about handed-off leads.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Date,
    Engine,
    and_,
    case,
    cast,
    func,
    or_,
    select,
)
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import Subquery

from mappings.models import MappingSet
from sync.setaside import PREFIX as SET_ASIDE_PREFIX
from sync.state import current_stage, identities, ledger, queue, runs, stage_history

CRMS = ("hubspot", "salesforce")
#: which person CRMs each CRM filter value keeps (percentiles cannot be merged client-side,
#: so time in stage is computed for each)
CRM_SELECTIONS = {"all": None, "hubspot": ("hubspot", "both"), "salesforce": ("salesforce", "both")}
#: nurture ages: (label, at least this many days waiting)
AGE_BUCKETS = (("under 1 day", 0), ("1-3 days", 1), ("3-7 days", 3), ("1-2 weeks", 7), ("2-4 weeks", 14))
AGE_OLDEST = ("4 weeks or more", 28)
QUANTILES = {"median": (1, 2), "p90": (9, 10)}  # p as num/den: integer arithmetic in SQL


# --- dialect-specific expressions ----------------------------------------------------


def _week(col: Any, dialect: str) -> ColumnElement[Any]:
    """The Monday (UTC) of the week of a timestamp, as a date."""
    if dialect == "postgresql":
        return cast(func.date_trunc("week", func.timezone("UTC", col)), Date)
    return func.date(col, "weekday 0", "-6 days")


def _month(col: Any, dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", col), "YYYY-MM")
    return func.strftime("%Y-%m", col)


def _day(col: Any, dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return cast(func.timezone("UTC", col), Date)
    return func.date(col)


def _seconds(start: Any, end: Any, dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def _crm_of() -> ColumnElement[str]:
    """The person's CRM(s) from the identity row (outer-joined: NULL ids are ``unknown``)."""
    hs, sf = identities.c.hubspot_id.is_not(None), identities.c.salesforce_id.is_not(None)
    return case((and_(hs, sf), "both"), (hs, "hubspot"), (sf, "salesforce"), else_="unknown").label("crm")


def _iso(value: Any) -> str:
    """A date from either dialect (a ``date`` or SQLite's ``YYYY-MM-DD`` text)."""
    return value.isoformat() if isinstance(value, date) else str(value)[:10]


# --- the queries -------------------------------------------------------------------


def _pivot(funnel: Sequence[str]) -> Subquery:
    """One row per person with a recorded entry: ``s0..sN`` = entry time into each funnel
    stage (NULL: never recorded). Grouped on the history's primary key order."""
    h = stage_history.c
    cols = [func.min(case((h.stage == s, h.entered_at))).label(f"s{i}") for i, s in enumerate(funnel)]
    return select(h.person_key, *cols).group_by(h.person_key).subquery("p")


def _handed() -> Subquery:
    """People handed off (a done ledger entry): when first, per person."""
    return (
        select(ledger.c.person_key, func.min(ledger.c.planned_at).label("at"))
        .where(ledger.c.status == "done")
        .group_by(ledger.c.person_key)
        .subquery("h")
    )


def funnel_now(conn: Connection) -> list[dict[str, Any]]:
    """People per current stage and CRM."""
    inner = (
        select(current_stage.c.stage, _crm_of())
        .select_from(
            current_stage.outerjoin(identities, identities.c.person_key == current_stage.c.person_key)
        )
        .subquery()
    )
    q = select(inner.c.stage, inner.c.crm, func.count()).group_by(inner.c.stage, inner.c.crm)
    return [{"stage": s, "crm": c, "people": int(n)} for s, c, n in conn.execute(q)]


def funnel_weekly(conn: Connection) -> list[dict[str, Any]]:
    """Recorded stage entries per week, stage and CRM."""
    d = conn.dialect.name
    h = stage_history
    inner = (
        select(_week(h.c.entered_at, d).label("week"), h.c.stage, _crm_of())
        .select_from(h.outerjoin(identities, identities.c.person_key == h.c.person_key))
        .subquery()
    )
    q = select(inner.c.week, inner.c.stage, inner.c.crm, func.count()).group_by(
        inner.c.week, inner.c.stage, inner.c.crm
    )
    return [{"week": _iso(w), "stage": s, "crm": c, "entered": int(n)} for w, s, c, n in conn.execute(q)]


def cohorts(conn: Connection, funnel: Sequence[str], start: int) -> list[dict[str, Any]]:
    """Per week a person entered ``funnel[start]`` (the cohort) and CRM: how many, how many
    then entered each later stage (at or after the cohort entry), and how many were
    handed off."""
    d = conn.dialect.name
    p, h = _pivot(funnel), _handed()
    first = p.c[f"s{start}"]
    later = range(start + 1, len(funnel))
    inner = (
        select(
            _week(first, d).label("week"),
            _crm_of(),
            *(case((p.c[f"s{i}"] >= first, 1), else_=0).label(f"r{i}") for i in later),
            case((h.c.person_key.is_not(None), 1), else_=0).label("handed"),
        )
        .select_from(
            p.outerjoin(identities, identities.c.person_key == p.c.person_key).outerjoin(
                h, h.c.person_key == p.c.person_key
            )
        )
        .where(first.is_not(None))
        .subquery()
    )
    q = select(
        inner.c.week,
        inner.c.crm,
        func.count(),
        func.sum(inner.c.handed),
        *(func.sum(inner.c[f"r{i}"]) for i in later),
    ).group_by(inner.c.week, inner.c.crm)
    out = []
    for week, crm, n, handed, *reached in conn.execute(q):
        row: dict[str, Any] = {
            "week": _iso(week),
            "crm": crm,
            funnel[start]: int(n),
            "handed_off": int(handed),
        }
        row.update({funnel[i]: int(r or 0) for i, r in zip(later, reached, strict=True)})
        out.append(row)
    return out


def stage_durations(conn: Connection, funnel: Sequence[str]) -> list[dict[str, Any]]:
    """For each consecutive funnel pair (a, b) and CRM selection: how many people entered b
    at or after a, and the ranked durations the median and p90 need (``QUANTILES``: the two
    rows around each quantile's position, by window functions; no per-person rows)."""
    d = conn.dialect.name
    a, b = stage_history.alias("a"), stage_history.alias("b")
    pairs = list(itertools.pairwise(funnel))
    durations = (
        select(
            case(*((a.c.stage == x, i) for i, (x, _) in enumerate(pairs))).label("stage"),
            _seconds(a.c.entered_at, b.c.entered_at, d).label("secs"),
            _crm_of(),
        )
        .select_from(  # one pass over the history, the next stage looked up by primary key
            a.join(b, and_(b.c.person_key == a.c.person_key, b.c.entered_at >= a.c.entered_at)).outerjoin(
                identities, identities.c.person_key == a.c.person_key
            )
        )
        .where(or_(*(and_(a.c.stage == x, b.c.stage == y) for x, y in pairs)))
        .subquery("dur")
    )
    ranks = _pg_quantiles(conn, durations) if d == "postgresql" else _ranked_quantiles(conn, durations)
    return [
        {"from": funnel[i], "to": funnel[i + 1], "crm": selection, "people": n, **figures}
        for (i, selection), (n, figures) in sorted(ranks.items())
    ]


def _in_selection(col: Any, selection: str) -> Any:
    crms = CRM_SELECTIONS[selection]
    return None if crms is None else col.in_(crms)


def _pg_quantiles(conn: Connection, dur: Subquery) -> dict[tuple[int, str], tuple[int, dict[str, Any]]]:
    """PostgreSQL: ``percentile_cont`` (linear between closest ranks) per stage, each CRM
    selection a FILTER of one grouped pass."""
    cols = []
    for selection in CRM_SELECTIONS:
        where = _in_selection(dur.c.crm, selection)
        for agg in (
            func.count(),
            *(func.percentile_cont(n / d).within_group(dur.c.secs) for n, d in QUANTILES.values()),
        ):
            cols.append(agg if where is None else agg.filter(where))
    out = {}
    for stage, *values in conn.execute(select(dur.c.stage, *cols).group_by(dur.c.stage)):
        for k, selection in enumerate(CRM_SELECTIONS):
            n, *qs = values[k * (1 + len(QUANTILES)) : (k + 1) * (1 + len(QUANTILES))]
            if n:
                hours = {f"{name}_hours": _hours(float(q)) for name, q in zip(QUANTILES, qs, strict=True)}
                out[(int(stage), selection)] = (int(n), hours)
    return out


def _ranked_quantiles(conn: Connection, dur: Subquery) -> dict[tuple[int, str], tuple[int, dict[str, Any]]]:
    """SQLite (no percentile aggregate): per CRM selection, rank the durations in each stage
    (window functions) and read only the two rows around each quantile's position."""
    out = {}
    for selection in CRM_SELECTIONS:
        where = _in_selection(dur.c.crm, selection)
        ranked_q = select(
            dur.c.stage,
            dur.c.secs,
            func.row_number().over(partition_by=dur.c.stage, order_by=dur.c.secs).label("rn"),
            func.count().over(partition_by=dur.c.stage).label("n"),
        )
        r = (ranked_q if where is None else ranked_q.where(where)).subquery("ranked").c
        wanted = [((r.n - 1) * num) // den + k for num, den in QUANTILES.values() for k in (1, 2)]
        ranks: dict[int, tuple[int, dict[int, float]]] = {}
        for stage, rn, n, secs in conn.execute(
            select(r.stage, r.rn, r.n, r.secs).where(or_(*(r.rn == w for w in wanted)))
        ):
            ranks.setdefault(int(stage), (int(n), {}))[1][int(rn)] = float(secs)
        for stage, (n, values) in ranks.items():
            hours = {f"{name}_hours": _hours(quantile(values, n, *pq)) for name, pq in QUANTILES.items()}
            out[(stage, selection)] = (n, hours)
    return out


def rep_weeks(conn: Connection) -> list[dict[str, Any]]:
    """Per week and rep: handoffs assigned (any status but failed, as capacity counts them)
    and handed off (done)."""
    c = ledger.c
    q = (
        select(
            c.week_start,
            c.rep_email,
            func.count(func.distinct(c.key)),
            func.count(func.distinct(case((c.status == "done", c.key)))),
        )
        .where(c.status != "failed")
        .group_by(c.week_start, c.rep_email)
    )
    return [
        {"week": _iso(w), "rep": rep, "assigned": int(a), "handed_off": int(h)}
        for w, rep, a, h in conn.execute(q)
    ]


def handoffs_per_rep(conn: Connection) -> dict[str, int]:
    """Handoffs (done) per rep: one per handoff, however many CRMs it was written to."""
    c = ledger.c
    q = select(c.rep_email, func.count(func.distinct(c.key))).where(c.status == "done").group_by(c.rep_email)
    return {rep: int(n) for rep, n in conn.execute(q)}


def queue_size(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(queue)).scalar_one())


def nurture_ages(conn: Connection, now: datetime) -> list[dict[str, Any]]:
    """People waiting in nurture (the queue less the set-aside) per age bucket and CRM."""
    q_ = queue.c
    bounds = [*AGE_BUCKETS, AGE_OLDEST]
    bucket = case(
        *((q_.queued_at <= now - timedelta(days=days), label) for label, days in reversed(bounds[1:])),
        else_=bounds[0][0],
    ).label("age")
    inner = (
        select(bucket, _crm_of())
        .select_from(queue.outerjoin(identities, identities.c.person_key == q_.person_key))
        .where(q_.reason.not_like(f"{SET_ASIDE_PREFIX}%"))
        .subquery()
    )
    q = select(inner.c.age, inner.c.crm, func.count()).group_by(inner.c.age, inner.c.crm)
    return [{"age": a, "crm": c, "people": int(n)} for a, c, n in conn.execute(q)]


def nurture_summary(conn: Connection, now: datetime) -> dict[str, Any]:
    """Waiting and set-aside counts and the longest wait, in days."""
    q_ = queue.c
    aside = q_.reason.like(f"{SET_ASIDE_PREFIX}%")
    waiting, set_aside, oldest = conn.execute(
        select(
            func.count(case((~aside, 1))),
            func.count(case((aside, 1))),
            func.min(case((~aside, q_.queued_at))),
        )
    ).one()
    oldest_at = _as_utc(oldest)
    return {
        "waiting": int(waiting),
        "set_aside": int(set_aside),
        "oldest_days": round((now - oldest_at).total_seconds() / 86400, 2) if oldest_at else None,
    }


def nurture_daily(conn: Connection) -> list[dict[str, Any]]:
    """The nurture queue after each day's runs (the largest a day; from the runs' summaries)."""
    d = conn.dialect.name
    kept = runs.c.summary["kept_in_nurture"].as_integer()
    inner = (
        select(_day(runs.c.started_at, d).label("day"), kept.label("kept"))
        .where(runs.c.status.in_(("ok", "partial")), kept.is_not(None))
        .subquery()
    )
    q = select(inner.c.day, func.max(inner.c.kept)).group_by(inner.c.day)
    return [{"day": _iso(day), "waiting": int(n)} for day, n in conn.execute(q)]


def overflow_daily(conn: Connection) -> list[dict[str, Any]]:
    """Per day: leads handed off, and of them the nurture overflow of earlier cycles offered
    again (from the runs' summaries; runs before this figure was recorded count as none)."""
    d = conn.dialect.name
    handed = runs.c.summary["handed_off"].as_integer()
    again = runs.c.summary["handed_off_from_nurture"].as_integer()
    inner = (
        select(_day(runs.c.started_at, d).label("day"), handed.label("handed"), again.label("again"))
        .where(runs.c.status.in_(("ok", "partial", "stopped")), handed.is_not(None))
        .subquery()
    )
    q = select(inner.c.day, func.sum(inner.c.handed), func.sum(func.coalesce(inner.c.again, 0))).group_by(
        inner.c.day
    )
    return [
        {"day": _iso(day), "handed_off": int(h or 0), "offered_again": int(a or 0)}
        for day, h, a in conn.execute(q)
        if h
    ]


def monthly(conn: Connection, cohort_stage: str) -> list[dict[str, Any]]:
    """Per month and CRM: people entering ``cohort_stage`` (MQLs), handoffs (done, by the
    month first planned) and people who became sales-ready that month still waiting."""
    d = conn.dialect.name
    out: dict[tuple[str, str], dict[str, Any]] = {}

    def add(column: str, rows: Iterable[Any]) -> None:
        for month, crm, n in rows:
            slot = out.setdefault((str(month), crm), {"month": str(month), "crm": crm})
            slot[column] = int(n)

    h = stage_history
    add("mql", _grouped(conn, _month(h.c.entered_at, d), h, h.c.person_key, h.c.stage == cohort_stage))
    first = (
        select(ledger.c.person_key, func.min(ledger.c.planned_at).label("at"))
        .where(ledger.c.status == "done")
        .group_by(ledger.c.key, ledger.c.person_key)
        .subquery("handoffs")
    )
    add("handed_off", _grouped(conn, _month(first.c.at, d), first, first.c.person_key, None))
    waiting = queue.c.reason.not_like(f"{SET_ASIDE_PREFIX}%")
    add("waiting", _grouped(conn, _month(queue.c.queued_at, d), queue, queue.c.person_key, waiting))
    rows = sorted(out.values(), key=lambda r: (r["month"], r["crm"]))
    for r in rows:
        for key in ("mql", "handed_off", "waiting"):
            r.setdefault(key, 0)
        r["sales_ready"] = r["handed_off"] + r["waiting"]
    return rows


def _grouped(conn: Connection, month: Any, table: Any, person_key: Any, where: Any) -> Any:
    inner = select(month.label("month"), _crm_of()).select_from(
        table.outerjoin(identities, identities.c.person_key == person_key)
    )
    if where is not None:
        inner = inner.where(where)
    sub = inner.subquery()
    return conn.execute(select(sub.c.month, sub.c.crm, func.count()).group_by(sub.c.month, sub.c.crm))


def outcomes_after(conn: Connection, funnel: Sequence[str], cohort: int) -> dict[str, Any]:
    """Payoff: of the people handed off (overall and per rep), how many entered each stage
    after the cohort stage at or after their handoff; of the cohort never handed off, how
    many entered them at or after the cohort entry (the comparison). Each a pass over the
    people in question, their later entries looked up by the history's primary key."""
    later = list(funnel[cohort + 1 :])
    reps = (
        select(ledger.c.person_key, ledger.c.rep_email, func.min(ledger.c.planned_at).label("at"))
        .where(ledger.c.status == "done")
        .group_by(ledger.c.person_key, ledger.c.rep_email)
        .subquery("r")
    )
    h = _handed()
    after = stage_history.alias("after")

    def counts(people: Any, at: Any, group: Any = None) -> list[Any]:
        key = people.c.person_key
        source = people.outerjoin(
            after, and_(after.c.person_key == key, after.c.stage.in_(later), after.c.entered_at >= at)
        )
        cols = [
            func.count(func.distinct(key)),
            *(func.count(func.distinct(case((after.c.stage == s, key)))) for s in later),
        ]
        q = select(*([group] if group is not None else []), *cols).select_from(source)
        return list(conn.execute(q if group is None else q.group_by(group)))

    def shaped(row: Sequence[Any]) -> dict[str, Any]:
        return {"people": int(row[0]), **{s: int(n or 0) for s, n in zip(later, row[1:], strict=True)}}

    (everyone,) = counts(h, h.c.at)
    by_rep = counts(reps, reps.c.at, reps.c.rep_email)
    first = stage_history.alias("first")
    cohort_people = (
        select(first.c.person_key, first.c.entered_at)
        .select_from(first.outerjoin(h, h.c.person_key == first.c.person_key))
        .where(first.c.stage == funnel[cohort], h.c.person_key.is_(None))
        .subquery("control")
    )
    (control,) = counts(cohort_people, cohort_people.c.entered_at)
    return {
        "handed_off": shaped(everyone),
        "by_rep": sorted(({"rep": r[0], **shaped(r[1:])} for r in by_rep), key=lambda x: x["rep"]),
        "not_handed_off": shaped(control),
    }


# --- pure helpers ---------------------------------------------------------------------


def quantile(values: Mapping[int, float], n: int, num: int, den: int) -> float | None:
    """The p = num/den quantile of n sorted values, linear between closest ranks (numpy's
    default, ``statistics.quantiles(method='inclusive')``), from the 1-based ranks around
    position (n - 1) * p: ``values`` holds at least those two."""
    if n <= 0:
        return None
    lo = (n - 1) * num // den
    frac = (n - 1) * num / den - lo
    below = values[lo + 1]
    above = values.get(lo + 2, below)
    return below + frac * (above - below)


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 3600, 2)


def _as_utc(value: Any) -> datetime | None:
    if value is None:
        return None
    at: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def rate(part: int, whole: int) -> float | None:
    """part / whole to 4 places; None when there is no whole (never a made-up 0 or 100%)."""
    return round(part / whole, 4) if whole else None


def cohort_stage(funnel: Sequence[str]) -> int:
    """The index of the stage whose entry makes a cohort: ``mql``, else the funnel's first."""
    return list(funnel).index("mql") if "mql" in funnel else 0


def scorecard(
    payoff: Mapping[str, Any], monthly_rows: Sequence[Mapping[str, Any]], funnel: Sequence[str]
) -> dict[str, Any]:
    """The payoff tiles: MQLs and sales-ready leads per month on average, and the rates of
    handed-off leads against MQLs never handed off."""
    months = sorted({r["month"] for r in monthly_rows})
    mql = sum(r["mql"] for r in monthly_rows)
    ready = sum(r["sales_ready"] for r in monthly_rows)
    handed, control = payoff["handed_off"], payoff["not_handed_off"]
    sql = "sql" if "sql" in funnel else funnel[-2]
    won = funnel[-1]
    return {
        "months": len(months),
        "mql_per_month": round(mql / len(months), 2) if months else None,
        "sales_ready_per_month": round(ready / len(months), 2) if months else None,
        "handed_off": handed["people"],
        "sql_rate_handed_off": rate(handed.get(sql, 0), handed["people"]),
        "win_rate_handed_off": rate(handed.get(won, 0), handed["people"]),
        "win_rate_not_handed_off": rate(control.get(won, 0), control["people"]),
    }


def figures(engine: Engine, mapping: MappingSet, now: datetime) -> dict[str, Any]:
    """Every figure of the report page (``report --json`` carries them all)."""
    funnel = list(mapping.lifecycle.funnel)
    start = cohort_stage(funnel)
    now = now.astimezone(UTC)
    with engine.connect() as conn:
        payoff = outcomes_after(conn, funnel, start)
        month_rows = monthly(conn, funnel[start])
        out = {
            "as_of": now.isoformat(),
            "funnel": funnel,
            "cohort_stage": funnel[start],
            "funnel_now": funnel_now(conn),
            "funnel_weekly": funnel_weekly(conn),
            "cohorts": cohorts(conn, funnel, start),
            "time_in_stage": stage_durations(conn, funnel),
            "reps": [
                {"rep": r.email, "name": r.name, "crm": r.works_in, "weekly_capacity": r.weekly_capacity}
                for r in mapping.reps.reps
            ],
            "rep_weeks": rep_weeks(conn),
            "nurture": {
                **nurture_summary(conn, now),
                "ages": nurture_ages(conn, now),
                "daily": nurture_daily(conn),
                "overflow_daily": overflow_daily(conn),
            },
            "payoff": {**payoff, "monthly": month_rows, "scorecard": scorecard(payoff, month_rows, funnel)},
        }
    return out
