"""The workers' bootsteps: the due-queue pump, and the optional metrics endpoint.

``DuePump`` runs :func:`worker.jobs.dispatch.pump_submissions` on the worker's own timer every
``KIE_PUMP_INTERVAL`` seconds (default 0.05) in the worker's main process.  Nothing waits inside a
worker or as a broker countdown: a job waiting for its rate-limit slot is picked up by whichever
worker is alive, within one pump interval of its slot.  Beat's sweep does the same once a second
as a fallback (a worker started without this step, or every worker busy).  A tick's metric
observations are written together at its end.

``MetricsEndpoint`` serves the deployment's ``/metrics`` (the same numbers as the webhook's, read from
Redis) on ``KIE_METRICS_PORT`` when it is set: for deployments without a web process (polling only) or
that scrape pods.  Several workers on one host cannot share the port: the first one serves, the others
log that and run on without it.
"""

from __future__ import annotations

import logging

from celery import bootsteps

from .jobs.dispatch import pump_submissions
from .runtime import runtime
from .store import exposition, metrics

log = logging.getLogger("kie_queue.pump")
metrics_log = logging.getLogger("kie_queue.metrics")


class DuePump(bootsteps.StartStopStep):
    """Runs the due-queue pump on the worker's timer."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.tref = None

    def start(self, worker):
        app = worker.app

        def tick():
            metrics.begin()
            try:
                pump_submissions(runtime(), app)
            except Exception as exc:  # noqa: BLE001 - a failed tick is retried on the next one
                log.warning("due-queue pump failed: %s", exc)
            finally:
                metrics.flush()

        self.tref = worker.timer.call_repeatedly(runtime().settings.pump_interval, tick, priority=10)

    def stop(self, worker):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None


class MetricsEndpoint(bootsteps.StartStopStep):
    """prometheus_client's HTTP server in the worker's main process, started after the pool has forked."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.server = None

    def start(self, worker):
        from prometheus_client import start_http_server

        rt = runtime()
        port = rt.settings.metrics_port
        if port is None:
            return
        try:
            self.server, _ = start_http_server(port, registry=exposition.registry(
                rt.store, rt.limiter, [a.limiter for a in rt.accounts.values()]))
        except OSError as exc:
            metrics_log.warning("metrics endpoint not started on port %d (%s); another process serves it?", port,
                        exc.strerror or exc)
            return
        metrics_log.info("serving the deployment's metrics on port %d (/metrics)", port)

    def stop(self, worker):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
