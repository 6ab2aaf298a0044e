"""The Celery application of the workers (``celery -A worker worker``) and of beat.

``app`` exists at import (``celery -A worker`` needs it) but reads no configuration until Celery
first needs it: the defaults are a promise (``add_defaults`` with a callable), built from
``worker.settings`` and ``worker.celery_conf`` (the safe defaults, shared with producers) plus what
only workers need: the beat schedule, the task module, the due-queue pump bootstep.  A worker that
starts with settings undoing the safe defaults logs a warning; one whose result storage cannot work
(missing bucket, bad credentials) does not start.
"""

from __future__ import annotations

import logging

from celery import Celery, signals

from . import task_names
from .bootsteps import DuePump
from .celery_conf import SOFT_SHUTDOWN_S, shared_conf, unsafe_settings

log = logging.getLogger("kie_queue")


def _defaults() -> dict:
    from .settings import settings

    s = settings()
    return {
        **shared_conf(s),
        "task_create_missing_queues": True,
        "worker_soft_shutdown_timeout": SOFT_SHUTDOWN_S,
        "result_expires": 7 * 86400,
        "result_extended": True,
        "beat_schedule": {
            "kie-sweep": {
                "task": task_names.SWEEP,
                "schedule": s.sweep_interval,
                "options": {"expires": max(5.0, s.sweep_interval * 5), "queue": s.queue},
            },
        },
        "include": ["worker.tasks"],
    }


def create_app() -> Celery:
    celery = Celery("kie_queue")
    celery.add_defaults(_defaults)
    celery.steps["worker"].add(DuePump)
    return celery


app = create_app()


@signals.worker_init.connect
def _on_worker_init(sender=None, **_):
    _refuse_unusable_storage()
    bad = unsafe_settings(app.conf)
    if bad:
        log.warning("kie-queue: configuration undoes safe defaults (%s): jobs may run twice or be lost",
                    ", ".join(bad))


def _refuse_unusable_storage() -> None:
    """Stop the worker before it consumes anything when ``kie.download`` could never store a file
    (missing bucket, bad credentials, unwritable folder): the message names the variable to fix.
    A storage that is only briefly unreachable does not stop it (downloads retry)."""
    from .results.storage.health import startup_problem
    from .settings import settings

    problem = startup_problem(settings())
    if problem is not None:
        # Logging is not set up yet at worker_init, so the message goes to stderr with the exit.
        # SystemExit, not an exception: Celery's signal dispatch logs and swallows exceptions.
        raise SystemExit(f"kie-queue: cannot start: result storage unusable: {problem.message}")


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _redact_logs(logger=None, **_):
    from .redact import install_log_redaction
    from .settings import settings

    install_log_redaction(settings().secrets(), logger=logger)
