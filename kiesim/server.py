"""``SimServer``: run a simulator app on a threaded werkzeug server, in a background thread.

For tests and for parents that embed the simulator::

    with SimServer(SimConfig(duration=0.5)) as server:
        requests.get(server.url + "/_sim/health")

Port 0 picks a free port; ``url`` reports the bound one.
"""

from __future__ import annotations

import threading

from werkzeug.serving import make_server

from .app import create_app, simulator_of
from .config import SimConfig
from .simulator import Simulator


class SimServer:
    def __init__(self, config: SimConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = create_app(config)
        self._server = make_server(host, port, self.app, threaded=True)
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return self._server.host

    @property
    def port(self) -> int:
        return self._server.server_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def simulator(self) -> Simulator:
        return simulator_of(self.app)

    def serve_forever(self) -> None:
        """Serve in the calling thread until ``shutdown()`` (or an exception)."""
        try:
            self._server.serve_forever()
        finally:
            self.simulator.close()

    def start(self) -> "SimServer":
        """Serve in a daemon thread; returns self."""
        self._thread = threading.Thread(target=self.serve_forever, name="kiesim-server", daemon=True)
        self._thread.start()
        return self

    def shutdown(self) -> None:
        """Stop a server started with ``start()`` and close its socket."""
        if self._thread is not None:
            self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.simulator.close()

    def __enter__(self) -> "SimServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.shutdown()
