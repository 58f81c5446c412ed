"""optuna-dashboard on the study storage, with the artifact store so trial files open there.

The app is optuna-dashboard's own WSGI application (``optuna_dashboard.wsgi``), served
by a threaded ``wsgiref`` server as its command line does, but one that can be shut
down from code (tests) and binds 127.0.0.1 unless told otherwise. Importing this
module is cheap; optuna-dashboard, Optuna and SQLAlchemy load when a server is made.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from socketserver import ThreadingMixIn
from typing import TextIO
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.simple_server import make_server as _make_wsgi_server

from trainer.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


class _ThreadedServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a browser's open connection must not keep the process alive


class _ThreadedServer6(_ThreadedServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """Requests go to the debug log, not one stderr line each."""

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class DashboardServer:
    """A bound dashboard server; :meth:`serve_forever` until :meth:`shutdown`."""

    def __init__(self, httpd: WSGIServer, host: str) -> None:
        self._httpd = httpd
        self.host = host
        self.port = int(httpd.server_address[1])

    @property
    def url(self) -> str:
        """Where a browser on this machine opens the dashboard (never carries a password)."""
        host = self.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/dashboard/"

    def serve_forever(self) -> None:
        self._httpd.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` (from another thread) and close the socket."""
        self._httpd.shutdown()
        self.close()

    def close(self) -> None:
        """Close the listening socket."""
        self._httpd.server_close()


def make_server(
    storage_url: str,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    artifact_dir: str | os.PathLike[str] | None = None,
) -> DashboardServer:
    """Open the storage and bind ``host:port`` (``port=0``: any free port)."""
    import optuna_dashboard

    from hpsearch.storage import open_storage
    from hpsearch.storage.artifacts import open_artifact_store

    storage = open_storage(storage_url, must_exist=True)
    # A dashboard only shows what trials stored: no artifacts folder means none to show,
    # and none is created (a read-only command leaves nothing behind).
    store = (
        open_artifact_store(artifact_dir)
        if artifact_dir is not None and os.path.isdir(artifact_dir)
        else None
    )
    app = optuna_dashboard.wsgi(storage, artifact_store=store)
    server_class = _ThreadedServer6 if ":" in host else _ThreadedServer
    try:
        httpd = _make_wsgi_server(
            host, port, app, server_class=server_class, handler_class=_QuietHandler
        )
    except OSError as err:
        raise UserError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    return DashboardServer(httpd, host)


def serve(
    storage_url: str,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    artifact_dir: str | os.PathLike[str] | None = None,
    *,
    out: TextIO | None = None,
) -> None:
    """Serve the dashboard until Ctrl-C; prints the URL first, the storage password-free."""
    from hpsearch.storage import redact

    out = out or sys.stdout
    server = make_server(storage_url, host, port, artifact_dir)
    print(server.url, file=out)
    print(f"  storage:   {redact(storage_url)}", file=out)
    if artifact_dir is not None:
        print(f"  artifacts: {os.fspath(artifact_dir)}", file=out)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"  listening on {host}: anyone who can reach this port sees the studies", file=out)
    print("  Ctrl-C to stop", file=out, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
