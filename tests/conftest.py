"""Suite-wide fixtures: every log record the test process emits is kept, so the last test module
(`test_zz_no_secrets.py`) can check that no configured secret reached any log."""

import logging

import pytest


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
