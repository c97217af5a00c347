"""The ``handoff`` command line.

Exit codes (``crm_handoff.errors``, the README's table): 0 ok; 1 some records failed (recorded in
the state, see ``handoff status``) or a CRM refused; 2 usage or configuration error; 75 a
service (the state database, a CRM host) did not answer. Every command's failure is
classified in ``main`` and printed as one line per problem: never a traceback for these.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from crm_handoff.clock import shifted, utc_now
from crm_handoff.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    ConfigError,
    HandoffError,
    QuotaExhausted,
    RetriableCrmError,
    UsageError,
    exit_code,
)
from mappings.loader import load_mappings
from mappings.models import MappingSet
from sync import logs
from sync.settings import SECRETS, Settings, load_settings


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="handoff", description="Hand sales-ready leads to reps in HubSpot and Salesforce.")
    p.add_argument("--version", action="version", version="crm-handoff 0.1.0")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    cfg: dict[str, Any] = {
        "metavar": "PATH",
        "help": "mapping directory or combined YAML file (default: HANDOFF_CONFIG or the shipped mappings)",
    }

    demo = sub.add_parser("demo", help="run a full cycle on the embedded sandboxes and SQLite")
    demo.add_argument(
        "--dir", default=".handoff-demo", help="where the demo keeps its data (default .handoff-demo)"
    )
    demo.add_argument("--reset", action="store_true", help="start again from freshly seeded sandboxes")
    demo.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    demo.add_argument("--config", **cfg)

    sandbox = sub.add_parser("sandbox", help="the embedded HubSpot and Salesforce sandboxes")
    ssub = sandbox.add_subparsers(dest="sandbox_command", required=True, parser_class=_Parser)
    serve = ssub.add_parser("serve", help="serve both sandboxes until stopped; prints connection settings")
    serve.add_argument("--dir", default=".handoff-sandbox", help="where the sandbox data is kept")
    serve.add_argument("--hubspot-port", type=int, default=0)
    serve.add_argument("--salesforce-port", type=int, default=0)
    serve.add_argument(
        "--empty", action="store_true", help="start with no demo people (only the mapping's reps)"
    )
    serve.add_argument("--config", **cfg)

    sync = sub.add_parser("sync", help="run a sync cycle")
    sync.add_argument("--once", action="store_true", help="run one cycle and exit")
    sync.add_argument(
        "--dry-run", action="store_true", help="print the plan; write nothing to the CRMs or the state"
    )
    sync.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    sync.add_argument(
        "--as-of",
        metavar="ISO",
        help="run the cycle on a clock that reads ISO at its start (replays, tests, the benchmark)",
    )
    sync.add_argument("--config", **cfg)

    validate = sub.add_parser(
        "validate",
        help="check the mapping files (and, where CRM settings are present, against the live CRMs)",
    )
    validate.add_argument("--config", **cfg)
    validate.add_argument(
        "--offline", action="store_true", help="check the files only, even with CRM settings"
    )

    status = sub.add_parser("status", help="recent runs, the nurture queue, failed records")
    status.add_argument("--json", action="store_true")

    report = sub.add_parser("report", help="stage counts and conversion between stages")
    report.add_argument("--json", action="store_true")
    report.add_argument("--html", metavar="FILE", help="write the report page (one self-contained HTML file)")
    report.add_argument("--as-of", metavar="ISO", help="the time the report is as of (nurture ages)")
    report.add_argument("--config", **cfg)

    install = sub.add_parser("install", help="create the custom fields crm-handoff needs in the CRMs")
    install.add_argument("--json", action="store_true")
    install.add_argument("--config", **cfg)

    run = sub.add_parser("run", help="the long-running worker: scheduled cycles, leases, /metrics")
    run.add_argument("--config", **cfg)

    db = sub.add_parser("db", help="the state database schema")
    dsub = db.add_subparsers(dest="db_command", required=True, parser_class=_Parser)
    dsub.add_parser("upgrade", help="apply pending migrations to HANDOFF_STATE_URL")
    dsub.add_parser("current", help="print the schema revision of HANDOFF_STATE_URL")

    explain = sub.add_parser(
        "explain", help="one person: profile, definitions, routing, handoffs (state only)"
    )
    explain.add_argument(
        "person", help="an email, a HubSpot or Salesforce id (hubspot:ID, salesforce:ID) or a person key"
    )
    explain.add_argument("--json", action="store_true")
    explain.add_argument(
        "--refresh", action="store_true", help="read the person's records from the CRMs first (reads only)"
    )
    explain.add_argument("--as-of", metavar="ISO", help="the time to explain as of (windows, capacity week)")
    explain.add_argument("--config", **cfg)

    simulate = sub.add_parser(
        "simulate", help="the plan changed mapping files would make, beside the current one (state only)"
    )
    simulate.add_argument(
        "--config", metavar="PATH", required=True, help="the changed mapping directory or file"
    )
    simulate.add_argument(
        "--current",
        metavar="PATH",
        help="the mapping to compare with (default: HANDOFF_CONFIG or the shipped mappings, as sync uses)",
    )
    simulate.add_argument("--json", action="store_true")
    simulate.add_argument("--as-of", metavar="ISO", help="the time to simulate at (windows, capacity week)")
    return p


def _mapping(args: argparse.Namespace, settings: Settings) -> MappingSet:
    return load_mappings(getattr(args, "config", None) or settings.handoff_config)


AS_OF_WARN = timedelta(minutes=10)  # --as-of further ahead than this, writing: say what it does


def _now(args: argparse.Namespace) -> datetime:
    raw = getattr(args, "as_of", None)
    if not raw:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--as-of: expected an ISO-8601 time, got {raw!r}") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _definitions_count(mapping: MappingSet) -> str:
    n = len(mapping.sales_ready.definitions)
    return f"{n} sales-ready definition{'s' if n > 1 else ''}, " if n else ""


def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    mapping = _mapping(args, settings)
    reps = mapping.reps.reps
    print(
        f"ok: {len(mapping.lifecycle.all_stages)} stages, {len(mapping.fields.fields)} field mappings, "
        f"{len(mapping.sales_ready.fit) + len(mapping.sales_ready.behaviour)} scoring rules "
        f"(threshold {mapping.sales_ready.threshold}), {_definitions_count(mapping)}{len(reps)} reps "
        f"(weekly capacity {sum(r.weekly_capacity for r in reps if r.active)})"
    )
    if args.offline or not (settings.hubspot_enabled or settings.salesforce_enabled):
        return EXIT_OK
    from sync.live import check_live

    config = getattr(args, "config", None) or settings.handoff_config
    checked, problems = check_live(settings, mapping, config)
    if problems:
        raise ConfigError(problems)
    print(f"ok: the mapping matches the live {' and '.join(checked)} account(s)")
    return EXIT_OK


def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    from sync.cycle import run_cycle_or_fail as run_cycle
    from sync.report import print_summary
    from sync.wiring import build_engine, open_state

    if not args.once:
        raise UsageError(
            "handoff sync: add --once to run one cycle (the long-running worker is `handoff run`)"
        )
    mapping = _mapping(args, settings)
    state = open_state(settings, read_only=args.dry_run)
    try:
        now = _now(args)  # with --as-of, the whole cycle (watermarks too) runs on a shifted clock
        if args.as_of and not args.dry_run and now - datetime.now(UTC) > AS_OF_WARN:
            print(
                f"warning: --as-of {now.isoformat()} is ahead of the clock: this state's watermarks move "
                "there, and a later cycle without --as-of reads only changes made after it",
                file=sys.stderr,
            )
        engine = build_engine(settings, mapping, state, shifted(now) if args.as_of else utc_now)
        engine.config_path = getattr(args, "config", None) or settings.handoff_config
        result = run_cycle(engine, now, dry_run=args.dry_run)
    finally:
        state.close()
    if args.json:
        print(json.dumps(result.summary.to_json(), default=str, sort_keys=True))
    else:
        print_summary(result.summary)
    return result.exit_code


def recorded_state(settings: Settings) -> str:
    """HANDOFF_STATE_URL as shown (password hidden), once it is known to hold crm-handoff's
    schema; else a ``ConfigError`` (exit 2). Reads only: an absent state is never created."""
    from sqlalchemy.engine import make_url

    from sync.wiring import _state_exists

    url = settings.handoff_state_url
    parsed = make_url(url)
    where = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite":
        why = _sqlite_state_problem(parsed.database)
        if parsed.database and parsed.database != ":memory:" and not Path(parsed.database).is_absolute():
            where += f" ({Path(parsed.database).resolve()})"
    else:
        why = None if _state_exists(url) else "the database has no crm-handoff tables"
    if why:
        raise ConfigError(
            f"HANDOFF_STATE_URL: no crm-handoff state at {where}: {why}; nothing was read or created "
            "(point HANDOFF_STATE_URL at the state `handoff sync` writes)"
        )
    return where


def _sqlite_state_problem(database: str | None) -> str | None:
    """Why a SQLite file is not a crm-handoff state (opened read-only), or None."""
    import sqlite3
    from contextlib import closing

    if not database or database == ":memory:":
        return "an in-memory database holds no state"
    path = Path(database)
    if not path.is_file():
        return "no such file"
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            found = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'"
            ).fetchone()
    except sqlite3.DatabaseError as exc:
        return f"not a SQLite database ({exc})"
    return None if found else "the file has no crm-handoff tables"


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from sync.report import print_status, status_data
    from sync.wiring import open_state

    where = recorded_state(settings)
    state = open_state(settings, read_only=True)
    try:
        data = {"state": where, **status_data(state)}
    finally:
        state.close()
    print(json.dumps(data, default=str, sort_keys=True) if args.json else "", end="")
    if not args.json:
        print_status(data)
    return EXIT_OK


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from sync.report import print_report, report_data
    from sync.wiring import open_state

    mapping = _mapping(args, settings)
    where = recorded_state(settings)
    state = open_state(settings, read_only=True)
    try:
        data = {"state": where, **report_data(state, mapping, _now(args))}
    finally:
        state.close()
    if args.html:
        from sync.report_html import render_page

        _write_page(Path(args.html), render_page(data))
    if args.json:
        print(json.dumps(data, default=str, sort_keys=True))
    elif not args.html:
        print_report(data)
    return EXIT_OK


def _write_page(path: Path, page: str) -> None:
    """Write the page whole or not at all (a temporary file beside it, then a rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"--html {path}: cannot write the report page: {exc.strerror or exc}") from None
    print(f"report page written to {path}", file=sys.stderr)


def cmd_install(args: argparse.Namespace, settings: Settings) -> int:
    from sync.install import install
    from sync.wiring import build_connectors

    mapping = load_mappings(getattr(args, "config", None) or settings.handoff_config)
    report = install(build_connectors(settings, mapping), mapping)
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        for crm, lines in report.items():
            for line in lines:
                print(f"{crm}: {line}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from sync.demo import run_demo

    return run_demo(Path(args.dir), reset=args.reset, as_json=args.json, config=args.config)


def cmd_sandbox(args: argparse.Namespace, settings: Settings) -> int:
    from sync.demo import serve_sandboxes

    config = getattr(args, "config", None) or settings.handoff_config
    return serve_sandboxes(
        Path(args.dir), args.hubspot_port, args.salesforce_port, seed=not args.empty, config=config
    )


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from sync.wiring import open_state
    from sync.worker import serve

    _mapping(args, settings)  # a broken mapping is exit 2 before anything starts
    state = open_state(settings)
    try:
        return serve(settings, state, args.config)
    finally:
        state.close()


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    from sync.migrations import current, head, upgrade
    from sync.state import StateStore
    from sync.wiring import _state_exists, state_error

    where = make_url(settings.handoff_state_url).render_as_string(hide_password=True)
    try:
        if args.db_command == "current" and not _state_exists(settings.handoff_state_url):
            print(f"{where}: empty (no schema yet; head is {head()})")
            return EXIT_OK
        store = StateStore(settings.handoff_state_url)
        try:
            if args.db_command == "upgrade":
                before, after = upgrade(store.engine)
                change = (
                    f"upgraded {before or 'empty'} -> {after}" if before != after else f"already at {after}"
                )
                print(f"{where}: {change}")
            else:
                rev = current(store.engine)
                note = "up to date" if rev == head() else f"behind head {head()}: run `handoff db upgrade`"
                print(f"{where}: revision {rev or 'none, half-created'} ({note})")
        finally:
            store.close()
    except OperationalError as exc:
        error = state_error(exc, settings.handoff_state_url)
        if error is None:
            raise
        raise error from None
    return EXIT_OK


def cmd_explain(args: argparse.Namespace, settings: Settings) -> int:
    """One person as the state holds them, and why; no CRM call unless ``--refresh``
    (``sync.explain``); nothing is written."""
    from crm_handoff.errors import EXIT_PARTIAL
    from sync.explain import explain, print_explanation
    from sync.wiring import open_state

    mapping = _mapping(args, settings)
    state = open_state(settings, read_only=True)
    try:
        connectors = None
        if getattr(args, "refresh", False):
            from sync.wiring import build_connectors

            connectors = build_connectors(settings, mapping)
        found = explain(state, mapping, args.person, _now(args), connectors)
    finally:
        state.close()
    if not found:
        print(f"error: no person {args.person!r} in the state ({recorded_state(settings)})", file=sys.stderr)
        return EXIT_PARTIAL
    if args.json:
        print(json.dumps(found if len(found) > 1 else found[0], default=str, sort_keys=True))
    else:
        for i, data in enumerate(found):
            print("\n" if i else "", end="")
            print_explanation(data)
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    """The next cycle's plan under the changed mapping beside the current one; no CRM
    call, nothing written (``sync.simulate``)."""
    from sync.simulate import print_simulation, simulate
    from sync.wiring import open_state

    new = load_mappings(args.config)
    current_path = args.current or settings.handoff_config
    current = load_mappings(current_path)
    where = recorded_state(settings)
    crms = [
        c
        for c, on in (("hubspot", settings.hubspot_enabled), ("salesforce", settings.salesforce_enabled))
        if on
    ]
    state = open_state(settings, read_only=True)
    try:
        sides = [
            ("current", str(current_path or "the shipped mappings"), current),
            ("new", str(args.config), new),
        ]
        data = {"state": where, **simulate(state, sides, _now(args), crms)}
    finally:
        state.close()
    if args.json:
        print(json.dumps(data, default=str, sort_keys=True))
    else:
        print_simulation(data)
    return EXIT_OK


COMMANDS = {
    "validate": cmd_validate,
    "sync": cmd_sync,
    "status": cmd_status,
    "report": cmd_report,
    "install": cmd_install,
    "demo": cmd_demo,
    "sandbox": cmd_sandbox,
    "run": cmd_run,
    "db": cmd_db,
    "explain": cmd_explain,
    "simulate": cmd_simulate,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``handoff`` console script."""
    settings: Settings | None = None
    try:
        args = _parser().parse_args(argv)
        settings = load_settings()
        logs.configure(settings.handoff_log_format, settings.handoff_log_level, _secrets(settings))
        return COMMANDS[args.command](args, settings)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        error = classify_failure(exc, settings)
        if error is None:
            raise  # not a user mistake nor the environment: a bug, shown in full
        return _report(error, settings)


def classify_failure(exc: BaseException, settings: Settings | None) -> HandoffError | None:
    """The one place every command's failure is classified: crm-handoff's own errors as they
    are, a state-database failure as a ``ConfigError`` or ``StateUnavailable``; None: a bug."""
    if isinstance(exc, HandoffError):
        return exc
    from sync.wiring import state_error

    return state_error(exc, settings.handoff_state_url if settings else "")


def _report(error: HandoffError, settings: Settings | None) -> int:
    """Print ``error`` (one line per problem, secrets hidden) and return its exit code."""
    code = exit_code(error)
    lines = error.problems if isinstance(error, ConfigError) else [str(error)]
    hidden = _secrets(settings) if settings else []
    for raw in lines or ["invalid configuration"]:
        line = " ".join(str(raw).split())
        for secret in hidden:
            line = line.replace(secret, "***")
        if isinstance(error, QuotaExhausted):
            line = f"stopped: {line}; the next run continues where this one stopped"
        elif isinstance(error, RetriableCrmError):
            line = f"error: {line} (still failing after retries; nothing was lost: run again later)"
        else:
            line = f"error: {line}"
        print(line, file=sys.stderr)
    return code


def _secrets(settings: Settings) -> list[str]:
    """Every secret value the settings hold (tokens, keys, the state database's password)."""
    values = [
        v.get_secret_value()
        for v in (getattr(settings, name.lower(), None) for name in SECRETS)
        if isinstance(v, SecretStr) and v.get_secret_value()
    ]
    try:
        from sqlalchemy.engine import make_url

        password = make_url(settings.handoff_state_url).password
    except Exception:  # a URL that does not parse holds no password to hide
        password = None
    return [*values, *([str(password)] if password else [])]


if __name__ == "__main__":
    sys.exit(main())
