"""Is the configured storage usable?  The check behind the worker's start-up and the webhook's ``/healthz``.

``startup_problem(settings)`` runs the storage's cheap check (a local folder's permissions, an S3
``HeadBucket``) and returns the ``ConfigError`` a worker must not start with (missing bucket, bad
credentials, unwritable folder), or None; a transient failure (endpoint briefly down) is not one:
downloads retry those.  ``health(settings)`` gives ``/healthz`` a short text, at most one real check
per ``max_age`` seconds per process, so a load balancer polling every second costs one ``HeadBucket``
per half minute.
"""

from __future__ import annotations

import logging
import threading
import time

from ...errors import ConfigError, StorageError
from . import build_storage

log = logging.getLogger("kie_queue.storage")
HEALTH_MAX_AGE = 30.0
_lock = threading.Lock()
_last: dict = {}


def problem(settings) -> StorageError | None:
    """The ``StorageError`` the configured storage fails its check with, or None when it passes."""
    try:
        build_storage(settings).check()
    except StorageError as e:
        return e
    return None


def startup_problem(settings) -> ConfigError | None:
    """A ``ConfigError`` naming the variable to fix when the storage cannot work at all, else None."""
    try:
        e = problem(settings)
    except ConfigError as config:   # boto3 missing
        return config
    if e is not None and e.transient:
        log.warning("result storage not reachable at start-up (downloads will retry): %s", e.message)
    if e is None or e.transient:
        return None
    return ConfigError(e.variable or settings.storage.variable, e.reason)


def health(settings, *, max_age: float = HEALTH_MAX_AGE, now=time.monotonic) -> str:
    """``"ok"``, ``"unavailable"`` (transient) or ``"error: check <VARIABLE>"``, from a check at most
    ``max_age`` seconds old.  The text is fit for a public page (no bucket, no path, no reason);
    the reason itself is logged once per check."""
    key = (settings.storage, settings.s3_endpoint_url)
    with _lock:
        cached = _last.get(key)
        if cached and now() - cached[0] < max_age:
            return cached[1]
    try:
        e = problem(settings)
        if e is None:
            text = "ok"
        else:
            log.warning("result storage check failed: %s", e.message)
            text = "unavailable" if e.transient else f"error: check {e.variable or settings.storage.variable}"
    except ConfigError as config:
        log.warning("result storage check failed: %s", config.message)
        text = f"error: check {config.variable}"
    with _lock:
        _last[key] = (now(), text)
    return text
