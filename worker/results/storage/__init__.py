"""Where downloaded result files are kept: the ``Storage`` interface (``base``) and one implementation per
module: a local folder (``local``) and any S3-compatible object store (``s3``, needs the ``[s3]`` extra,
imported only when configured).  ``health`` holds the start-up and ``/healthz`` check.

``storage_from_settings`` builds the storage ``KIE_STORAGE_URL`` names, once per process.
"""

from __future__ import annotations

import os
import threading

from ...errors import ConfigError
from .base import Storage, Stored, validate_name
from .local import LocalStorage

__all__ = ["Storage", "Stored", "LocalStorage", "validate_name", "storage_from_settings", "build_storage"]

_cache: dict = {}
_cache_lock = threading.Lock()


def build_storage(settings) -> Storage:
    """A new storage for ``settings.storage`` (a ``worker.settings.StorageLocation``)."""
    location = settings.storage
    if location.scheme == "file":
        return LocalStorage(location.path, variable=location.variable)
    try:
        from .s3 import S3Storage
    except ImportError as e:
        raise ConfigError(location.variable, f"s3:// storage needs boto3, which is not installed ({e.name}): "
                                             f"pip install 'kie-queue[s3]'") from None
    return S3Storage(location.bucket, location.prefix, endpoint_url=settings.s3_endpoint_url,
                     presign_seconds=settings.storage_presign_seconds, timeout=settings.http_timeout,
                     variable=location.variable)


def storage_from_settings(settings) -> Storage:
    """The storage configured by ``KIE_STORAGE_URL``, cached per process (a forked child builds its own,
    so no connection is shared across processes)."""
    key = (os.getpid(), settings.storage, settings.s3_endpoint_url, settings.storage_presign_seconds,
           settings.http_timeout)
    with _cache_lock:
        storage = _cache.get(key)
        if storage is None:
            for stale in [k for k in _cache if k[0] != key[0]]:   # inherited from the parent process
                del _cache[stale]
            storage = _cache[key] = build_storage(settings)
        return storage
