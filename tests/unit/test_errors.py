"""Tests of worker.errors: every field of a job error travels in its positional args, so it survives
pickling and Celery's JSON result backend (which rebuilds ``cls(*args)``)."""

from __future__ import annotations

import pickle

import pytest
from celery import Celery

from worker import errors

JOB_ERRORS = [
    errors.GenerationFailed("422", "content policy", "job-1", "t1"),
    errors.GenerationTimeout("job-1", 900.0, "t1"),
    errors.GenerationCancelled("job-1", "t1", True, "cancelled by an operator"),
    errors.InvalidInput({"job_id": ["already used with a different input"]}, "google/nano-banana", "job-1"),
]


@pytest.mark.parametrize("exc", JOB_ERRORS, ids=lambda e: type(e).__name__)
def test_job_errors_survive_pickle_and_the_json_backend(exc):
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is type(exc) and again.args == exc.args and again.message == exc.message
    backend = Celery("errors-tests", set_as_current=False, backend="cache+memory://",
                     result_serializer="json").backend
    rebuilt = backend.exception_to_python(backend.prepare_exception(exc, "json"))
    assert type(rebuilt) is type(exc) and rebuilt.message == exc.message


def test_generation_cancelled_says_whether_kie_ai_had_the_task():
    before = errors.GenerationCancelled("job-1")
    after = errors.GenerationCancelled("job-2", "t2", True)
    assert (before.job_id, before.task_id, before.submitted) == ("job-1", None, False)
    assert before.message == "job job-1 was cancelled before submission"
    assert after.message == "job job-2 was cancelled after submission (kie.ai may still bill it)"
    assert isinstance(after, errors.JobError) and str(after) == after.message
