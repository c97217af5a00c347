"""`handoff report --html` from the demo's state, opened in a real headless Chromium (Debian's,
driven by Playwright): no console error, no network request, every chart drawn with data,
the page's figures equal to `handoff report --json`'s; screenshots kept as artifacts.

The browser test skips only when Chromium (or Playwright) is missing outside CI; in CI
(``CI`` set) or with ``HANDOFF_REQUIRE_BROWSER=1`` it fails instead."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import requests

from sync.report_html import CHARTS, TILES

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AS_OF = "2026-12-03T00:00:00Z"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sync.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HANDOFF_LOG_LEVEL": "warning", **env},
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The demo's state; its report as --json and as --html (one as-of time for both)."""
    where = tmp_path_factory.mktemp("report-demo")
    ran = _cli({}, "demo", "--dir", str(where / "demo"))
    assert ran.returncode == 0, ran.stderr
    env = {"HANDOFF_STATE_URL": f"sqlite:///{where / 'demo' / 'state.db'}"}
    as_json = _cli(env, "report", "--json", "--as-of", AS_OF)
    assert as_json.returncode == 0, as_json.stderr
    page = where / "report.html"
    as_html = _cli(env, "report", "--html", str(page), "--as-of", AS_OF)
    assert as_html.returncode == 0, as_html.stderr
    assert as_html.stdout == "" and f"report page written to {page}" in as_html.stderr
    return {"json": json.loads(as_json.stdout), "page": page, "env": env}


class _Refs(HTMLParser):
    """Every attribute that could make the browser fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "srcset", "poster", "data") or (tag == "meta" and name == "content"):
                self.refs.append((tag, name, value or ""))


def test_the_page_references_nothing_outside_itself(demo):
    text = demo["page"].read_text()
    refs = _Refs()
    refs.feed(text)
    assert [r for r in refs.refs if r[0] != "meta"] == []  # no src/href at all: scripts are inline
    (csp,) = [v for tag, _, v in refs.refs if "default-src" in v]
    assert "default-src 'none'" in csp and "connect-src 'none'" in csp
    assert text.count("<script") == 4  # the Vega bundle, the figures, the specs, the filter bar


def test_an_unwritable_html_path_is_one_line_and_exit_2(demo, tmp_path):
    ran = _cli(demo["env"], "report", "--html", str(tmp_path / "missing" / "r.html"))
    assert ran.returncode == 2
    assert ran.stderr.strip().splitlines() == [
        f"error: --html {tmp_path / 'missing' / 'r.html'}: cannot write the report page: No such file or directory"
    ]
    assert not (tmp_path / "missing").exists()


def _browser_or_skip() -> None:
    required = os.environ.get("HANDOFF_REQUIRE_BROWSER") == "1" or bool(os.environ.get("CI"))
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "Playwright for Python is not installed"
    else:
        missing = "" if CHROMIUM.exists() else f"{CHROMIUM} is missing (apt-get install chromium)"
    if missing and required:
        pytest.fail(f"the browser test is required here but {missing}")
    if missing:
        pytest.skip(missing)


@pytest.fixture
def page(demo) -> Iterator[Any]:
    """The report page open in headless Chromium; requests and console errors recorded."""
    _browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1366, "height": 900})
            tab.problems = []  # type: ignore[attr-defined]
            tab.requests = []  # type: ignore[attr-defined]
            tab.on("console", lambda m: m.type == "error" and tab.problems.append(m.text))
            tab.on("pageerror", lambda e: tab.problems.append(str(e)))
            tab.on("request", lambda r: tab.requests.append(r.url))
            tab.goto(demo["page"].as_uri())
            tab.wait_for_selector("body[data-ready]", timeout=30_000)
            yield tab
        finally:
            browser.close()


def _marks(tab: Any) -> dict[str, int]:
    return tab.evaluate(
        """Object.fromEntries([...document.querySelectorAll('.chart')].map(
             (e) => [e.id.slice(6), e.querySelectorAll('svg g.role-mark > *').length]))"""
    )


def _funnel_bars(tab: Any) -> dict[str, int]:
    labels = tab.evaluate(
        "[...document.querySelectorAll('#chart-funnel-now svg g.role-mark > *')].map(e => e.getAttribute('aria-label'))"
    )
    bars = {}
    for label in labels:
        parts = dict(p.split(": ", 1) for p in label.split("; "))
        bars[parts["stage"]] = int(parts["people now"])
    return bars


def _shot(tab: Any, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    tab.screenshot(path=str(shot), full_page=True)
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / name)
    assert shot.stat().st_size > 10_000
    return shot


def test_report_page_in_a_headless_browser(demo, page, tmp_path):
    tab, figures = page, demo["json"]
    assert tab.evaluate("document.body.dataset.ready") == "yes"
    assert tab.problems == []
    assert tab.requests == [demo["page"].as_uri()]  # the file itself, nothing else

    # every chart is drawn, with data
    marks = _marks(tab)
    assert set(marks) == {c.id for c in CHARTS}
    assert {c: n for c, n in marks.items() if n == 0} == {}

    # the figures in the page are report --json's, and each chart draws its rows of them
    assert tab.evaluate("JSON.parse(document.getElementById('report-data').textContent)") == figures
    specs = tab.evaluate("JSON.parse(document.getElementById('chart-specs').textContent)")
    for chart in CHARTS:
        data = specs[chart.id]["data"]  # inline, or by name from the spec's datasets
        drawn = data["values"] if "values" in data else specs[chart.id]["datasets"][data["name"]]
        assert drawn == chart.rows(figures), chart.id
    tiles = tab.evaluate(
        "Object.fromEntries([...document.querySelectorAll('[data-figure]')].map(e => [e.dataset.figure, e.dataset.value]))"
    )
    for key, _, _ in TILES:
        value = figures["payoff"]["scorecard"][key]
        assert tiles[key] == ("" if value is None else str(value)), key
    assert tiles["nurture.waiting"] == str(figures["nurture"]["waiting"])
    bars = _funnel_bars(tab)
    assert bars == {r: n for r, n in figures["current"].items() if n}

    # the CRM filter redraws from the same figures: Salesforce people (and linked ones)
    tab.select_option("#f-crm", "salesforce")
    tab.wait_for_timeout(300)
    expected: dict[str, int] = {}
    for row in figures["funnel_now"]:
        if row["crm"] in ("salesforce", "both"):
            expected[row["stage"]] = expected.get(row["stage"], 0) + row["people"]
    assert _funnel_bars(tab) == expected and expected != bars
    tab.click("#f-reset")
    tab.wait_for_timeout(300)
    assert _funnel_bars(tab) == bars

    # a date range after every recorded week leaves the weekly charts empty, not broken
    tab.fill("#f-from", "2030-01-01")
    tab.dispatch_event("#f-from", "change")
    tab.wait_for_timeout(300)
    assert _marks(tab)["funnel-weekly"] == 0 and _marks(tab)["funnel-now"] == len(bars)
    tab.click("#f-reset")
    # every rep and CRM choice draws without an error (a rep with no handoffs: empty charts)
    for rep in tab.evaluate("[...document.querySelectorAll('#f-rep option')].map(o => o.value)"):
        for crm in ("all", "hubspot", "salesforce"):
            tab.select_option("#f-rep", rep)
            tab.select_option("#f-crm", crm)
    tab.click("#f-reset")
    tab.wait_for_timeout(300)
    assert tab.problems == [] and _funnel_bars(tab) == bars

    _shot(tab, tmp_path, "report-desktop.png")
    tab.set_viewport_size({"width": 390, "height": 844})  # a phone
    tab.wait_for_timeout(500)
    assert tab.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the screen
    assert {c: n for c, n in _marks(tab).items() if n == 0} == {}
    _shot(tab, tmp_path, "report-phone.png")
    assert tab.problems == [] and tab.requests == [demo["page"].as_uri()]


def test_the_worker_serves_the_page_at_report(crms, tmp_path, state_url):
    from tests.integration.conftest import add_ready_contact, add_rep_users, mapping_dir, rep
    from tests.integration.test_worker import finished_runs, free_port, start_worker, stop, wait_for

    cfg = mapping_dir(tmp_path, reps=[rep("dana@northwind.example", "salesforce", 40, 20)])
    add_rep_users(crms, "dana@northwind.example")
    for i in range(3):
        add_ready_contact(crms, i)
    port = free_port()
    proc = start_worker(
        crms.env,
        cfg,
        tmp_path / "worker.log",
        HANDOFF_METRICS_PORT=str(port),
        HANDOFF_SYNC_INTERVAL_SECONDS="3600",
    )
    try:
        wait_for(lambda: finished_runs(state_url), 60, "the first cycle")
        served = requests.get(f"http://127.0.0.1:{port}/report", timeout=30)
        assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200
    finally:
        stop(proc)
    assert served.status_code == 200 and served.headers["Content-Type"] == "text/html; charset=utf-8"
    refs = _Refs()
    refs.feed(served.text)
    assert [r for r in refs.refs if r[0] != "meta"] == []
    start = served.text.index('<script type="application/json" id="report-data">')
    figures = json.loads(
        served.text[served.text.index(">", start) + 1 : served.text.index("</script>", start)]
    )
    printed = _cli({**crms.env, "HANDOFF_CONFIG": str(cfg)}, "report", "--json", "--config", str(cfg))
    assert printed.returncode == 0, printed.stderr
    expected = json.loads(printed.stdout)
    moving = ("as_of", "state", "nurture")  # the time of the read; the URL is not shown by the worker
    assert {k: v for k, v in figures.items() if k not in moving} == {
        k: v for k, v in expected.items() if k not in moving
    }
    assert figures["payoff"]["handed_off"]["people"] == 2 and figures["handoffs_per_rep"] == {
        "dana@northwind.example": 2
    }
