"""Suite-wide fixtures: every log record the test process emits is kept, so the last test module
(`test_zz_no_secrets.py`) can check that no configured secret reached any log."""

import logging
import secrets

import pytest
import redis as redis_lib

UNIT_REDIS_URL = "redis://127.0.0.1:6379/5"   # the per-module tests' database (end-to-end ones use 3)


class _Keep(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.lines = []

    def emit(self, record):
        try:
            self.lines.append(self.format(record))
        except Exception:  # noqa: BLE001 - a broken record must not break the suite
            self.lines.append(repr(record.msg))


KEEP = _Keep()


@pytest.fixture(scope="session", autouse=True)
def _keep_every_log_record():
    root = logging.getLogger()
    root.addHandler(KEEP)
    yield KEEP
    root.removeHandler(KEEP)


@pytest.fixture
def r():
    """A client of the unit tests' Redis database."""
    client = redis_lib.Redis.from_url(UNIT_REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def prefix(r):
    """A key prefix of the test's own; its keys are deleted afterwards."""
    p = f"t-{secrets.token_hex(4)}"
    yield p
    for key in r.scan_iter(f"{p}:*", count=1000):
        r.delete(key)
