"""The Celery application of the workers (``celery -A worker worker``) and of beat.

``app`` exists at import (``celery -A worker`` needs it) but reads no configuration until Celery
first needs it: the defaults are a promise (``add_defaults`` with a callable), built from
``worker.settings`` and ``worker.celery_conf`` (the safe defaults, shared with producers) plus what
only workers need: the beat schedule, the task module, the due-queue pump bootstep.  A worker that
starts with settings undoing the safe defaults logs a warning; one whose result storage cannot work
(missing bucket, bad credentials) does not start.  Celery's logging signals hand every handler it sets
up to ``worker.logs`` (JSON or text, always redacted), and ``task_prerun`` binds each task's job id
and Celery task id for the records it logs.  ``task_prerun``/``task_postrun`` also open and write
each task's batch of metric observations (``worker.store.metrics``): one Redis round trip per task.

Memory of the pool processes: every parked ``kie.generate`` raises Celery's ``Ignore``, which Celery
wraps in billiard's ``ExceptionInfo`` (copies of the frames, in reference cycles, tens of KB a task).
Only Python's full collections free those, and on a large heap they run rarely, so a pool process's
heap used to sit at its high-water mark (+400 MiB PSS over a few thousand chains).  So each pool
process freezes what it inherited from the fork (``gc.freeze()`` on ``worker_process_init``: the
collector never scans, nor writes to, those pages again) and runs a full ``gc.collect()`` after every
``GC_EVERY_TASKS`` tasks (``task_postrun``).  With the inherited objects frozen, a collection looks at a
few thousand objects: about 5 ms of CPU in a soak's pool process, some 0.05 ms a task.  Every 500 tasks
left twice the growth for hardly fewer collections: with few unfrozen long-lived objects, Python's own
full collections (due when those grow by a quarter) run more often and take over.
"""

from __future__ import annotations

import gc
import logging

from celery import Celery, signals

from . import task_names
from .bootsteps import DuePump, MetricsEndpoint
from .celery_conf import SOFT_SHUTDOWN_S, quiet_routine_logs, shared_conf, unsafe_settings

log = logging.getLogger("kie_queue")

GC_EVERY_TASKS = 100    # tasks between a pool process's full collections (see the module docstring)


def _defaults() -> dict:
    from .broker.redis_claims import install
    from .settings import settings

    install()  # the Redis broker's claiming transport, before the first connection
    s = settings()
    return {
        **shared_conf(s),
        "task_create_missing_queues": True,
        "worker_soft_shutdown_timeout": SOFT_SHUTDOWN_S,
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
    celery.steps["worker"].add(MetricsEndpoint)
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
def _setup_logs(logger=None, **_):
    """Every log handler Celery sets up (worker, beat, task logger): redacted, JSON unless on a terminal."""
    from .logs import install
    from .settings import settings

    s = settings()
    install(logger, s.secrets(), s.log_format)
    quiet_routine_logs()


@signals.celeryd_init.connect
def _json_from_the_start(instance=None, **_):
    """With JSON logs, a worker's stderr holds nothing else: no start-up banner (many lines of text on
    stdout; its facts are logged as records: hostname and 'ready.', queues, concurrency), and the warnings
    Python prints before Celery sets up logging (e.g. "running as root") become JSON records too."""
    from .logs import early_json
    from .settings import settings

    s = settings()
    if early_json(s.secrets(), s.log_format) and instance is not None:
        instance.quiet = True


@signals.worker_process_init.connect
def _tracing(**_):
    """OpenTelemetry in each pool process, when configured (the exporters are not fork-safe)."""
    from .settings import settings
    from .tracing import setup

    setup(settings(), "kie-queue-worker")


@signals.worker_process_init.connect
def _freeze_inherited_objects(**_):
    """The objects a pool process inherited from the fork are long-lived: out of the collector's way."""
    gc.freeze()


_tasks_since_collect = 0


@signals.task_postrun.connect
def _collect_garbage(**_):
    """A full collection after every ``GC_EVERY_TASKS`` tasks frees the reference cycles Celery leaves
    (``ExceptionInfo`` of each ``Ignore``), so the heap stays near its working size."""
    global _tasks_since_collect
    _tasks_since_collect += 1
    if _tasks_since_collect >= GC_EVERY_TASKS:
        _tasks_since_collect = 0
        gc.collect()


@signals.task_prerun.connect
def _bind_log_context(task_id=None, task=None, args=None, kwargs=None, **_):
    """The job id and Celery task id of the task about to run, on every record it logs."""
    from .logs import bind_task

    bind_task(getattr(task, "name", ""), task_id, args, kwargs)


@signals.task_postrun.connect
def _clear_log_context(**_):
    from .logs import clear

    clear()


@signals.task_prerun.connect
def _batch_metrics(**_):
    """A task's metric observations are summed in process and written once, when it ends."""
    from .store import metrics

    metrics.begin()


@signals.task_postrun.connect
def _flush_metrics(**_):
    from .store import metrics

    metrics.flush()


@signals.task_success.connect
def _download_failpoint(sender=None, **_):
    """``download.after_continue``: after the tracer sent kie.download's next step and stored its result."""
    if getattr(sender, "name", None) == task_names.DOWNLOAD:
        from . import failpoints
        failpoints.hit("download.after_continue")
