"""Instrumentation the bench loads into worker processes: task run times and the ``bench.*`` tasks.

:func:`install` connects Celery's ``task_prerun``/``task_postrun`` signals so that every task a pool
process runs adds its wall-clock run time and its CPU time to a Redis hash (``<BENCH_TASKTIME_KEY>``:
fields ``<task name>:s`` and ``<task name>:cpu`` += seconds, ``<task name>:n`` += 1).  :func:`register_tasks` adds the
post-processing tasks the measures chain after ``kie.generate``:

* ``bench.noop(result=None)``: returns its argument (a no-op step);
* ``bench.mark(result=None, sent=None)``: records ``time.time()`` at its start in the Redis hash
  ``<BENCH_MARK_KEY>`` under the job id of ``result`` (or under ``sent``'s tag for the baseline),
  then returns.  The measures read these start times.

Configuration is environment only (``BENCH_TASKTIME_KEY``, ``BENCH_MARK_KEY``, ``BENCH_REDIS``),
read when a task runs, never at import.  Both the project's worker (``bench.kq_app``) and the
baseline apps (``bench.celery_baseline``) use this module, so both are measured the same way.
"""

from __future__ import annotations

import functools
import json
import os
import time

import redis
from celery import signals

_started: dict[str, tuple[float, float]] = {}


@functools.lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["BENCH_REDIS"])


def _on_prerun(task_id=None, **_):
    _started[task_id] = (time.perf_counter(), time.process_time())


def _on_postrun(task_id=None, task=None, **_):
    started = _started.pop(task_id, None)
    key = os.environ.get("BENCH_TASKTIME_KEY")
    if started is None or not key:
        return
    seconds, cpu = time.perf_counter() - started[0], time.process_time() - started[1]
    pipe = _redis().pipeline(transaction=False)
    pipe.hincrbyfloat(key, f"{task.name}:s", seconds)
    pipe.hincrbyfloat(key, f"{task.name}:cpu", cpu)
    pipe.hincrby(key, f"{task.name}:n", 1)
    pipe.execute()


def install() -> None:
    """Record every task's run time (connect the signals; weak=False: the handlers are module functions)."""
    signals.task_prerun.connect(_on_prerun, weak=False)
    signals.task_postrun.connect(_on_postrun, weak=False)


def register_tasks(app) -> None:
    """Add ``bench.noop`` and ``bench.mark`` to ``app``."""

    @app.task(name="bench.noop")
    def noop(result=None):
        return result

    @app.task(name="bench.mark")
    def mark(result=None, sent=None):
        now = time.time()
        key = os.environ.get("BENCH_MARK_KEY")
        if key:
            tag = result.get("job_id") if isinstance(result, dict) else None
            _redis().hset(key, str(tag or sent), json.dumps(now))
        return {"started": now}


def read_task_times(r: redis.Redis, key: str) -> dict[str, dict]:
    """``{task name: {"seconds": wall total, "cpu": CPU total, "count": n}}`` from the hash :func:`install` fills."""
    out: dict[str, dict] = {}
    for field, value in r.hgetall(key).items():
        name, _, kind = field.decode().rpartition(":")
        entry = out.setdefault(name, {"seconds": 0.0, "cpu": 0.0, "count": 0})
        if kind == "s":
            entry["seconds"] = float(value)
        elif kind == "cpu":
            entry["cpu"] = float(value)
        else:
            entry["count"] = int(value)
    return out
