"""`handoff demo` as a user runs it: the story, then nothing handed off twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def _demo(tmp_path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sync.cli", "demo", "--dir", str(tmp_path / "demo"), *extra],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HANDOFF_LOG_LEVEL": "warning"},
    )


def test_demo_tells_the_story_and_reruns_idempotently(tmp_path):
    first = _demo(tmp_path, "--json")
    assert first.returncode == 0, first.stderr
    s = json.loads(first.stdout)
    capacity = sum(c["capacity"] for c in s["capacity_per_rep"].values())
    assert s["qualified"] > capacity  # more sales-ready leads than the reps can take
    assert 0 < s["handed_off"] <= capacity
    assert s["kept_in_nurture"] > 0
    assert all(c["left"] >= 0 for c in s["capacity_per_rep"].values())
    assert s["tasks_created"]["salesforce"] > 0 and s["tasks_created"]["hubspot"] > 0
    assert s["people_pulled"]["hubspot"] > 100 and s["people_pulled"]["salesforce"] > 50
    assert s["errors"] == []

    act = s["act_two"]  # next week on the demo clock: what the reps did came back
    story, later = act["story"], act["summary"]
    assert later["errors"] == []
    assert later["follow_up"]["worked"] == story["completed"] and later["follow_up"]["rejected"] == 1
    assert later["follow_up"]["reassigned"] == 1  # the ignored one, after its missed SLA
    view = story["rejected_in_hubspot"]
    assert (
        view["crm_handoff_status"] == "back in nurture" and view["crm_handoff_outcome_reason"] == "Not a fit"
    )
    ((_, before, after),) = story["reassigned"]
    assert before != after

    second = _demo(tmp_path)
    assert second.returncode == 0, second.stderr
    assert "tasks created: hubspot 0, salesforce 0" in second.stdout
    assert "nothing new is handed off twice" in second.stdout
