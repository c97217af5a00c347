"""The report page: ``report_data``'s figures as one self-contained HTML file (pure).

Charts are Vega-Lite specs built with altair (checked against the Vega-Lite schema) and
drawn in the browser by Vega, whose JavaScript (vega, vega-lite, vega-embed) comes
inlined from ``vl-convert-python``'s bundle: no CDN, no request of any kind (the page's
Content-Security-Policy forbids every fetch). The script contents (the bundle, the JSON, ``FILTER_JS``) go in marked safe; the JSON
cannot end its element (``_json_for_script``). The figures travel in the page twice: as
each chart's data and, whole, as the ``report-data`` JSON element (what ``report --json``
prints), with a table of each chart's rows for reading.

The one piece of hand-written JavaScript (``FILTER_JS``) embeds the charts and drives the
filter bar: a Vega-Lite param belongs to one view, and one bar (date range, rep, CRM) must
set the same params on every chart. Each chart declares the params ``PARAMS`` and
filters its rows with them.

A new view (the outcome and content figures, once recorded) is one more ``ChartDef``;
until then ``report_data``'s ``pending`` names what each missing view waits for.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import altair as alt
from jinja2.sandbox import SandboxedEnvironment

PARAMS = {
    "f_from": "0000-01-01",
    "f_from_week": "0000-01-01",
    "f_to": "9999-12-31",
    "f_rep": "all",
    "f_crm": "all",
}
BY_CRM = "(f_crm == 'all') || (datum.crm == f_crm) || (datum.crm == 'both')"
# temporal fields arrive parsed (Vega-Lite parses a field a chart encodes as :T): compare as dates
BY_WEEK = "(toDate(datum.week) >= toDate(f_from_week)) && (toDate(datum.week) <= toDate(f_to))"
BY_MONTH = "(datum.month >= slice(f_from, 0, 7)) && (datum.month <= slice(f_to, 0, 7))"
BY_DAY = "(toDate(datum.day) >= toDate(f_from)) && (toDate(datum.day) <= toDate(f_to))"
BY_REP = "(f_rep == 'all') || (datum.rep == f_rep)"
CSP = (
    "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'"
)

Spec = Any  # an altair chart: its chained methods are untyped


@dataclass(frozen=True)
class ChartDef:
    """One chart of the page: where its rows are in the figures, and how it is drawn."""

    id: str
    title: str
    says: str  # one sentence: what the chart shows
    filters: str  # which filters apply, shown under the title
    rows: Callable[[Mapping[str, Any]], list[dict[str, Any]]]
    build: Callable[[list[dict[str, Any]], Mapping[str, Any]], Spec]


def _base(rows: list[dict[str, Any]], *filters: str) -> alt.Chart:
    chart = alt.Chart(alt.InlineData(values=rows))
    for f in filters:
        chart = chart.transform_filter(f)
    return chart


def _domain(values: list[str]) -> alt.Scale:
    """A color scale over fixed values: the same colors under any filter, and a legend even
    when a filter leaves no rows (an empty domain draws a legend of infinite size)."""
    return alt.Scale(domain=values)


def reps_of(d: Mapping[str, Any]) -> list[str]:
    """The reps of the mapping and of the ledger (someone since removed from reps.yaml)."""
    return sorted({r["rep"] for r in d["reps"]} | {r["rep"] for r in d["rep_weeks"]})


def _funnel_now(rows: list[dict[str, Any]], d: Mapping[str, Any]) -> Spec:
    return (
        _base(rows, BY_CRM)
        .mark_bar()
        .encode(
            y=alt.Y("stage:N", sort=list(d["current"]), title=None),
            x=alt.X("sum(people):Q", title="people now"),
            color=alt.Color("stage:N", legend=None),
            tooltip=["stage:N", alt.Tooltip("sum(people):Q", title="people")],
        )
    )


def _funnel_weekly(rows: list[dict[str, Any]], d: Mapping[str, Any]) -> Spec:
    return (
        _base(rows, BY_CRM, BY_WEEK)
        .mark_line(point=True)
        .encode(
            x=alt.X("week:T", title="week"),
            y=alt.Y("sum(entered):Q", title="people entering"),
            color=alt.Color("stage:N", scale=_domain(list(d["current"])), title="stage"),
            tooltip=["week:T", "stage:N", alt.Tooltip("sum(entered):Q", title="entered")],
        )
    )


def _cohorts(rows: list[dict[str, Any]], d: Mapping[str, Any]) -> Spec:
    start = d["cohort_stage"]
    later = d["funnel"][d["funnel"].index(start) + 1 :]
    return (
        _base(rows, BY_CRM, BY_WEEK)
        .transform_aggregate(
            **{s: f"sum({s})" for s in [start, *later]},  # type: ignore[arg-type]
            groupby=["week"],
        )
        .transform_fold(later, as_=["stage", "reached"])
        .transform_calculate(rate=f"datum.reached / datum['{start}']")
        .mark_line(point=True)
        .encode(
            x=alt.X("week:T", title=f"week they became {start}"),
            y=alt.Y("rate:Q", axis=alt.Axis(format="%"), title="reached"),
            color=alt.Color("stage:N", scale=_domain(later), title="then reached"),
            tooltip=["week:T", "stage:N", "reached:Q", alt.Tooltip("rate:Q", format=".1%")],
        )
    )


def _time_in_stage(rows: list[dict[str, Any]], d: Mapping[str, Any]) -> Spec:
    return (
        _base(rows, "datum.crm == f_crm")
        .transform_calculate(step="datum.from + ' -> ' + datum.to")
        .transform_fold(["median_hours", "p90_hours"], as_=["measure", "hours"])
        .transform_calculate(days="datum.hours / 24")
        .mark_bar()
        .encode(
            y=alt.Y("step:N", title=None, sort=[f"{a} -> {b}" for a, b in itertools.pairwise(d["funnel"])]),
            yOffset="measure:N",
            x=alt.X("days:Q", title="days in stage"),
            color=alt.Color("measure:N", scale=_domain(["median_hours", "p90_hours"]), title=None),
            tooltip=["step:N", "measure:N", alt.Tooltip("days:Q", format=".2f"), "people:Q"],
        )
    )


def _handed_share(rows: list[dict[str, Any]], d: Mapping[str, Any]) -> Spec:
    start = d["cohort_stage"]
    return (
        _base(rows, BY_CRM, BY_WEEK)
        .transform_aggregate(cohort=f"sum({start})", handed="sum(handed_off)", groupby=["week"])
        .transform_calculate(share="datum.handed / datum.cohort")
        .mark_bar()
        .encode(
            x=alt.X("week:T", title=f"week they became {start}"),
            y=alt.Y("share:Q", axis=alt.Axis(format="%"), title="handed off"),
            tooltip=["week:T", "cohort:Q", "handed:Q", alt.Tooltip("share:Q", format=".1%")],
        )
    )


def _capacity(rows: list[dict[str, Any]], d: Mapping[str, Any]) -> Spec:
    base = (
        _base(rows, BY_REP, BY_WEEK)
        .transform_lookup(
            lookup="rep",
            from_=alt.LookupData(alt.InlineData(values=d["reps"]), "rep", ["weekly_capacity", "crm"]),
        )
        .transform_filter(BY_CRM)
    )
    bars = base.mark_bar().encode(
        x=alt.X("week:O", title="week", timeUnit="yearmonthdate"),
        xOffset="rep:N",
        y=alt.Y("assigned:Q", title="handoffs"),
        color=alt.Color("rep:N", scale=_domain(reps_of(d)), title="rep"),
        tooltip=["week:T", "rep:N", "assigned:Q", "handed_off:Q", "weekly_capacity:Q"],
    )
    ticks = base.mark_tick(thickness=3, color="#222").encode(
        x=alt.X("week:O", timeUnit="yearmonthdate"), xOffset="rep:N", y="weekly_capacity:Q"
    )
    return alt.layer(bars, ticks)


def _nurture_ages(rows: list[dict[str, Any]], d: Mapping[str, Any]) -> Spec:
    order = ["under 1 day", "1-3 days", "3-7 days", "1-2 weeks", "2-4 weeks", "4 weeks or more"]
    return (
        _base(rows, BY_CRM)
        .mark_bar()
        .encode(
            x=alt.X("age:N", sort=order, title="waiting for"),
            y=alt.Y("sum(people):Q", title="people waiting"),
            tooltip=["age:N", alt.Tooltip("sum(people):Q", title="people")],
        )
    )


def _nurture_daily(rows: list[dict[str, Any]], d: Mapping[str, Any]) -> Spec:
    return (
        _base(rows, BY_DAY)
        .mark_line(point=True)
        .encode(
            x=alt.X("day:T", title="day"),
            y=alt.Y("waiting:Q", title="waiting after the day's runs"),
            tooltip=["day:T", "waiting:Q"],
        )
    )


def _overflow(rows: list[dict[str, Any]], d: Mapping[str, Any]) -> Spec:
    kinds: list[Any] = ["handed_off", "offered_again"]
    return (
        _base(rows, BY_DAY)
        .transform_fold(kinds, as_=["measure", "leads"])
        .mark_bar()
        .encode(
            x=alt.X("day:O", title="day", timeUnit="yearmonthdate"),
            xOffset=alt.XOffset("measure:N", sort=kinds),
            y=alt.Y("leads:Q", title="leads handed off"),
            color=alt.Color("measure:N", scale=_domain(kinds), sort=kinds, title=None),
            tooltip=["day:T", "measure:N", "leads:Q"],
        )
    )


def _payoff_monthly(rows: list[dict[str, Any]], d: Mapping[str, Any]) -> Spec:
    return (
        _base(rows, BY_CRM, BY_MONTH)
        .transform_fold(["mql", "sales_ready"], as_=["measure", "people"])
        .mark_bar()
        .encode(
            x=alt.X("month:O", title="month"),
            xOffset="measure:N",
            y=alt.Y("sum(people):Q", title="people"),
            color=alt.Color("measure:N", scale=_domain(["mql", "sales_ready"]), title=None),
            tooltip=["month:O", "measure:N", alt.Tooltip("sum(people):Q", title="people")],
        )
    )


def _payoff_by_rep(rows: list[dict[str, Any]], d: Mapping[str, Any]) -> Spec:
    later = d["funnel"][d["funnel"].index(d["cohort_stage"]) + 1 :]
    return (
        _base(rows, BY_REP)
        .transform_fold(later, as_=["stage", "reached"])
        .transform_calculate(rate="datum.people ? datum.reached / datum.people : 0")
        .mark_bar()
        .encode(
            y=alt.Y("rep:N", title=None),
            yOffset=alt.YOffset("stage:N", sort=later),
            x=alt.X(
                "rate:Q",
                axis=alt.Axis(format="%"),
                title="of handed-off leads",
                scale=alt.Scale(domain=[0, 1]),
            ),
            color=alt.Color("stage:N", scale=_domain(later), title="then reached"),
            tooltip=["rep:N", "stage:N", "people:Q", "reached:Q", alt.Tooltip("rate:Q", format=".1%")],
        )
    )


def _with_crm(rows: list[dict[str, Any]], d: Mapping[str, Any], *filters: str) -> Spec:
    """Rows per rep, filtered by the rep's CRM (from the mapping's reps) and ``filters``."""
    return (
        _base(rows, *filters)
        .transform_lookup(
            lookup="rep", from_=alt.LookupData(alt.InlineData(values=d["reps"]), "rep", ["crm"])
        )
        .transform_filter(BY_CRM)
    )


def _acted_on(rows: list[dict[str, Any]], d: Mapping[str, Any]) -> Spec:
    measures = ["handoffs", "acted_on", "acted_on_within_sla"]
    return (
        _with_crm(rows, d, BY_REP, BY_WEEK)
        .transform_fold(measures, as_=["measure", "leads"])
        .mark_bar()
        .encode(
            x=alt.X("week:O", title="week handed off", timeUnit="yearmonthdate"),
            xOffset=alt.XOffset("measure:N", sort=measures),
            y=alt.Y("sum(leads):Q", title="handoffs"),
            color=alt.Color("measure:N", scale=_domain(measures), sort=measures, title=None),
            tooltip=["week:T", "measure:N", alt.Tooltip("sum(leads):Q", title="handoffs")],
        )
    )


def _rep_outcomes(rows: list[dict[str, Any]], d: Mapping[str, Any]) -> Spec:
    kinds = ["acted_on", "rejected", "reassigned", "open"]
    return (
        _with_crm(rows, d, BY_REP, BY_WEEK)
        .transform_fold(kinds, as_=["outcome", "handoffs_of"])
        .mark_bar()
        .encode(
            y=alt.Y("rep:N", title=None),
            x=alt.X("sum(handoffs_of):Q", title="handoffs"),
            color=alt.Color("outcome:N", scale=_domain(kinds), sort=kinds, title="what became of them"),
            tooltip=["rep:N", "outcome:N", alt.Tooltip("sum(handoffs_of):Q", title="handoffs")],
        )
    )


def _rejections(rows: list[dict[str, Any]], d: Mapping[str, Any]) -> Spec:
    return (
        _with_crm(rows, d, BY_REP)
        .mark_bar()
        .encode(
            y=alt.Y("reason:N", title=None),
            x=alt.X("sum(count):Q", title="rejections"),
            color=alt.Color("rep:N", scale=_domain(reps_of(d)), title="rep"),
            tooltip=["reason:N", "rep:N", alt.Tooltip("sum(count):Q", title="rejections")],
        )
    )


def _content(rows: list[dict[str, Any]], d: Mapping[str, Any]) -> Spec:
    measures: list[Any] = ["recommended", "used"]
    return (
        _base(rows)
        .transform_calculate(asset="datum.id + ' v' + datum.version")
        .transform_fold(measures, as_=["measure", "handoffs"])
        .mark_bar()
        .encode(
            y=alt.Y("asset:N", title=None),
            yOffset=alt.YOffset("measure:N", sort=measures),
            x=alt.X("handoffs:Q", title="handoffs"),
            color=alt.Color("measure:N", scale=_domain(measures), sort=measures, title=None),
            tooltip=["title:N", "gate:N", "status:N", "measure:N", "handoffs:Q"],
        )
    )


CHARTS: tuple[ChartDef, ...] = (
    ChartDef(
        "funnel-now",
        "The funnel now",
        "How many people are in each canonical stage right now.",
        "CRM",
        lambda d: d["funnel_now"],
        _funnel_now,
    ),
    ChartDef(
        "funnel-weekly",
        "The funnel over time",
        "How many people entered each stage, week by week (recorded entries only).",
        "date range, CRM",
        lambda d: d["funnel_weekly"],
        _funnel_weekly,
    ),
    ChartDef(
        "cohorts",
        "Conversion by weekly cohort",
        "Of the people who became MQL in a week, the share who then reached each later stage.",
        "date range, CRM",
        lambda d: d["cohorts"],
        _cohorts,
    ),
    ChartDef(
        "time-in-stage",
        "Time in each stage",
        "How long people stay in a stage before entering the next one: median and 90th percentile, in days.",
        "CRM",
        lambda d: d["time_in_stage"],
        _time_in_stage,
    ),
    ChartDef(
        "handed-share",
        "MQLs handed off to sales",
        "Of the people who became MQL in a week, the share crm-handoff handed to a rep.",
        "date range, CRM",
        lambda d: d["cohorts"],
        _handed_share,
    ),
    ChartDef(
        "capacity",
        "Rep capacity and assigned leads",
        "Handoffs assigned to each rep per week (bars) against the rep's weekly capacity (black tick).",
        "date range, rep, CRM (the rep's)",
        lambda d: d["rep_weeks"],
        _capacity,
    ),
    ChartDef(
        "acted-on",
        "Marketing's leads acted on by sales",
        "Per week, the leads handed to reps, how many the rep acted on (a call, email, meeting or the task "
        "completed), and how many within the follow-up SLA: the number this whole process exists to raise.",
        "date range, rep, CRM (the rep's)",
        lambda d: d["outcomes"]["weekly"],
        _acted_on,
    ),
    ChartDef(
        "rep-outcomes",
        "What reps did with their handoffs",
        "Per rep, the handoffs acted on, rejected, reassigned after a missed SLA, and still open.",
        "date range, rep, CRM (the rep's)",
        lambda d: d["outcomes"]["weekly"],
        _rep_outcomes,
    ),
    ChartDef(
        "rejections",
        "Why reps rejected leads",
        "The reasons reps gave on the task when they handed a lead back, per rep.",
        "rep, CRM (the rep's)",
        lambda d: d["outcomes"]["reasons"],
        _rejections,
    ),
    ChartDef(
        "content",
        "Content recommended and used",
        "Per asset and version, the handoffs whose brief recommended it, and how many of those leads then "
        "opened it (an email click or page view on its url): an asset with no 'used' bar was never used.",
        "none (all recorded time)",
        lambda d: d["content"]["assets"],
        _content,
    ),
    ChartDef(
        "nurture-ages",
        "Nurture queue by age",
        "Sales-ready people waiting for rep capacity, by how long they have waited.",
        "CRM",
        lambda d: d["nurture"]["ages"],
        _nurture_ages,
    ),
    ChartDef(
        "nurture-daily",
        "Nurture queue over time",
        "How many sales-ready people were waiting after each day's runs (the largest of the day).",
        "date range",
        lambda d: d["nurture"]["daily"],
        _nurture_daily,
    ),
    ChartDef(
        "overflow",
        "Nurture overflow offered again",
        "Per day, the leads handed off, and how many of them had waited in nurture for rep capacity since an earlier cycle.",
        "date range",
        lambda d: d["nurture"]["overflow_daily"],
        _overflow,
    ),
    ChartDef(
        "payoff-monthly",
        "Sales-ready leads against MQLs",
        "Per month, the MQLs marketing produced against the sales-ready leads crm-handoff found (handed off or waiting).",
        "date range, CRM",
        lambda d: d["payoff"]["monthly"],
        _payoff_monthly,
    ),
    ChartDef(
        "payoff-by-rep",
        "What became of handed-off leads",
        "Per rep, the share of the leads handed to them that then reached SQL, opportunity and customer.",
        "rep",
        lambda d: d["payoff"]["by_rep"],
        _payoff_by_rep,
    ),
)

#: the scorecard tiles: (figure key in payoff.scorecard, label, format)
TILES = (
    ("mql_per_month", "MQLs per month", "number"),
    ("sales_ready_per_month", "sales-ready leads per month", "number"),
    ("handed_off", "leads handed off", "number"),
    ("sql_rate_handed_off", "SQL rate of handed-off leads", "percent"),
    ("win_rate_handed_off", "win rate of handed-off leads", "percent"),
    ("win_rate_not_handed_off", "win rate of MQLs never handed off", "percent"),
    ("acted_on_within_sla_rate", "handed-off leads acted on within SLA", "percent"),
    ("first_touch_median_hours", "median hours to first touch", "number"),
)


def chart_specs(
    d: Mapping[str, Any], charts: Sequence[ChartDef] = CHARTS, validate: bool = True
) -> dict[str, dict[str, Any]]:
    """Each chart's Vega-Lite spec (a dict), with the filter params declared, checked against
    the Vega-Lite schema unless ``validate`` is false."""
    params = [alt.param(name=name, value=value) for name, value in PARAMS.items()]
    out = {}
    for c in charts:
        spec = c.build(c.rows(d), d).add_params(*params).properties(width="container", height=260)
        spec = spec.configure(autosize=alt.AutoSizeParams(type="fit-x", contains="padding"))
        out[c.id] = spec.configure_legend(orient="bottom", columns=3).to_dict(
            validate=validate
        )  # phones: legend below
    return out


@functools.cache
def vega_bundle() -> str:
    """vega, vega-lite and vega-embed as one script (vl-convert's bundle; built once)."""
    import vl_convert

    make: Any = vl_convert.javascript_bundle  # its stub has no defaults; the snippet is optional
    bundle = str(make())
    if "</script" in bundle.lower() or "<!--" in bundle:
        raise RuntimeError("the Vega bundle cannot be inlined in a <script> element")
    return bundle


def _json_for_script(value: Any) -> str:
    """JSON safe inside a <script> element (no '<', '>' or '&' left to end it)."""
    text = json.dumps(value, default=str, sort_keys=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    return f"{value:.1%}" if kind == "percent" else f"{value:g}"


def _table(rows: list[dict[str, Any]]) -> dict[str, Any]:
    columns = list(rows[0]) if rows else []
    return {"columns": columns, "rows": [[r.get(c) for c in columns] for r in rows]}


def _dates(d: Mapping[str, Any]) -> tuple[str, str]:
    seen = [r["week"] for r in d["funnel_weekly"]] + [r["week"] for r in d["rep_weeks"]]
    seen += [r["day"] for r in d["nurture"]["daily"]] + [r["month"] + "-01" for r in d["payoff"]["monthly"]]
    return (min(seen), max(seen)) if seen else ("", "")


def render_page(d: Mapping[str, Any]) -> str:
    """The whole page for ``report_data``'s figures ``d``."""
    env = SandboxedEnvironment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = _fmt
    reps = reps_of(d)
    first, last = _dates(d)
    return env.from_string(PAGE).render(
        d=d,
        csp=CSP,
        charts=[(c, _table(c.rows(d))) for c in CHARTS],
        tiles=[(key, label, kind, d["payoff"]["scorecard"].get(key)) for key, label, kind in TILES],
        reps=reps,
        first=first,
        last=last,
        data_json=_json_for_script(d),
        specs_json=_json_for_script(chart_specs(d)),
        vega=vega_bundle(),
        filter_js=FILTER_JS,
    )


FILTER_JS = """
(function () {
  const byId = (id) => document.getElementById(id);
  const specs = JSON.parse(byId("chart-specs").textContent);
  const views = {};
  const report = { data: JSON.parse(byId("report-data").textContent), views: views };
  window.handoffReport = report;
  const controls = ["f-from", "f-to", "f-rep", "f-crm"].map(byId);
  function monday(iso) {
    const day = new Date(iso + "T00:00:00Z");
    day.setUTCDate(day.getUTCDate() - ((day.getUTCDay() + 6) % 7));
    return day.toISOString().slice(0, 10);
  }
  function signals() {
    const from = byId("f-from").value || "0000-01-01";
    return {
      f_from: from,
      f_from_week: from === "0000-01-01" ? from : monday(from),
      f_to: byId("f-to").value || "9999-12-31",
      f_rep: byId("f-rep").value,
      f_crm: byId("f-crm").value,
    };
  }
  function apply() {
    const values = signals();
    return Promise.all(Object.values(views).map(function (view) {
      for (const name in values) view.signal(name, values[name]);
      return view.runAsync();
    }));
  }
  const options = { renderer: "svg", actions: false, mode: "vega-lite" };
  report.ready = Promise.all(Object.keys(specs).map(function (id) {
    return vegaEmbed("#chart-" + id, specs[id], options).then(function (r) { views[id] = r.view; });
  })).then(apply).then(function () {
    document.body.dataset.ready = "yes";
  }).catch(function (err) {
    document.body.dataset.ready = "failed";
    console.error(err);
  });
  controls.forEach(function (el) { el.addEventListener("change", apply); });
  byId("f-reset").addEventListener("click", function () {
    byId("f-from").value = ""; byId("f-to").value = "";
    byId("f-rep").value = "all"; byId("f-crm").value = "all";
    apply();
  });
})();
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{{ csp }}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>crm-handoff report</title>
<style>
  body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1f2933; background: #f4f6f8; }
  header, main { max-width: 1240px; margin: 0 auto; padding: 0 16px; }
  h1 { font-size: 1.5rem; margin: 20px 0 4px; }
  h2 { font-size: 1.1rem; margin: 0 0 4px; }
  p { margin: 4px 0; }
  .muted { color: #616e7c; font-size: 0.85rem; }
  .filters { display: flex; flex-wrap: wrap; gap: 8px 16px; align-items: end; background: #fff; padding: 10px 12px;
             border-radius: 8px; margin: 12px 0; position: sticky; top: 0; z-index: 2; box-shadow: 0 1px 3px #0002; }
  .filters label { display: flex; flex-direction: column; font-size: 0.8rem; color: #52606d; }
  .filters input, .filters select, .filters button { font-size: 0.95rem; padding: 4px 6px; }
  .tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; margin: 12px 0; }
  .tile { background: #fff; border-radius: 8px; padding: 10px 12px; box-shadow: 0 1px 3px #0002; }
  .tile .value { font-size: 1.6rem; font-weight: 600; }
  .grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 540px), 1fr)); gap: 16px; }
  .card { background: #fff; border-radius: 8px; padding: 12px 16px; box-shadow: 0 1px 3px #0002; min-width: 0; }
  .chart { width: 100%; min-height: 270px; }
  .pending { border: 2px dashed #cbd2d9; box-shadow: none; background: #fafbfc; }
  details { margin-top: 6px; font-size: 0.8rem; }
  .rows { max-height: 240px; overflow: auto; }
  table { border-collapse: collapse; }
  td, th { padding: 2px 8px; text-align: left; border-bottom: 1px solid #e4e7eb; white-space: nowrap; }
  footer { max-width: 1240px; margin: 16px auto 32px; padding: 0 16px; }
</style>
<script>{{ vega | safe }}</script>
</head>
<body>
<header>
  <h1>crm-handoff: the funnel and the payoff</h1>
  <p class="muted">As of {{ d.as_of }}{% if d.state %}, from {{ d.state }}{% endif %}. {{ d.basis }}</p>
</header>
<main>
  <form class="filters" onsubmit="return false">
    <label>from <input type="date" id="f-from" min="{{ first }}" max="{{ last }}"></label>
    <label>to <input type="date" id="f-to" min="{{ first }}" max="{{ last }}"></label>
    <label>rep <select id="f-rep"><option value="all">all reps</option>
      {% for rep in reps %}<option value="{{ rep }}">{{ rep }}</option>{% endfor %}</select></label>
    <label>CRM <select id="f-crm"><option value="all">both CRMs</option>
      <option value="hubspot">HubSpot</option><option value="salesforce">Salesforce</option></select></label>
    <button type="button" id="f-reset">reset</button>
  </form>
  <section aria-label="payoff scorecard">
    <h2>Payoff scorecard</h2>
    <p class="muted">All recorded time, both CRMs: fewer, better leads for sales, and what became of them.</p>
    <div class="tiles">
    {% for key, label, kind, value in tiles %}
      <div class="tile"><div class="value" data-figure="{{ key }}" data-value="{{ value if value is not none else '' }}">{{ value | fmt(kind) }}</div>
        <div class="muted">{{ label }}</div></div>
    {% endfor %}
      <div class="tile"><div class="value" data-figure="nurture.waiting" data-value="{{ d.nurture.waiting }}">{{ d.nurture.waiting }}</div>
        <div class="muted">waiting in nurture now</div></div>
    </div>
  </section>
  <div class="grid">
  {% for chart, table in charts %}
    <section class="card" id="card-{{ chart.id }}">
      <h2>{{ chart.title }}</h2>
      <p>{{ chart.says }}</p>
      <p class="muted">filters: {{ chart.filters }}</p>
      <div class="chart" id="chart-{{ chart.id }}" role="img" aria-label="{{ chart.says }}"></div>
      <details><summary>the figures ({{ table.rows | length }} rows)</summary><div class="rows">
        <table data-chart="{{ chart.id }}"><thead><tr>{% for c in table.columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
        <tbody>{% for row in table.rows %}<tr>{% for v in row %}<td>{{ v }}</td>{% endfor %}</tr>{% endfor %}</tbody></table>
      </div></details>
    </section>
  {% endfor %}
  {% for name, why in d.pending.items() %}
    <section class="card pending" id="pending-{{ name }}">
      <h2>Coming: {{ name }}</h2>
      <p>{{ why }}</p>
    </section>
  {% endfor %}
  </div>
</main>
<footer class="muted">Charts drawn by Vega-Lite, inlined: this file needs no network.</footer>
<script type="application/json" id="report-data">{{ data_json | safe }}</script>
<script type="application/json" id="chart-specs">{{ specs_json | safe }}</script>
<script>{{ filter_js | safe }}</script>
</body>
</html>
"""
