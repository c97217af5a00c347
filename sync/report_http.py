"""``/report`` next to the worker's ``/metrics`` and ``/healthz``: the report page, built
from the state on each request (``sync.report.report_page``); and, when webhooks are on,
``POST /webhooks/hubspot``: HubSpot's deliveries, verified and stored (``sync.webhooks``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import structlog

from sync.metrics import HealthFn, Metrics, MetricsServer
from sync.webhooks import PATH as WEBHOOK_PATH
from sync.webhooks import Receiver

log = structlog.get_logger("handoff.report")


class ReportServer(MetricsServer):
    """The metrics server, plus ``/report`` (one self-contained HTML page) and, with a
    ``receiver``, the webhook deliveries."""

    def __init__(
        self,
        page: Callable[[], str],
        metrics: Metrics,
        health: HealthFn,
        host: str,
        port: int,
        receiver: Receiver | None = None,
    ) -> None:
        self._page = page
        self._receiver = receiver
        super().__init__(metrics, health, host, port)

    def _app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if self._receiver is not None and environ.get("PATH_INFO", "") == WEBHOOK_PATH:
            answer = self._receiver.wsgi(environ)
            body = answer.payload()
            start_response(
                answer.status_line,
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
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
