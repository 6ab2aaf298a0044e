"""worker.logs: JSON lines with the job/task context, always redacted; text left as it is.

A real ``logging`` handler writing to a buffer; the same formatter is what workers, beat and the webhook use.
"""

from __future__ import annotations

import io
import json
import logging

import pytest

from worker import logs

SECRET = "sk-logs-test-" + "9f8e7d6c5b4a"


@pytest.fixture
def logger():
    log = logging.getLogger("kie_queue.test_logs")
    log.handlers.clear()
    log.propagate = False
    log.setLevel(logging.DEBUG)
    for f in list(log.filters):
        log.removeFilter(f)
    buf = io.StringIO()
    log.addHandler(logging.StreamHandler(buf))
    logs.clear()
    yield log, buf
    log.handlers.clear()
    logs.clear()


def records(buf) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_json_lines_carry_level_event_and_the_bound_context(logger):
    log, buf = logger
    logs.install(log, [SECRET], "json")
    logs.bind_task("kie.check", "celery-1", ["job-7"], {})
    logs.bind(upstream_task_id="up-9")
    log.info("job %s polled", "job-7")
    log.warning("explicit", extra={"event": "callback_recorded", "job_id": "job-8"})
    first, second = records(buf)
    assert first["message"] == "job job-7 polled" and first["level"] == "info" and first["event"] == "test_logs"
    assert first["job_id"] == "job-7" and first["celery_task_id"] == "celery-1" and first["celery_task"] == "kie.check"
    assert first["upstream_task_id"] == "up-9" and first["logger"] == "kie_queue.test_logs" and "time" in first
    assert second["event"] == "callback_recorded" and second["job_id"] == "job-8" and second["level"] == "warning"


def test_secrets_and_tokens_never_reach_a_json_line(logger):
    log, buf = logger
    logs.install(log, [SECRET], "json")
    log.info("calling with %s", SECRET)
    log.info("extra", extra={"job_id": f"x{SECRET}", "url": "https://h/cb?token=" + "ab" * 32})
    try:
        raise RuntimeError(f"boom {SECRET} https://h/cb?token={'cd' * 32}")
    except RuntimeError:
        log.exception("failed")
    out = buf.getvalue()
    assert SECRET not in out and "ab" * 32 not in out and "cd" * 32 not in out
    *_, failed = records(buf)
    assert "RuntimeError: boom ***" in failed["exception"] and failed["level"] == "error"


def test_job_id_of_each_task():
    assert logs.job_id_of("kie.generate", [], {"job_id": "j1"}, "c1") == "j1"
    assert logs.job_id_of("kie.generate", [{"prompt": "x"}], {}, "c1") == "c1"      # no job_id: the task id
    assert logs.job_id_of("kie.submit", ["j2"], {}, "c") == "j2"
    assert logs.job_id_of("kie.download", [{"job_id": "j3", "task_id": "t"}], {}, "c") == "j3"
    assert logs.job_id_of("user.task", ["j4"], {}, "c") is None


def test_text_keeps_the_handlers_formatter_and_still_redacts(logger):
    log, buf = logger
    formatter = logging.Formatter("%(levelname)s %(message)s")
    log.handlers[0].setFormatter(formatter)
    logs.install(log, [SECRET], "text")
    log.info("key %s", SECRET)
    assert log.handlers[0].formatter is formatter
    assert buf.getvalue() == "INFO key ***\n"


def test_resolve_defaults_to_json_off_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True
    assert logs.resolve(None, io.StringIO()) == "json"
    assert logs.resolve(None, Tty()) == "text"
    assert logs.resolve("text", io.StringIO()) == "text"
