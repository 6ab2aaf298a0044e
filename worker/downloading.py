"""The ``kie.download`` task body: copy a job's result files into storage, retrying transient failures.

The safety rules (schemes, private addresses, redirects, size, type) live in ``worker.fetching``;
storage in ``worker.storage``.  A refused download (policy) fails at once; a transport failure is
retried with backoff, at most three times.
"""

from __future__ import annotations

from .fetching import download_result
from .errors import DownloadError, InvalidInput
from .storage import storage_from_settings


def download_job_result(task, rt, result) -> dict:
    if not isinstance(result, dict) or not isinstance(result.get("result_urls"), list) or not result.get("job_id"):
        raise InvalidInput({"result": [f"expected a kie.generate result dict with job_id and result_urls, "
                                       f"got {type(result).__name__}"]})
    s = rt.settings
    try:
        return download_result(result, storage=storage_from_settings(s), allow_hosts=s.download_allow_hosts,
                               max_bytes=s.download_max_bytes, timeout=s.http_timeout)
    except DownloadError as exc:
        if exc.transient and task.request.retries < task.max_retries:
            raise task.retry(exc=exc, countdown=2 ** task.request.retries)
        raise
