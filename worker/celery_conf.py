"""The Celery configuration every process of the deployment shares: the worker app and producers.

``SAFE`` are the defaults that make every task safe to run twice and never lost:

* ``task_acks_late`` + ``task_reject_on_worker_lost``: a task whose process dies is re-queued;
* ``worker_prefetch_multiplier = 1``: a worker holds at most one unstarted message per process;
* JSON only (never pickle), so producers in other languages can enqueue and read results;
* ``worker_deduplicate_successful_tasks`` off (with it, a redelivered task would resend its chain).

On a Redis broker, ``worker_disable_prefetch`` (Celery >= 5.6) also makes a worker fetch only when a pool
process is free, whatever prefetch multiplier a deployment sets: measured with ``bench/visibility.py``,
a worker with multiplier 4 killed while busy held 10 messages (6 of them queued jobs that came back
only after the visibility timeout) without it, 4 with it (its 2 running tasks and 2 countdown messages,
which no setting keeps a worker from holding).  RabbitMQ ignores the setting (and returns held messages
when the connection drops), so it is set only for Redis brokers.

A broker ``visibility_timeout`` of ``VISIBILITY_TIMEOUT`` seconds sits far above every countdown
(< 2 s) and run time (< 1 min) the project uses, so the Redis broker does not redeliver running
tasks, yet a message held by a worker that died returns within minutes, not hours (jobs themselves
never wait on it: they are in the job store).  Task events (``worker_send_task_events``,
``task_send_sent_event``) are on with ``KIE_TASK_EVENTS=1``, so Flower and ``celery events`` show every
task without ``-E``; off by default, they cost nothing while no monitor runs.
``result_expires`` follows ``KIE_JOB_RETENTION`` (:func:`result_expires`): Celery's Redis backend sets it as
the TTL of each ``celery-task-meta-*`` key when it stores the result (``SETEX``), in whichever process
stores it (a worker's task, a resumed waiter, a producer), so it is shared here, not a worker-only setting.
:func:`producer` builds the send-only app the web
process uses (it imports no task code).  Nothing here reads configuration at import.
"""

from __future__ import annotations

VISIBILITY_TIMEOUT = 600
SOFT_SHUTDOWN_S = 45
"""How long a stopping worker lets running tasks finish when a cold shutdown is asked for (Celery's soft
shutdown: ``REMAP_SIGTERM=SIGQUIT`` makes SIGTERM ask for one).  Below the 60 s every deploy file gives a
process to stop; tasks still running then are handed back to the broker."""
SAFE = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "worker_deduplicate_successful_tasks": False,
    "task_serializer": "json",
    "result_serializer": "json",
}


def result_expires(s) -> int:
    """Seconds a stored task result lives: ``KIE_JOB_RETENTION``, whole seconds (the Redis backend truncates to
    an int anyway; at least 1, since 0 would mean no TTL at all)."""
    return max(1, int(s.job_retention))


def shared_conf(s) -> dict:
    """Broker, backend, serialisation and transport settings, from a ``Settings``."""
    broker = {"visibility_timeout": VISIBILITY_TIMEOUT}
    backend = {"visibility_timeout": VISIBILITY_TIMEOUT}
    # Redis Sentinel (``sentinel://`` URLs): kombu and Celery's SentinelBackend take the master's name
    # from the transport options
    for url, options in ((s.broker_url, broker), (s.result_backend, backend)):
        if str(url).lower().startswith("sentinel://"):
            options["master_name"] = s.sentinel_master
    redis_broker = str(s.broker_url).lower().startswith(("redis", "rediss", "sentinel", "unix"))
    return {
        **({"worker_disable_prefetch": True} if redis_broker else {}),
        "broker_url": s.broker_url,
        "result_backend": s.result_backend,
        # a result key lives as long as the finished job it belongs to, not Celery's default day
        "result_expires": result_expires(s),
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_default_queue": s.queue,
        "broker_transport_options": broker,
        "result_backend_transport_options": backend,
        "broker_connection_retry_on_startup": True,
        # task events for monitors (Flower, `celery events`), with KIE_TASK_EVENTS: workers report received/
        # started/succeeded/failed/retried, producers report sent (about 8 more broker round trips per job)
        "worker_send_task_events": s.task_events,
        "task_send_sent_event": s.task_events,
        **SAFE,
    }


def producer(s, name: str = "kie_queue_producer"):
    """A Celery app that only sends tasks by name (and reads their results)."""
    from celery import Celery

    from .broker.redis_claims import install

    install()
    app = Celery(name, set_as_current=False)
    app.conf.update(shared_conf(s))
    return app


def unsafe_settings(conf) -> list[str]:
    """The names of safe defaults that the effective configuration undoes."""
    bad = [name for name, value in SAFE.items() if conf.get(name) != value]
    for name in ("accept_content", "result_accept_content"):
        accepted = conf.get(name)
        if accepted is not None and any(c not in ("json", "application/json") for c in accepted):
            bad.append(name)
    vt = (conf.get("broker_transport_options") or {}).get("visibility_timeout")
    if str(conf.get("broker_url", "")).startswith(("redis", "rediss", "sentinel")) and vt is not None and vt < 300:
        bad.append("broker_transport_options.visibility_timeout")
    return bad


# -- routine log lines ---------------------------------------------------------------------------
# Celery logs every task's "received" / "succeeded" at INFO, beat every "Sending due task", and a task
# that raised Ignore as "Task ...[id] ignored".  Here beat sends kie.sweep every second and every
# kie.generate parks its chain with Ignore, so those lines are noise (and "ignored" reads like an
# error): they are demoted to DEBUG.  The sweep logs its own INFO line when it handed something out,
# and kie.generate logs "parked: waiting for kie.ai".
_ROUTINE_LOGGERS = ("celery.app.trace", "celery.worker.strategy", "celery.beat")


class RoutineLogFilter:
    """A ``logging`` filter: Celery's routine INFO records about the sweep and parked jobs become DEBUG."""

    def filter(self, record) -> bool:
        import logging

        from . import task_names

        if record.levelno != logging.INFO:
            return True
        args = record.args
        if record.name == "celery.beat":
            routine = isinstance(args, tuple) and len(args) == 2 and args[1] == task_names.SWEEP
        elif isinstance(args, dict):
            name = args.get("name")
            routine = name == task_names.SWEEP or (name == task_names.GENERATE and args.get("description") == "ignored")
        else:
            routine = False
        if not routine:
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def quiet_routine_logs() -> None:
    """Install :class:`RoutineLogFilter` on Celery's task, strategy and beat loggers (idempotent)."""
    import logging

    for name in _ROUTINE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RoutineLogFilter) for f in logger.filters):
            logger.addFilter(RoutineLogFilter())
