"""Fixtures of the unit tests: kiesim in-process (``server``/``url``/``receiver``, for the kiesim test modules)
and a small real system for the policy modules (submission, checking, completion, dispatch, sweeping).

``System`` is the smallest real thing those modules run against: the real Redis (the unit database, a
key prefix of the test's own), kiesim served in-process over HTTP, a ``Runtime`` built by the product's own
``runtime.build`` and a real Celery app object (the send-only producer) whose broker is that Redis.  No
worker runs: what a module sends to Celery stays in the broker's list, where the test reads it.
"""

from __future__ import annotations

import pytest
import requests

from kiesim import SimConfig, SimServer
from secretscan import API_KEY
from sim_support import Receiver, configure, control
from system_support import System
from worker import celery_conf, runtime
from worker.settings import RateLimit, Settings

UNIT_REDIS_URL = "redis://127.0.0.1:6379/5"


@pytest.fixture(scope="module")
def server(request):
    """kiesim in this process, configured by the test module's ``BASELINE`` (a dict of SimConfig fields)."""
    with SimServer(SimConfig(**request.module.BASELINE)) as srv:
        yield srv


@pytest.fixture
def url(server, request):
    """The module's simulator, reset and configured back to its ``BASELINE``."""
    assert control(server.url, "/_sim/reset").status_code == 200
    configure(server.url, **request.module.BASELINE)
    return server.url


@pytest.fixture
def receiver():
    """An HTTP receiver of callbacks, closed after the test."""
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def kie_sim():
    """kiesim in this process: instant-ish tasks, small images, no callback retries."""
    config = SimConfig(api_key=(API_KEY,), duration=0.2, small_images=True, callback_retries=0,
                       rate_limit="1000/10s")
    with SimServer(config) as server:
        yield server


@pytest.fixture
def system(kie_sim, r, prefix):
    """A fresh deployment's state on the real Redis and kiesim, with short waits."""
    requests.post(kie_sim.url + "/_sim/reset", timeout=10).raise_for_status()
    s = Settings(api_key=API_KEY, base_url=kie_sim.url, redis_url=UNIT_REDIS_URL, broker_url=UNIT_REDIS_URL,
                 result_backend=UNIT_REDIS_URL, key_prefix=prefix, queue=f"{prefix}:queue", http_timeout=1.0,
                 unknown_outcome_grace=0.5, backoff_base=0.05, backoff_cap=0.1, max_attempts=3,
                 rate_limit=RateLimit(100, 10.0), callback_grace=0.2)
    app = celery_conf.producer(s, name=f"unit-{prefix}")
    system = System(runtime.build(s), app, kie_sim)
    yield system
    for waiter_id in system.waiter_ids:
        r.delete(f"celery-task-meta-{waiter_id}")
    app.close()
