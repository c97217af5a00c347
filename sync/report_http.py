"""``/report`` next to the worker's ``/metrics`` and ``/healthz``: the report page, built
from the state on each request (``sync.report.report_page``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import structlog

from sync.metrics import HealthFn, Metrics, MetricsServer

log = structlog.get_logger("handoff.report")


class ReportServer(MetricsServer):
    """The metrics server, plus ``/report`` (one self-contained HTML page)."""

    def __init__(
        self, page: Callable[[], str], metrics: Metrics, health: HealthFn, host: str, port: int
    ) -> None:
        self._page = page
        super().__init__(metrics, health, host, port)

    def _app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") != "/report":
            return super()._app(environ, start_response)
        try:
            body = self._page().encode("utf-8")
        except Exception as exc:  # the state unreachable, say: the worker and /metrics go on
            log.error("report_failed", error=type(exc).__name__)
            start_response("500 Internal Server Error", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"the report page could not be built: see the worker's log\n"]
        start_response(
            "200 OK",
            [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]
