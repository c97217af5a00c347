"""One failed Composite subrequest in an incremental pass, through the real CLI: the other
subrequests' records are all processed and the failed one is read again, not lost."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.salesforce.sandbox import SalesforceSandbox, SalesforceStore
from tests.integration.conftest import mapping_dir, rep
from tests.integration.test_connectors_at_depth import sf_user, sync

pytestmark = pytest.mark.integration


@pytest.fixture
def salesforce(tmp_path: Path) -> Iterator[tuple[SalesforceSandbox, SalesforceStore, dict[str, str]]]:
    store = SalesforceStore()
    box = SalesforceSandbox(store)
    box.start()
    env = {
        "SALESFORCE_INSTANCE_URL": box.instance_url or "",
        "SALESFORCE_ACCESS_TOKEN": box.token,
        "SALESFORCE_CA_BUNDLE": box.ca_bundle or "",
        "SALESFORCE_WINDOW_LAG_SECONDS": "0",
        "HANDOFF_STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "HANDOFF_LOOKBACK_SECONDS": "10",  # SystemModstamp has whole seconds
    }
    yield box, store, env
    box.stop()


def mirror(db: Path) -> set[str]:
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        ids = {r[0] for r in conn.execute(sa.text("SELECT id FROM people WHERE crm = 'salesforce'"))}
    engine.dispose()
    return ids


@pytest.mark.parametrize("failing", ["FROM+Contact+WHERE", "/sobjects/Lead/deleted/"])
def test_one_failed_subrequest_loses_nothing_of_any_phase(salesforce, monkeypatch, tmp_path, failing):
    box, store, env = salesforce
    cfg = mapping_dir(tmp_path, reps=[rep("dana@northwind.example", "salesforce")])
    sf_user(store, "dana@northwind.example")
    old = [store.insert("Lead", {"LastName": f"Old{i}", "Company": "Acme"}) for i in range(3)]
    code, first = sync(monkeypatch, env, cfg)
    assert code == 0, first["errors"]
    assert set(old) <= mirror(tmp_path / "state.db")

    new_leads = {store.insert("Lead", {"LastName": f"New{i}", "Company": "Acme"}) for i in range(3)}
    new_contacts = {store.insert("Contact", {"LastName": f"C{i}"}) for i in range(2)}
    store.delete("Lead", old[0], at=datetime.now(UTC) - timedelta(seconds=90))  # only getDeleted says so
    box.faults.merge({"subrequest_error_next": 1, "subrequest_error_match": failing})

    code, second = sync(monkeypatch, env, cfg)
    assert code == 0, second["errors"]
    assert box.faults.subrequest_error_next == 0 and box.calls["POST /composite"] >= 1
    held = mirror(tmp_path / "state.db")
    assert new_leads | new_contacts | set(old[1:]) <= held
    assert old[0] not in held

    code, third = sync(monkeypatch, env, cfg)  # and the next pass finds nothing amiss
    assert code == 0 and third["errors"] == [] and mirror(tmp_path / "state.db") == held
