"""structlog set-up: console for people, JSON for machines; secrets redacted."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

from crm_handoff.secrets import SECRETS as _SECRETS
from crm_handoff.secrets import register_secret

__all__ = ["configure", "register_secret"]


def _scrub(value: Any) -> Any:
    """``value`` with every secret replaced, inside dicts, lists and tuples too."""
    if isinstance(value, str):
        for secret in sorted(_SECRETS, key=len, reverse=True):
            value = value.replace(secret, "***")
        return value
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v) for v in value]
    return value


def _redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if not _SECRETS:
        return event
    for key, value in event.items():
        event[key] = _scrub(value)
    return event


def configure(fmt: str = "console", level: str = "info", secrets: Iterable[str | None] = ()) -> None:
    """Configure structlog to write to stderr in ``fmt`` (console or json)."""
    for s in secrets:
        register_secret(s)
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
