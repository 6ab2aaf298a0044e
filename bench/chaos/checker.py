"""The checking end of every chaos chain: a "user" Celery app that records each arrival.

``chaos.record(result, job=JOB)`` is the last step of ``generate | download | chaos.record``; it
appends one JSON line per arrival to ``<prefix>:arrivals:<job>`` (time, Celery task id, host,
whether the broker flagged the message as redelivered, and the state and file count it received),
so a continuation that ran twice shows as two lines.  ``chaos.on_error(task_id, job=JOB)`` is the
``link_error`` errback; it appends to ``<prefix>:errbacks:<job>``.

It runs as its own worker (``celery -A bench.chaos.checker worker``) on its own queue, like another
team's service; the fault schedule never kills it.  Configuration comes from the environment
(``CELERY_BROKER_URL``, ``CELERY_RESULT_BACKEND``, ``REDIS_URL``, ``CHAOS_PREFIX``,
``CHAOS_QUEUE``, ``KIE_SENTINEL_MASTER``), read when the worker starts; nothing connects at import.
"""

from __future__ import annotations

import json
import os
import socket
import time

import redis
from celery import Celery

from worker.celery_conf import VISIBILITY_TIMEOUT

from .servers import connect

app = Celery("chaos_checker")
RETRY_ON = (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError)


@app.on_configure.connect
def _configure(sender, **_):
    transport = {"visibility_timeout": VISIBILITY_TIMEOUT}
    if os.environ.get("KIE_SENTINEL_MASTER"):
        transport["master_name"] = os.environ["KIE_SENTINEL_MASTER"]
    sender.conf.update(
        broker_url=os.environ["CELERY_BROKER_URL"], result_backend=os.environ["CELERY_RESULT_BACKEND"],
        task_serializer="json", accept_content=["json"], result_serializer="json",
        task_default_queue=os.environ["CHAOS_QUEUE"], broker_connection_retry_on_startup=True,
        broker_transport_options=transport, result_backend_transport_options=transport,
    )


def _store():
    return connect(os.environ["REDIS_URL"], os.environ.get("KIE_SENTINEL_MASTER"))


def _append(kind: str, job: str, entry: dict) -> None:
    _store().rpush(f"{os.environ['CHAOS_PREFIX']}:{kind}:{job}", json.dumps(entry))


def _arrival(request) -> dict:
    delivery = request.delivery_info or {}
    return {"at": time.time(), "task_id": request.id, "host": socket.gethostname(),
            "redelivered": bool(delivery.get("redelivered")), "retries": request.retries}


@app.task(name="chaos.record", bind=True, autoretry_for=RETRY_ON, retry_backoff=0.5, max_retries=None)
def record(self, value, job):
    entry = _arrival(self.request)
    if isinstance(value, dict):
        entry.update(state=value.get("state"), job_id=value.get("job_id"), files=len(value.get("files") or []))
    _append("arrivals", job, entry)
    return {"job": job, "state": entry.get("state")}


@app.task(name="chaos.on_error", bind=True, autoretry_for=RETRY_ON, retry_backoff=0.5, max_retries=None)
def on_error(self, task_id, job):
    _append("errbacks", job, {**_arrival(self.request), "failed_task": task_id})
