"""Run the real ``handoff`` CLI as a child process and measure it (wall time, peak RSS)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
_CLEAR = ("HUBSPOT_", "SALESFORCE_", "HANDOFF_", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@dataclass
class ChildRun:
    """One CLI run: exit code, wall seconds, CPU seconds, peak RSS, parsed summary."""

    exit_code: int
    wall: float
    cpu: float
    max_rss_mb: float
    summary: dict[str, Any]
    stderr_tail: str


def child_env(settings: dict[str, str]) -> dict[str, str]:
    """This process's environment without crm-handoff settings, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLEAR)}
    return env | {"HANDOFF_LOG_LEVEL": "warning", "PYTHONUNBUFFERED": "1"} | settings


def run_cli(args: list[str], env: dict[str, str], timeout: float) -> ChildRun:
    """Run ``python -m sync.cli ARGS``; ``os.wait4`` gives this child's own max RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "sync.cli", *args], env=env, cwd=REPO, stdout=out, stderr=err
        )
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        wall = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text, errors = out.read().decode(), err.read().decode(errors="replace")
    try:
        summary = json.loads(text) if text.strip() else {}
    except ValueError:
        summary = {}
    return ChildRun(
        exit_code=proc.returncode,
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        max_rss_mb=usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024),
        summary=summary,
        stderr_tail=errors[-2000:],
    )
