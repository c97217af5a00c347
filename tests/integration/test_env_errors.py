"""Settings and environment failures, through the real CLI as a subprocess, from every command.

Each is classified the same way whatever the command: exactly one line on stderr naming the
setting, the documented exit code (2: the user's to fix; 75: a service did not answer), no
traceback, no secret - and quickly: a final failure is not retried, a silent host is given
up within its budget (a few request timeouts).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import certifi
import pytest

from connectors.hubspot.sandbox import HubSpotSandbox, HubSpotStore
from connectors.salesforce.sandbox import SalesforceSandbox, SalesforceStore
from sync.cli import main
from tests.conftest import postgres_admin_url

pytestmark = pytest.mark.integration

PASSWORD = "pg-s3cret-pw"
BOUND = 25.0  # seconds: generous; a silent host with a 1 s timeout is given up in ~3-5 s


@dataclass
class Run:
    code: int
    err: str
    seconds: float

    @property
    def line(self) -> str:
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        return lines[0]


@dataclass
class Env:
    hubspot: dict[str, str]
    salesforce: dict[str, str]
    state_url: str
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]

    def _env(self, env: dict[str, str]) -> dict[str, str]:
        base = {
            k: v for k, v in os.environ.items() if not k.startswith(("HUBSPOT_", "SALESFORCE_", "HANDOFF_"))
        }
        return {**base, "HANDOFF_STATE_URL": self.state_url, "HANDOFF_METRICS_PORT": "0", **env}

    def run(self, argv: str, **env: str) -> Run:
        """``handoff ARGV`` as a subprocess: the real CLI, interpreter start included."""
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "sync.cli", *argv.split()],
            env=self._env(env),
            capture_output=True,
            text=True,
            timeout=120,
        )
        return self._checked(Run(done.returncode, done.stderr, time.monotonic() - started), done.stdout)

    def call(self, argv: str, **env: str) -> Run:
        """``handoff ARGV`` in this process (``main``): the same classification, faster."""
        full = self._env(env)
        for name in list(os.environ):
            self.monkeypatch.delenv(name)
        for name, value in full.items():
            self.monkeypatch.setenv(name, value)
        self.capsys.readouterr()
        started = time.monotonic()
        code = main(argv.split())
        out, err = self.capsys.readouterr()
        return self._checked(Run(code, err, time.monotonic() - started), out)

    def _checked(self, run: Run, out: str) -> Run:
        assert "Traceback" not in run.err + out, run.err
        assert PASSWORD not in run.err + out
        for secret in (self.hubspot["HUBSPOT_ACCESS_TOKEN"], self.salesforce["SALESFORCE_ACCESS_TOKEN"]):
            assert secret not in run.err + out
        return run


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[tuple[HubSpotSandbox, SalesforceSandbox]]:
    hs, sf = HubSpotSandbox(HubSpotStore()), SalesforceSandbox(SalesforceStore())
    hs.start()
    sf.start()
    yield hs, sf
    hs.stop()
    sf.stop()


@pytest.fixture
def env(
    sandboxes: tuple[HubSpotSandbox, SalesforceSandbox],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Env:
    hs, sf = sandboxes
    assert sf.instance_url and sf.ca_bundle
    return Env(
        hubspot={"HUBSPOT_BASE_URL": hs.base_url, "HUBSPOT_ACCESS_TOKEN": hs.token},
        salesforce={
            "SALESFORCE_INSTANCE_URL": sf.instance_url,
            "SALESFORCE_ACCESS_TOKEN": sf.token,
            "SALESFORCE_CA_BUNDLE": sf.ca_bundle,
        },
        state_url=f"sqlite:///{tmp_path / 'state.db'}",
        monkeypatch=monkeypatch,
        capsys=capsys,
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback socket that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield int(s.getsockname()[1])


STATE_COMMANDS = ["status", "report", "sync --once", "run", "db current", "db upgrade"]
CRM_COMMANDS = ["sync --once", "validate", "install"]
EVERY_COMMAND = [
    "status",
    "report",
    "sync --once",
    "validate",
    "install",
    "run",
    "db current",
    "demo --dir D",
]


def _each(env: Env, commands: list[str], tmp_path: Path, **settings: str) -> list[tuple[str, Run]]:
    """The first command as a subprocess, every one of them in this process."""
    argvs = [c.replace("D", str(tmp_path / "demo")) for c in commands]
    return [(argvs[0], env.run(argvs[0], **settings))] + [(a, env.call(a, **settings)) for a in argvs]


# --- the state database -------------------------------------------------------------


def test_a_state_database_that_is_down_is_one_line_exit_75_from_every_command(env, tmp_path):
    url = f"postgresql+psycopg://handoff:{PASSWORD}@127.0.0.1:{_closed_port()}/handoff"
    for argv, run in _each(env, STATE_COMMANDS, tmp_path, HANDOFF_STATE_URL=url):
        assert run.code == 75, (argv, run.err)
        assert run.line.startswith(
            "error: HANDOFF_STATE_URL: cannot use the state database postgresql+psycopg://"
        )
        assert "handoff:***@127.0.0.1" in run.line and "Connection refused" in run.line
        assert run.seconds < BOUND


def test_state_database_credentials_it_refuses_are_the_users_exit_2(env, tmp_path):
    admin = postgres_admin_url()
    assert admin is not None
    url = admin.set(password=PASSWORD).render_as_string(hide_password=False)
    for argv, run in _each(env, ["status", "db upgrade"], tmp_path, HANDOFF_STATE_URL=url):
        assert run.code == 2, (argv, run.err)
        assert run.line.startswith("error: HANDOFF_STATE_URL: cannot use the state database")
        assert "password authentication failed" in run.line


def test_a_state_url_of_an_unknown_dialect_is_one_line_exit_2_from_every_command(env, tmp_path):
    for argv, run in _each(env, EVERY_COMMAND, tmp_path, HANDOFF_STATE_URL=f"foo://u:{PASSWORD}@bar/db"):
        assert run.code == 2, (argv, run.err)
        assert run.line == (
            "error: setting HANDOFF_STATE_URL: unknown database dialect 'foo'; expected sqlite or postgresql+psycopg"
        )


# --- settings -------------------------------------------------------------------------


def test_an_unknown_activity_kind_in_event_kinds_is_one_line_exit_2_from_every_command(env, tmp_path):
    kinds = {**env.hubspot, "HUBSPOT_EVENT_KINDS": '{"e_visited_page": "page_visit"}'}
    for argv, run in _each(env, ["sync --once", *EVERY_COMMAND], tmp_path, **kinds):
        assert run.code == 2, (argv, run.err)
        assert run.line.startswith(
            "error: setting HUBSPOT_EVENT_KINDS: e_visited_page: unknown activity kind 'page_visit'"
        )


def test_a_base_url_that_is_not_a_url_fails_at_once_exit_2(env, tmp_path):
    for argv, run in _each(env, CRM_COMMANDS, tmp_path, **{**env.hubspot, "HUBSPOT_BASE_URL": "not a url"}):
        assert run.code == 2, (argv, run.err)
        assert run.line.startswith("error: setting HUBSPOT_BASE_URL: expected an http(s) URL")
        assert run.seconds < 10  # not retried


# --- the network ------------------------------------------------------------------------


def test_a_ca_bundle_that_does_not_trust_the_host_fails_at_once_exit_2(env, tmp_path):
    wrong = {**env.salesforce, "SALESFORCE_CA_BUNDLE": certifi.where()}  # real CAs, not the sandbox's
    for argv, run in _each(env, CRM_COMMANDS, tmp_path, **wrong):
        assert run.code == 2, (argv, run.err)
        assert run.line.startswith("error: salesforce: TLS verification of https://127.0.0.1:")
        assert f"SALESFORCE_CA_BUNDLE ({certifi.where()}) does not trust it" in run.line
        assert run.seconds < 10  # not retried


def test_without_a_ca_bundle_the_line_says_to_set_one(env):
    salesforce = {k: v for k, v in env.salesforce.items() if k != "SALESFORCE_CA_BUNDLE"}
    run = env.call("sync --once", **salesforce)
    assert run.code == 2 and "set SALESFORCE_CA_BUNDLE to the PEM bundle" in run.line
    assert run.seconds < 10


@pytest.mark.parametrize(
    ("crm", "argv", "how"),
    [("hubspot", "sync --once", "run"), ("salesforce", "install", "run"), ("hubspot", "validate", "call")],
)
def test_a_host_that_never_answers_is_given_up_within_its_budget_exit_75(env, silent_port, crm, argv, how):
    if crm == "hubspot":
        settings = {**env.hubspot, "HUBSPOT_BASE_URL": f"http://127.0.0.1:{silent_port}"}
        settings["HUBSPOT_TIMEOUT_SECONDS"] = "1"
        setting = "HUBSPOT_BASE_URL"
    else:
        settings = {**env.salesforce, "SALESFORCE_INSTANCE_URL": f"https://127.0.0.1:{silent_port}"}
        settings["SALESFORCE_TIMEOUT_SECONDS"] = "1"
        setting = "SALESFORCE_INSTANCE_URL"
    run = getattr(env, how)(argv, **settings)
    assert run.code == 75, run.err
    assert (
        run.line.startswith(f"error: {crm}: no answer from ")
        and f"127.0.0.1:{silent_port} ({setting})" in run.line
    )
    assert "last: timed out" in run.line and "giving up on it for this run" in run.line
    assert run.seconds < BOUND


def test_a_refused_connection_is_retried_a_few_times_then_one_line_exit_75(env):
    run = env.run("sync --once", **{**env.hubspot, "HUBSPOT_BASE_URL": f"http://127.0.0.1:{_closed_port()}"})
    assert run.code == 75
    assert "(HUBSPOT_BASE_URL)" in run.line and "last: connection refused" in run.line
    assert run.seconds < BOUND
