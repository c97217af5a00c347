"""`handoff sandbox serve` prints the settings `handoff sync` reads; a sync against it works."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys


def test_sandbox_serve_prints_settings_that_handoff_sync_uses(tmp_path):
    serve = subprocess.Popen(
        [sys.executable, "-m", "sync.cli", "sandbox", "serve", "--dir", str(tmp_path / "box")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HANDOFF_LOG_LEVEL": "warning"},
    )
    try:
        assert serve.stdout is not None
        settings = dict(serve.stdout.readline().strip().split("=", 1) for _ in range(5))
        assert set(settings) == {
            "HUBSPOT_BASE_URL",
            "HUBSPOT_ACCESS_TOKEN",
            "SALESFORCE_INSTANCE_URL",
            "SALESFORCE_ACCESS_TOKEN",
            "SALESFORCE_CA_BUNDLE",
        }
        assert settings["SALESFORCE_INSTANCE_URL"].startswith("https://127.0.0.1:")
        run = subprocess.run(
            [sys.executable, "-m", "sync.cli", "sync", "--once", "--json"],
            capture_output=True,
            text=True,
            timeout=180,
            env={
                **os.environ,
                **settings,
                "HANDOFF_STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
                "HANDOFF_LOG_LEVEL": "warning",
            },
        )
        assert run.returncode == 0, run.stderr
        summary = json.loads(run.stdout)
        assert summary["people_pulled"]["hubspot"] > 100 and summary["handed_off"] > 0
    finally:
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=30) == 0
    assert (tmp_path / "box" / "hubspot.json").exists()  # data kept for the next start
