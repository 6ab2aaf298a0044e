"""Tests of worker.jobs.completion: a job finishes once, and each waiter's chain is resumed or failed once.

Real Redis, a real Celery app object (its result backend and broker are that Redis); no worker runs, so
the resumed chain's next step is read from the broker's list.
"""

from __future__ import annotations

import threading

from celery import signature

from system_support import parked_waiter
from worker.errors import GenerationFailed, GenerationTimeout
from worker.jobs import completion, submission
from worker.kie.schemas import Outcome
from worker.store.states import JobState


def _next_step(system, tag: str) -> dict:
    return dict(signature("user.next", args=(), kwargs={"tag": tag}, queue=system.rt.settings.queue, app=system.app))


def _submitted_job(system, prompt: str, *, waiter: dict | None = None) -> tuple[str, str]:
    job_id = system.accept(prompt, waiter=waiter)
    assert submission.attempt(system.rt, system.app, job_id) == "submitted"
    return job_id, system.store.get(job_id)["task_id"]


def _success(task_id: str) -> Outcome:
    return Outcome(task_id=task_id, state="success", result_urls=("http://127.0.0.1:9/x.png",), credits=4,
                   remained_credits=96, cost_time=1.5)


def test_success_resumes_the_parked_chain_with_the_result(system):
    waiter = parked_waiter(chain=[_next_step(system, "after")])
    job_id, task_id = _submitted_job(system, "a resumed chain", waiter=waiter)
    assert completion.succeed(system.rt, system.app, job_id, _success(task_id)) is True
    result = system.result(waiter["id"])
    assert result.state == "SUCCESS" and result.result["job_id"] == job_id
    assert result.result["result_urls"] == ["http://127.0.0.1:9/x.png"] and result.result["credits"] == 4
    [message] = system.sent()
    assert message["task"] == "user.next" and message["args"][0]["task_id"] == task_id
    assert system.rt.limiter.in_flight_jobs() == []                 # finishing freed the slot


def test_finishing_twice_and_in_parallel_resumes_each_waiter_once(system):
    waiter = parked_waiter(chain=[_next_step(system, "once")])
    job_id, task_id = _submitted_job(system, "raced completion", waiter=waiter)
    wins = []
    threads = [threading.Thread(target=lambda: wins.append(
        completion.succeed(system.rt, system.app, job_id, _success(task_id)))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 7 + [True]
    assert len(system.sent()) == 1
    assert completion.finish_waiters(system.rt, system.app, job_id) == 0   # nothing left to resume


def test_failure_fails_the_waiter_with_the_upstream_code_and_sends_nothing_on(system):
    waiter = parked_waiter(chain=[_next_step(system, "never")])
    job_id, task_id = _submitted_job(system, "a failing job", waiter=waiter)
    assert completion.fail(system.rt, system.app, job_id, fail_code=500, fail_msg="internal error",
                           task_id=task_id)
    job = system.store.get(job_id)
    assert job["state"] == JobState.FAILED and job["last_error"] == "[500] internal error"
    result = system.result(waiter["id"])
    assert result.state == "FAILURE" and isinstance(result.result, GenerationFailed)
    assert result.result.fail_code == "500" and result.result.job_id == job_id
    assert system.sent() == []


def test_time_out_raises_generation_timeout_in_the_waiter(system):
    waiter = parked_waiter()
    job_id, task_id = _submitted_job(system, "never finishes", waiter=waiter)
    assert completion.time_out(system.rt, system.app, job_id)
    err = system.result(waiter["id"]).result
    assert isinstance(err, GenerationTimeout) and err.job_id == job_id and err.task_id == task_id
    # a late success after the deadline changes nothing
    assert completion.succeed(system.rt, system.app, job_id, _success(task_id)) is False
    assert system.store.get(job_id)["state"] == JobState.TIMED_OUT


def test_error_for_job_rebuilds_the_callers_exception_from_the_record(system):
    job_id, task_id = _submitted_job(system, "explained failure")
    completion.fail(system.rt, system.app, job_id, fail_code=422, fail_msg="content policy", task_id=task_id)
    err = completion.error_for_job(system.store.get(job_id))
    assert isinstance(err, GenerationFailed)
    assert (err.fail_code, err.fail_msg, err.job_id, err.task_id) == ("422", "content policy", job_id, task_id)
