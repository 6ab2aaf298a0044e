"""The ``kie.download`` task body: copy a job's result files into storage, retrying transient failures.

The safety rules (schemes, private addresses, redirects, size, type) and the check of the result's
shape live in ``worker.results.fetching``; storage in ``worker.results.storage``.  A refused download
(policy) or a permanent storage error (missing bucket, access denied) fails at once; a transport
failure or a transient storage error (5xx, throttling, timeouts, after botocore's own retries) is
retried with backoff, at most three times.  The stored files are kept on the job's record too.
"""

from __future__ import annotations

import time

from ..errors import DownloadError
from .fetching import download_result
from .storage import storage_from_settings


def download_job_result(task, rt, result) -> dict:
    """Store ``result``'s files; ``task`` is the bound ``kie.download`` task (for its retries)."""
    s = rt.settings
    started, outcome = time.monotonic(), "error"
    try:
        stored = download_result(result, storage=storage_from_settings(s), allow_hosts=s.download_allow_hosts,
                                 max_bytes=s.download_max_bytes, timeout=s.http_timeout)
        outcome = "ok"
    except DownloadError as exc:
        if exc.transient and task.request.retries < task.max_retries:
            raise task.retry(exc=exc, countdown=2 ** task.request.retries)
        raise
    finally:
        rt.store.metrics.observe("kie_download_seconds", time.monotonic() - started, outcome)
    if isinstance(stored.get("job_id"), str):
        rt.store.record_files(stored["job_id"], stored.get("files") or [])   # the job record shows the stored files
    return stored
