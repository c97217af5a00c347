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


class _HighWater:
    """The child's own peak RSS: ``VmHWM`` of /proc/PID/status, read every 50 ms.

    ``ru_maxrss`` from ``os.wait4`` is not the child's own on Linux: a process keeps its
    ``maxrss`` across ``exec``, and the spawned child starts as a copy of (or, with
    vfork, as) this process, whose sandboxes hold every seeded person (~300 MB at 100k).
    ``VmHWM`` belongs to the address space ``exec`` created. Elsewhere (no /proc) the
    ``ru_maxrss`` figure is used, with that caveat.
    """

    def __init__(self, pid: int) -> None:
        self.path = Path(f"/proc/{pid}/status")
        self.mb: float | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        if self.path.exists():
            self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            self._read()
            self._done.wait(0.05)

    def _read(self) -> None:
        try:
            text = self.path.read_text()
        except OSError:
            return
        for line in text.splitlines():
            if line.startswith("VmHWM:"):
                mb = int(line.split()[1]) / 1024
                self.mb = mb if self.mb is None else max(self.mb, mb)

    def stop(self) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()


def run_cli(args: list[str], env: dict[str, str], timeout: float) -> ChildRun:
    """Run ``python -m sync.cli ARGS``; its peak RSS is sampled from /proc (``_HighWater``)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "sync.cli", *args], env=env, cwd=REPO, stdout=out, stderr=err
        )
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        peak = _HighWater(proc.pid)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
            peak.stop()
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
        max_rss_mb=peak.mb
        if peak.mb is not None
        else usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024),
        summary=summary,
        stderr_tail=errors[-2000:],
    )
