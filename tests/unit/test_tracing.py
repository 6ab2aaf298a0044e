"""worker.tracing when off costs nothing (it imports nothing of OpenTelemetry), and when it is on.

The end-to-end trace of a job across the callback gap is tests/e2e/test_tracing.py.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from worker import tracing
from worker.settings import Settings

from conftest import UNIT_REDIS_URL


def test_off_imports_nothing_of_opentelemetry():
    # redis-py imports parts of OpenTelemetry itself when it is installed: count only what our code adds
    code = f"""
import sys
import celery, flask, redis, requests
baseline = set(m for m in sys.modules if m.startswith("opentelemetry"))
import worker.tasks, worker.jobs.completion, webhook
from worker.settings import Settings
app = webhook.create_app(Settings.from_env({{"REDIS_URL": "{UNIT_REDIS_URL}", "KIE_API_KEY": "sk-x"}}))
from worker import tracing
parked = tracing.carry({{"id": "t"}})
with tracing.resumed(parked, job_id="j", waited_since_ms=1):
    pass
assert parked == {{"id": "t"}}, parked
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry") and m not in baseline)
assert not loaded, loaded
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": "."})
    assert run.returncode == 0, run.stderr[-2000:]


@pytest.mark.parametrize("env, on", [
    ({}, False),
    ({"KIE_OTEL": "1"}, True),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
    ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ({"OTEL_TRACES_EXPORTER": "none"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "KIE_OTEL": "off"}, False),
    ({"KIE_OTEL_JSONL": "/tmp/spans.jsonl"}, True),
])
def test_enabled_only_when_configured(env, on):
    assert Settings.from_env(env).otel is on


def test_off_in_this_process_changes_nothing():
    assert not tracing.setup(Settings.from_env({}), "test")
    parked = {"id": "x"}
    assert tracing.carry(parked) is parked and "traceparent" not in parked
