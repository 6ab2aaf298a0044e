"""The one place a Redis client for the job store is built: a plain URL or Redis Sentinel.

``REDIS_URL`` is ``redis://``, ``rediss://``, ``unix://`` or kombu's Sentinel form
``sentinel://HOST:PORT[;sentinel://HOST:PORT...][/DB]`` (the same form Celery takes for the broker and
the result backend), with ``KIE_SENTINEL_MASTER`` naming the master.  Through Sentinel the client
asks the Sentinels for the current primary and asks again when a connection to it fails, so a
promoted replica is found after a failover without a restart.
"""

from __future__ import annotations

import redis
from redis.sentinel import Sentinel

from ..settings import sentinel_nodes


def is_sentinel(url: str | None) -> bool:
    return bool(url) and url.lower().startswith("sentinel://")


def redis_client(s, *, socket_timeout: float = 10, socket_connect_timeout: float = 5,
                 health_check_interval: int = 30) -> redis.Redis:
    """A client of the job store's Redis for settings ``s`` (``REDIS_URL``, ``KIE_SENTINEL_MASTER``)."""
    opts = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_connect_timeout,
            "health_check_interval": health_check_interval}
    if not is_sentinel(s.redis_url):
        return redis.Redis.from_url(s.redis_url, **opts)
    nodes, db, password = sentinel_nodes(s.redis_url)
    sentinel = Sentinel(nodes, socket_timeout=socket_timeout, socket_connect_timeout=socket_connect_timeout,
                        sentinel_kwargs={"password": password} if password else None)
    return sentinel.master_for(s.sentinel_master, db=db, password=password, **opts)


def job_store_options(s) -> dict:
    """The ``JobStore`` keyword options that come from the settings."""
    return {"retention_s": s.job_retention, "min_replicas": s.redis_min_replicas}
