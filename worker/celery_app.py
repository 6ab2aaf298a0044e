"""The Celery application and the project's safe defaults.

``app`` exists at import (``celery -A worker`` needs it) but reads no configuration until Celery
first needs it: the defaults are a promise (``add_defaults`` with a callable), built from
``worker.settings``.  The defaults make every task safe to run twice and never lost:

* ``task_acks_late`` + ``task_reject_on_worker_lost``: a task whose process dies is re-queued;
* ``worker_prefetch_multiplier = 1``: a worker holds at most one unstarted message per process;
* a broker ``visibility_timeout`` of 10 minutes, far above every countdown (< 2 s) and run time
  (< 1 min) the project uses, so the Redis broker does not redeliver running tasks, yet a message
  held by a worker that died returns within minutes, not hours (jobs themselves never wait on it:
  they are in the job store);
* JSON only (never pickle), so producers in other languages can enqueue and read results;
* ``worker_deduplicate_successful_tasks`` off (with it, a redelivered task would resend its chain).

A worker that starts with settings undoing these logs a warning (:func:`unsafe_settings`).
"""

from __future__ import annotations

import logging

from celery import Celery, signals

log = logging.getLogger("kie_queue")

VISIBILITY_TIMEOUT = 600
SAFE = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "worker_deduplicate_successful_tasks": False,
    "task_serializer": "json",
    "result_serializer": "json",
}


def _defaults() -> dict:
    from .settings import settings

    s = settings()
    transport = {"visibility_timeout": VISIBILITY_TIMEOUT}
    return {
        "broker_url": s.broker_url,
        "result_backend": s.result_backend,
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_default_queue": s.queue,
        "task_create_missing_queues": True,
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "result_expires": 7 * 86400,
        "result_extended": True,
        "beat_schedule": {
            "kie-sweep": {
                "task": "kie.sweep",
                "schedule": s.sweep_interval,
                "options": {"expires": max(5.0, s.sweep_interval * 5), "queue": s.queue},
            },
        },
        "include": ["worker.tasks"],
        **SAFE,
    }


def create_app() -> Celery:
    from .pump import DuePump

    celery = Celery("kie_queue")
    celery.add_defaults(_defaults)
    celery.steps["worker"].add(DuePump)
    return celery


app = create_app()


def unsafe_settings(conf) -> list[str]:
    """The names of safe defaults that the effective configuration undoes."""
    bad = [name for name, value in SAFE.items() if conf.get(name) != value]
    for name in ("accept_content", "result_accept_content"):
        accepted = conf.get(name)
        if accepted is not None and any(c not in ("json", "application/json") for c in accepted):
            bad.append(name)
    vt = (conf.get("broker_transport_options") or {}).get("visibility_timeout")
    if str(conf.get("broker_url", "")).startswith(("redis", "rediss")) and vt is not None and vt < 300:
        bad.append("broker_transport_options.visibility_timeout")
    return bad


@signals.worker_init.connect
def _on_worker_init(sender=None, **_):
    bad = unsafe_settings(app.conf)
    if bad:
        log.warning("kie-queue: configuration undoes safe defaults (%s): jobs may run twice or be lost",
                    ", ".join(bad))


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _redact_logs(logger=None, **_):
    from .redact import install_log_redaction
    from .settings import settings

    install_log_redaction(settings().secrets(), logger=logger)
