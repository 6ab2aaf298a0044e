"""Tests of worker.jobs.checking: polling ``recordInfo`` and acting on a recorded callback.

Real Redis, kiesim over HTTP in this process (tasks finish 0.2 s after their create), a real Celery app
object; no worker.
"""

from __future__ import annotations

import json

from worker.cli.stack import wait_for
from worker.jobs import checking, submission
from worker.store.states import JobState


def _submitted(system, prompt: str) -> tuple[str, str]:
    job_id = system.accept(prompt)
    assert submission.attempt(system.rt, system.app, job_id) == "submitted"
    return job_id, system.store.get(job_id)["task_id"]


def _finished_upstream(system, task_id: str) -> None:
    wait_for(lambda: system.rt.client.record_info(task_id).terminal, 10, f"task {task_id} finished", interval=0.02)


def test_a_poll_before_the_task_finished_schedules_the_next_one(system):
    system.sim_config(duration=30)
    try:
        job_id, _ = _submitted(system, "slow picture")
        assert checking.check(system.rt, system.app, job_id) == "pending"
    finally:
        system.sim_config(duration=0.2)
    assert system.store.get(job_id)["state"] == JobState.SUBMITTED
    due = system.rt.redis.zscore(system.store.keys.due_check, job_id)
    assert due is not None                               # the next poll is planned
    assert system.store.metrics.snapshot().value("kie_polls_total") == 1


def test_a_poll_after_success_completes_the_job_and_resumes_the_waiter(system):
    job_id, task_id = _submitted(system, "polled picture")
    waiter_id = system.waiter_ids[-1]
    _finished_upstream(system, task_id)
    assert checking.check(system.rt, system.app, job_id) == "succeeded"
    outcome = json.loads(system.store.get(job_id)["outcome"])
    assert outcome["task_id"] == task_id and len(outcome["result_urls"]) == 1
    assert system.result(waiter_id).state == "SUCCESS"
    # a second poll of a finished job calls nobody and resumes nothing again
    before = system.sim_stats()["record_info_calls"]
    assert checking.check(system.rt, system.app, job_id) == JobState.SUCCEEDED
    assert system.sim_stats()["record_info_calls"] == before


def test_an_upstream_failure_fails_the_job_with_its_code(system):
    job_id, task_id = _submitted(system, "refused picture [sim:fail=400:content policy]")
    _finished_upstream(system, task_id)
    assert checking.check(system.rt, system.app, job_id) == "failed"
    outcome = json.loads(system.store.get(job_id)["outcome"])
    assert (outcome["fail_code"], outcome["fail_msg"]) == ("400", "content policy")


def test_past_its_deadline_an_unfinished_job_times_out(system):
    system.sim_config(duration=30)
    try:
        job_id = system.accept("too slow", timeout=0.3)
        assert submission.attempt(system.rt, system.app, job_id) == "submitted"
        wait_for(lambda: system.rt.redis.time()[0] * 1000 > int(system.store.get(job_id)["deadline"]), 5,
                 "deadline passed", interval=0.02)
        assert checking.check(system.rt, system.app, job_id) == "timed_out"
    finally:
        system.sim_config(duration=0.2)
    assert system.store.get(job_id)["state"] == JobState.TIMED_OUT


def test_a_callback_naming_another_jobs_task_is_ignored(system):
    job_id, task_id = _submitted(system, "mine")
    _, other_task = _submitted(system, "someone else's")
    state, _ = system.store.record_callback(job_id, {"task_id": other_task, "state": "success",
                                                     "result_urls": ["http://127.0.0.1:9/evil.png"]})
    assert checking.from_callback(system.rt, system.app, job_id) == "mismatch"
    assert system.store.get(job_id)["state"] == JobState.SUBMITTED
    assert system.store.metrics.snapshot().value("kie_callback_checks_failed_total", "task_mismatch") == 1


def test_a_callback_is_verified_against_record_info_before_it_completes_the_job(system):
    job_id, task_id = _submitted(system, "called back")
    _finished_upstream(system, task_id)
    # the callback claims success with a forged URL; recordInfo's answer is what completes the job
    system.store.record_callback(job_id, {"task_id": task_id, "state": "success",
                                          "result_urls": ["https://evil.example/forged.png"]})
    assert checking.from_callback(system.rt, system.app, job_id) == "succeeded"
    urls = json.loads(system.store.get(job_id)["outcome"])["result_urls"]
    assert urls and all(u.startswith(system.sim.url) for u in urls)


def test_created_for_reads_the_job_from_the_echoed_callback_url():
    from worker.kie.schemas import Outcome
    mine = Outcome(task_id="t1", state="success", param={"callBackUrl": "https://h/kie/callback/job-1?token=x"})
    other = Outcome(task_id="t1", state="success", param={"callBackUrl": "https://h/kie/callback/job-2?token=x"})
    unknown = Outcome(task_id="t1", state="success", param=None)
    assert checking.created_for(mine, "job-1") and not checking.created_for(other, "job-1")
    assert checking.created_for(unknown, "job-1")      # a record without parameters cannot tell
