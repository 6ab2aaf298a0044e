"""kie-queue's worker package: the Celery app and tasks that submit kie.ai jobs and resume chains.

``from worker import generate, download`` gives the public tasks; ``celery -A worker worker`` runs
a worker (Celery finds ``app``).  The names are loaded on first access (PEP 562), so importing a
part of the package (``worker.store``, ``worker.errors``, as the web process does) loads neither
Celery's app nor any task.  Importing reads no configuration and opens no connection.

The folders follow the architecture, top to bottom (``lint-imports`` keeps the arrows one way):
``cli/`` → ``tasks`` → ``celery_app`` → ``bootsteps`` → ``runtime`` → ``jobs/`` →
``store/`` | ``kie/`` | ``results/`` → ``settings``, ``errors``, ``redact``, ``tokens``.
"""

from .version import __version__

__all__ = ["app", "generate", "download", "__version__"]


def __getattr__(name: str):
    if name in ("app", "generate", "download"):
        from . import tasks   # the app with every task registered, as `celery -A worker` sees it
        return getattr(tasks, name)
    raise AttributeError(f"module 'worker' has no attribute {name!r}")
