"""Tests of worker.jobs.dispatch and worker.jobs.sweeping: due work handed out once per lease, slots reclaimed.

Real Redis, a real Celery app object whose broker is that Redis (the messages stay in the queue's list:
no worker runs), kiesim in this process for the sweep's credit check.
"""

from __future__ import annotations

from worker import task_names
from worker.cli.stack import wait_for
from worker.jobs import completion, dispatch, submission, sweeping


def test_hand_out_sends_one_submit_per_due_job_by_name(system):
    jobs = [system.accept(f"due {i}") for i in range(3)]
    assert dispatch.pump_submissions(system.rt, system.app) == 3
    sent = system.sent()
    assert [m["task"] for m in sent] == [task_names.SUBMIT] * 3
    assert sorted(m["args"][0] for m in sent) == sorted(jobs)


def test_a_handed_out_job_is_not_sent_again_while_its_lease_holds(system):
    system.accept("leased")
    assert dispatch.pump_submissions(system.rt, system.app) == 1
    assert dispatch.pump_submissions(system.rt, system.app) == 0       # leased: a second pump sends nothing
    assert len(system.sent()) == 1


def test_a_lost_message_is_handed_out_again_when_its_lease_ends(system):
    job_id = system.accept("message lost with a worker")
    assert dispatch.pump_submissions(system.rt, system.app) == 1
    system.rt.redis.delete(system.rt.settings.queue)                   # the worker that fetched it died
    wait_for(lambda: dispatch.pump_submissions(system.rt, system.app) == 1, 5, "handed out again", interval=0.05)
    assert [m["args"][0] for m in system.sent()] == [job_id]


def test_a_job_not_yet_due_is_not_handed_out(system):
    system.accept("later", first_claim_ms=60_000)
    assert dispatch.pump_submissions(system.rt, system.app) == 0
    assert system.sent() == []


def test_sweep_hands_out_due_checks_and_submissions(system):
    submitted = system.accept("to be polled")
    assert submission.attempt(system.rt, system.app, submitted) == "submitted"
    ready = system.accept("to be submitted")
    system.rt.redis.zadd(system.store.keys.due_check, {submitted: 0})   # its poll is due now
    counts = sweeping.sweep(system.rt, system.app)
    assert (counts["submits"], counts["checks"]) == (1, 1)
    by_task = {m["task"]: m["args"][0] for m in system.sent()}
    assert by_task == {task_names.SUBMIT: ready, task_names.CHECK: submitted}


def test_reclaim_frees_the_slots_of_finished_and_vanished_jobs_only(system):
    live = system.accept("live")
    done = system.accept("done")
    gone = system.accept("gone")
    for job_id in (live, done, gone):
        assert submission.attempt(system.rt, system.app, job_id) == "submitted"
    # a crash left the slot of a finished job held, and a job record vanished
    assert completion.fail(system.rt, system.app, done, fail_code=500, fail_msg="x")
    system.rt.redis.zadd(system.rt.limiter.inflight_key, {done: 1})
    system.rt.redis.delete(system.store.keys.job(gone))
    assert sweeping.reclaim_slots(system.rt) == 2
    assert system.rt.limiter.in_flight_jobs() == [live]
    assert system.store.metrics.snapshot().value("kie_slots_reclaimed_total") == 2


def test_sweep_lifts_a_credit_pause_once_kie_ai_reports_credits(system):
    system.rt.limiter.pause(300)
    waiting = system.accept("waits for credits", first_claim_ms=60_000)
    sweeping.sweep(system.rt, system.app)
    assert system.rt.limiter.paused_for() == 0
    assert system.sent() == []                    # handed out before the check: nothing was due yet
    assert dispatch.pump_submissions(system.rt, system.app) == 1       # woken: due now, not in 60 s
    assert [m["args"][0] for m in system.sent()] == [waiting]
