"""``/healthz`` and ``/readyz`` for the kubelet's probes (standard library HTTP server).

``/healthz``: the process serves requests (the event loop's thread is not needed).
``/readyz``: the replica is of use: the API server answered its last Lease attempt and,
if it leads, its first pass is done; a standby that can reach the API server is ready
(it takes over when the Lease expires). 200 ``ok`` or 503 with the reason.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable
from typing import Any

from controller import metrics

#: () -> None when ready, else why not
Check = Callable[[], str | None]


class Server:
    """A running health endpoint; ``shutdown()`` frees the port."""

    def __init__(self, addr: str, ready: Check) -> None:
        host, port = metrics.parse_addr(addr)
        check = ready

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    self._reply(200, "ok")
                elif path == "/readyz":
                    why = check()
                    self._reply(200 if why is None else 503, "ok" if why is None else why)
                else:
                    self._reply(404, "not found")

            def _reply(self, code: int, text: str) -> None:
                data = (text + "\n").encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: not logged
                return

        self._server = http.server.ThreadingHTTPServer((host, port), Handler)
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, name="tenantctl-health", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
