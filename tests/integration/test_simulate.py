"""``handoff simulate --config NEW`` through the real CLI, on the state a real cycle against
both sandboxes left: it lists exactly the handoffs the next real cycle under NEW then
makes, and it changes nothing in the state or the CRMs (no request reaches a sandbox)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, inspect, select, text
from sqlalchemy.engine import make_url

from tests.integration.conftest import (
    FIT,
    Crms,
    add_lead,
    add_ready_contact,
    add_rep_users,
    mapping_dir,
    rep,
    run_cli,
    sync_json,
)

DANA = "dana@northwind.example"
BEN = "ben@northwind.example"


def fit_contact(crms: Crms, i: int, **props: str) -> str:
    """A HubSpot contact with fit alone (45 points): sales-ready only from threshold 45 down."""
    values = {"email": f"fit{i}@fitco{i}.example", "firstname": f"Fay{i}", "lastname": f"Fit{i}", **FIT}
    return crms.hs_store.add_contact({**values, **props})


def state_fingerprint(url: str) -> dict[str, Any]:
    """Every table's row count and content digest, and the SQLite file's bytes."""
    engine = create_engine(url)
    out: dict[str, Any] = {}
    try:
        with engine.connect() as conn:
            for table in sorted(inspect(engine).get_table_names()):
                rows = conn.execute(text(f'SELECT * FROM "{table}"')).all()
                digest = hashlib.sha256(repr(sorted(map(repr, rows))).encode()).hexdigest()
                out[table] = (len(rows), digest)
            out["_runs"] = conn.execute(select(func.count()).select_from(text("runs"))).scalar_one()
    finally:
        engine.dispose()
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        out["_file"] = hashlib.sha256(path.read_bytes()).hexdigest()
        out["_wal"] = [p.name for p in path.parent.glob(path.name + "-*") if p.stat().st_size]
    return out


def simulate_json(crms: Crms, monkeypatch, *argv: str) -> dict[str, Any]:
    code, out, err = run_cli(crms, monkeypatch, "simulate", "--json", *argv)
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


def test_simulate_lists_exactly_the_extra_handoffs_the_next_cycle_makes_and_writes_nothing(
    crms, monkeypatch, tmp_path, state_url
):
    reps = [rep(DANA, "hubspot"), rep(BEN, "hubspot")]
    current = mapping_dir(tmp_path / "current", reps=reps)
    add_rep_users(crms, DANA)
    add_rep_users(crms, BEN)
    add_ready_contact(crms, 1)  # 65 points: handed off by the first cycle
    fits = [fit_contact(crms, i) for i in range(2, 5)]  # 45 points each
    crms.hs_store.add_contact(  # 35 points: sales-ready under neither
        {"email": "mgr@small.example", "firstname": "Max", "lastname": "Mgr", **FIT, "jobtitle": "Manager"}
    )
    lead = add_lead(crms, 7)  # a Salesforce lead with fit alone: 45 points
    code, first = sync_json(crms, monkeypatch, current)
    assert code == 0, first["errors"]
    assert first["handed_off"] == 1

    new = mapping_dir(tmp_path / "new", reps=reps, sales_ready={"threshold": 45})
    before = state_fingerprint(state_url)
    crms.hs.calls.clear()
    crms.sf.calls.clear()
    monkeypatch.setenv("HANDOFF_CONFIG", str(current))  # the current mapping, as sync uses it
    data = simulate_json(crms, monkeypatch, "--config", str(new))

    assert dict(crms.hs.calls) == {} and dict(crms.sf.calls) == {}  # no CRM request at all
    assert state_fingerprint(state_url) == before  # the state is byte for byte the same
    assert data["crm_calls"] == 0 and data["last_cycle"] == first["at"]
    assert data["current"]["threshold"] == 60 and data["new"]["threshold"] == 45
    assert data["current"]["handed_off"] == 0  # the first cycle handed off everyone ready
    extra = {p["person_key"] for p in data["only_new"]["people"]}
    assert data["only_new"]["count"] == len(extra) == 4
    assert data["only_current"] == {"count": 0, "people": []}
    for p in data["only_new"]["people"]:
        assert p["score"] == 45 and p["definitions"] == ["Score reaches the threshold"]
        assert p["under_current"].startswith("not sales-ready (score 45 of 60): ")
        assert p["rep"] in (DANA, BEN)
    names = {p["name"] for p in data["only_new"]["people"]}
    assert names == {"Fay2 Fit2", "Fay3 Fit3", "Fay4 Fit4", "Lee7 Buyer7"}
    per_rep = data["per_rep"]
    assert sum(n["new"] for n in per_rep.values()) == 4 and sum(n["current"] for n in per_rep.values()) == 0
    assert data["new"]["kept_in_nurture"] == 0 and data["new"]["sales_ready"] == 4

    code, second = sync_json(crms, monkeypatch, new)
    assert code == 0, second["errors"]
    made = {h["person_key"] for h in second["plan"]}
    assert made == extra  # exactly the handoffs simulate listed
    assert {h["person_key"]: h["rep"] for h in second["plan"]} == {
        p["person_key"]: p["rep"] for p in data["only_new"]["people"]
    }
    assert len(fits) == 3 and lead


def test_a_raised_threshold_shows_who_is_handed_off_only_today_and_the_nurture_sizes_offline(
    crms, monkeypatch, tmp_path
):
    one = mapping_dir(tmp_path / "one", reps=[rep(DANA, "hubspot", minutes=20)])  # 1 lead a week
    add_rep_users(crms, DANA)
    add_ready_contact(crms, 1, extra_events=1)  # 85 points
    add_ready_contact(crms, 2)  # 65
    add_ready_contact(crms, 3)  # 65
    code, first = sync_json(crms, monkeypatch, one)
    assert code == 0 and first["handed_off"] == 1 and first["kept_in_nurture"] == 2
    two = mapping_dir(tmp_path / "two", reps=[rep(DANA, "hubspot", minutes=40)])  # 2 a week
    stricter = mapping_dir(
        tmp_path / "stricter", reps=[rep(DANA, "hubspot", minutes=40)], sales_ready={"threshold": 70}
    )

    for key, value in crms.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("HUBSPOT_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("SALESFORCE_INSTANCE_URL", "https://127.0.0.1:9")
    argv = ["simulate", "--config", str(stricter), "--current", str(two)]
    code, out, err = cli(*argv, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["current"]["handed_off"] == 1 and data["new"]["handed_off"] == 0
    assert data["current"]["kept_in_nurture"] == 1 and data["new"]["kept_in_nurture"] == 0
    assert data["current"]["nurture_reasons"] == {"rep capacity: every eligible rep is at weekly capacity": 1}
    assert data["new"]["capacity_per_rep"][DANA] == {
        "capacity": 2,
        "used_before": 1,
        "outside_work": 0,
        "assigned": 0,
        "left": 1,
    }
    assert data["only_new"]["count"] == 0
    [kept] = data["only_current"]["people"]
    assert kept["name"] in ("Lee2 Buyer2", "Lee3 Buyer3") and kept["rep"] == DANA and kept["score"] == 65
    assert kept["under_new"].startswith("not sales-ready (score 65 of 70): ")
    assert data["per_rep"] == {DANA: {"current": 1, "new": 0}}

    code, text_out, err = cli(*argv)
    assert code == 0, err
    assert "no CRM called, nothing written" in text_out
    assert f"  {DANA:40}{1:>10}{0:>10}{-1:>+10}   0/1" in text_out
    assert "handed off only under the current mapping: 1" in text_out
    assert f"({kept['person_key']}) -> {DANA}: score 65" in text_out


def test_simulate_without_a_state_is_a_one_line_error(crms, monkeypatch, tmp_path):
    cfg = mapping_dir(tmp_path)
    code, out, err = run_cli(crms, monkeypatch, "simulate", "--config", str(cfg))
    assert code == 2 and out == ""
    assert err.startswith("error: HANDOFF_STATE_URL: no crm-") and err.count("\n") == 1


def cli(*argv: str) -> tuple[int, str, str]:
    """``handoff`` in-process with the environment as set."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from sync.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_a_broken_new_mapping_is_one_line_naming_the_file_and_nothing_is_read(crms, monkeypatch, tmp_path):
    cfg = mapping_dir(tmp_path / "current", reps=[rep(DANA, "hubspot")])
    add_rep_users(crms, DANA)
    code, _ = sync_json(crms, monkeypatch, cfg)
    broken = mapping_dir(tmp_path / "broken", reps=[rep(DANA, "hubspot")])
    path = broken / "sales_ready.yaml"
    path.write_text(path.read_text().replace("threshold: 60", "threshold: sixty"))
    crms.hs.calls.clear()
    code, out, err = run_cli(crms, monkeypatch, "simulate", "--config", str(broken), "--current", str(cfg))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("error: ") and "sales_ready.yaml:" in err and "threshold" in err
    assert dict(crms.hs.calls) == {}
