"""Per-process runtime objects built from the settings: Redis client, job store, limiter, kie.ai client.

Built on first use (never at import) and cached per process; ``reset()`` drops them (tests, forks).
"""

from __future__ import annotations

import dataclasses
import functools

import redis

from .kie.client import KieClient
from .settings import Settings, settings
from .store.connection import job_store_options, redis_client
from .store.jobstore import JobStore
from .store.limiter import Limiter


@dataclasses.dataclass
class Runtime:
    settings: Settings
    redis: redis.Redis
    store: JobStore
    limiter: Limiter

    @functools.cached_property
    def client(self) -> KieClient:
        """The kie.ai client (needs ``KIE_API_KEY``)."""
        return KieClient(self.settings.base_url, self.settings.require_api_key(), timeout=self.settings.http_timeout)


def build(s: Settings) -> Runtime:
    r = redis_client(s)
    return Runtime(s, r, JobStore(r, s.key_prefix, **job_store_options(s)), Limiter.for_settings(r, s))


@functools.lru_cache(maxsize=1)
def runtime() -> Runtime:
    """The process-wide runtime."""
    return build(settings())


def reset() -> None:
    runtime.cache_clear()
    settings.cache_clear()
