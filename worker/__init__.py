"""kie-queue's worker package: the Celery app and tasks that submit kie.ai jobs and resume chains.

``from worker import generate, download`` gives the public tasks; ``celery -A worker worker`` runs
a worker.  Importing this package reads no configuration and opens no connection.
"""

__version__ = "0.1.0"

from .celery_app import app  # noqa: E402
from .tasks import download, generate  # noqa: E402

__all__ = ["app", "generate", "download", "__version__"]
