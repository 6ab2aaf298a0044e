"""Per-process runtime objects built from the settings: Redis client, job store, and one limiter and
kie.ai client per account.

An *account* is one kie.ai API key: ``KIE_API_KEY``, and each ``KIE_API_KEY_<TENANT>``.  A tenant's
jobs go to its own key's account when it has one, else to ``KIE_API_KEY``'s.  Built on first use
(never at import) and cached per process; ``reset()`` drops them (tests, forks).
"""

from __future__ import annotations

import dataclasses
import functools

import redis

from .jobs.arguments import DEFAULT_TENANT
from .kie.client import KieClient
from .settings import Settings, settings
from .store.connection import job_store_options, redis_client
from .store.jobstore import JobStore
from .store.keys import account_id
from .store.limiter import Limiter


@dataclasses.dataclass
class Account:
    """One kie.ai account: its limiter (keys named by a hash of the key) and its client."""

    id: str
    limiter: Limiter
    settings: Settings = dataclasses.field(repr=False)
    api_key: str | None = dataclasses.field(default=None, repr=False)

    @functools.cached_property
    def client(self) -> KieClient:
        """The kie.ai client of this account (the default account needs ``KIE_API_KEY``)."""
        key = self.api_key or self.settings.require_api_key()
        return KieClient(self.settings.base_url, key, timeout=self.settings.http_timeout)


@dataclasses.dataclass
class Runtime:
    settings: Settings
    redis: redis.Redis
    store: JobStore
    accounts: dict[str, Account]

    @property
    def default_account(self) -> Account:
        return self.accounts[account_id(self.settings.api_key)]

    @property
    def limiter(self) -> Limiter:
        """The default account's limiter (``KIE_API_KEY``)."""
        return self.default_account.limiter

    @property
    def client(self) -> KieClient:
        """The default account's kie.ai client (needs ``KIE_API_KEY``)."""
        return self.default_account.client

    def account_for(self, tenant: str | None) -> Account:
        """The account a tenant's jobs are sent with."""
        return self.accounts[account_id(self.settings.api_key_for(tenant or DEFAULT_TENANT))]

    def account_of(self, job: dict | None) -> Account:
        """The account of a job record (by its tenant)."""
        return self.account_for((job or {}).get("tenant") or DEFAULT_TENANT)


def build_accounts(r, s: Settings) -> dict[str, Account]:
    keys = [s.api_key] + [k for k in s.api_keys() if k != s.api_key]
    return {account_id(k): Account(account_id(k), Limiter.for_settings(r, s, api_key=k or ""), s, k)
            for k in keys}


def build(s: Settings) -> Runtime:
    r = redis_client(s)
    return Runtime(s, r, JobStore(r, s.key_prefix, **job_store_options(s)), build_accounts(r, s))


@functools.lru_cache(maxsize=1)
def runtime() -> Runtime:
    """The process-wide runtime."""
    return build(settings())


def reset() -> None:
    runtime.cache_clear()
    settings.cache_clear()
