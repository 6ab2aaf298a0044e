"""Suite-wide fixtures and the suite-wide secret check.

Every log record the test process emits is kept; when the session finishes, ``secretscan`` looks
through those records and every process log the run wrote (workers, beat, webhook, simulator) for
a test secret or a job token, and fails the run if it finds one.
"""

import logging
import secrets

import pytest
import redis as redis_lib

import secretscan

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


_KEEP = _Keep()


def pytest_collection_modifyitems(config, items):
    """Every test under ``tests/e2e/`` starts real processes: mark it ``e2e``."""
    for item in items:
        if "e2e" in item.path.parts:
            item.add_marker(pytest.mark.e2e)


def pytest_sessionstart(session):
    logging.getLogger().addHandler(_KEEP)


def pytest_sessionfinish(session, exitstatus):
    logging.getLogger().removeHandler(_KEEP)
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None or exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        return
    problems = secretscan.leaks(factory.getbasetemp(), _KEEP.lines)
    if problems:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_sep("=", "secrets found in logs", red=True)
            for where, what in problems.items():
                reporter.write_line(f"{where}: {', '.join(what)}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """moto's standalone S3 API server on a free loopback port, for the whole session (started on first use)."""
    from s3support import MotoServer

    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_auth_server(tmp_path_factory):
    """A second moto server, one that checks credentials (see ``s3support.AuthMotoServer``)."""
    from s3support import AuthMotoServer

    server = AuthMotoServer(tmp_path_factory.mktemp("moto-auth") / "moto.log")
    yield server
    server.stop()


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
