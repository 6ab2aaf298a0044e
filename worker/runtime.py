"""Per-process runtime objects built from the settings: Redis client, job store, limiter, kie.ai client.

Built on first use (never at import) and cached per process; ``reset()`` drops them (tests, forks).
"""

from __future__ import annotations

import dataclasses
import functools

import redis

from .jobstore import JobStore
from .limiter import Limiter
from .settings import Settings, settings


@dataclasses.dataclass
class Runtime:
    settings: Settings
    redis: redis.Redis
    store: JobStore
    limiter: Limiter

    @functools.cached_property
    def client(self):
        """The kie.ai client (needs ``KIE_API_KEY``)."""
        from .client import KieClient
        return KieClient(self.settings.base_url, self.settings.require_api_key(), timeout=self.settings.http_timeout)


def build(s: Settings) -> Runtime:
    r = redis.Redis.from_url(s.redis_url, health_check_interval=30, socket_timeout=10, socket_connect_timeout=5)
    store = JobStore(r, s.key_prefix)
    # A slot's lease outlives any job: the sweep times jobs out and frees their slots long before.
    limiter = Limiter(r, s.key_prefix, s.api_key, limit=s.rate_limit.limit, window=s.rate_limit.window,
                      max_in_flight=s.max_in_flight, slot_lease=s.job_timeout * 2 + 600)
    return Runtime(s, r, store, limiter)


@functools.lru_cache(maxsize=1)
def runtime() -> Runtime:
    """The process-wide runtime."""
    return build(settings())


def reset() -> None:
    runtime.cache_clear()
    settings.cache_clear()
