"""The console script refuses to start when a generic package name is someone else's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from crm_handoff.launch import clashes

ROOT = Path(__file__).resolve().parents[1]


def test_this_install_has_no_clash():
    assert clashes() == []


def test_a_shadowing_mappings_package_is_refused_in_one_line(tmp_path):
    other = tmp_path / "site" / "mappings"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text('"""someone else\'s mappings"""\n')
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'site'}{os.pathsep}{ROOT}"}
    proc = subprocess.run(
        [sys.executable, "-m", "crm_handoff.launch", "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "shadows crm-handoff's mappings" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_launcher_runs_the_cli():
    proc = subprocess.run(
        [sys.executable, "-m", "crm_handoff.launch", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "handoff" in proc.stdout
