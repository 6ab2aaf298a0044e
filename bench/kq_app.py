"""The project's worker app with the bench's instrumentation: ``celery -A bench.kq_app worker``.

The very app of ``celery -A worker worker`` (``worker.celery_app.app``, same settings, same tasks,
same due-queue pump) plus the task run-time recorder and the ``bench.noop`` / ``bench.mark`` tasks
of ``bench.tasktime``.
"""

from __future__ import annotations

from bench import tasktime
from worker.celery_app import app

tasktime.install()
tasktime.register_tasks(app)

__all__ = ["app"]
