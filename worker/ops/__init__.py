"""Operator actions and queries on a running deployment, for the CLI and the dashboard.

``queries`` reads (a job by id or kie.ai taskId, recent jobs, the limiter, the account's credits);
``actions`` changes (retry, cancel, resume).  Functions take the per-process runtime ``rt``
(``worker.runtime``) and, when they start work, a send-only Celery app (``worker.celery_conf.producer``):
tasks are sent by name, so nothing here imports the task modules or the worker's Celery app.
"""
