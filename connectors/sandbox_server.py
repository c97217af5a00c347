"""Run a WSGI sandbox emulator as a real HTTP(S) server on loopback.

Shared by the HubSpot and Salesforce sandboxes. Werkzeug's threaded server does the
HTTP; this module only starts it on a background thread and, for TLS, makes a local
certificate authority with ``trustme`` so clients can verify the sandbox like a real host.
"""

from __future__ import annotations

import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

WsgiApp = Callable[..., Any]


@dataclass
class RunningServer:
    """A sandbox server running on a background thread."""

    server: BaseWSGIServer
    thread: threading.Thread
    url: str
    ca_bundle: str | None = None
    _tmp: Any = field(default=None, repr=False)

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        if self._tmp is not None:
            self._tmp.cleanup()


def _tls_context(host: str) -> tuple[ssl.SSLContext, str, Any]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert(host, "localhost", "127.0.0.1")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    tmp = tempfile.TemporaryDirectory(prefix="handoff-sandbox-ca-")
    bundle = Path(tmp.name) / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    return ctx, str(bundle), tmp


def serve(app: WsgiApp, host: str = "127.0.0.1", port: int = 0, tls: bool = False) -> RunningServer:
    """Serve ``app`` on ``host:port`` (0 = any free port) until ``stop()`` is called."""
    ssl_ctx = bundle = tmp = None
    if tls:
        ssl_ctx, bundle, tmp = _tls_context(host)
    server = make_server(host, port, app, threaded=True, ssl_context=ssl_ctx)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="sandbox-http", daemon=True
    )
    thread.start()
    scheme = "https" if tls else "http"
    url = f"{scheme}://{host}:{server.server_port}"
    return RunningServer(server=server, thread=thread, url=url, ca_bundle=bundle, _tmp=tmp)
