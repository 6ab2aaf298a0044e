"""Tests of worker.jobs.submission: one createTask attempt and the policy for each kind of answer.

Real Redis, kiesim over HTTP in this process, a real Celery app object; no worker.  The answer of each
create is chosen by a directive in the prompt (``[sim:create=CODE]``), as kiesim documents.
"""

from __future__ import annotations

import json

import pytest

from worker.jobs import submission
from worker.store.states import JobState


def test_a_ready_job_is_submitted_and_its_task_recorded(system):
    job_id = system.accept("a lighthouse at dusk")
    assert submission.attempt(system.rt, system.app, job_id) == "submitted"
    job = system.store.get(job_id)
    assert job["state"] == JobState.SUBMITTED and len(job["task_id"]) > 0
    assert system.store.job_for_task(job["task_id"]) == job_id
    assert system.sim_stats()["creates_accepted"] == 1
    assert system.rt.limiter.in_flight_jobs() == [job_id]     # the slot is held until the job finishes


def test_a_second_attempt_on_a_submitted_job_sends_nothing(system):
    job_id = system.accept("submitted once")
    assert submission.attempt(system.rt, system.app, job_id) == "submitted"
    # the claim answers with the job's state and nothing is POSTed (a redelivered kie.submit is harmless)
    assert submission.attempt(system.rt, system.app, job_id) == JobState.SUBMITTED
    assert system.sim_stats()["creates_total"] == 1


def test_429_cools_every_worker_down_and_keeps_the_job_waiting_without_spending_an_error(system):
    job_id = system.accept("crowded [sim:create=429]")
    assert submission.attempt(system.rt, system.app, job_id) == "rate-limited"
    job = system.store.get(job_id)
    assert job["state"] == JobState.ACCEPTED and int(job.get("errors") or 0) == 0
    assert job["wait_reason"] == "429"
    assert system.store.metrics.snapshot().value("kie_upstream_429_total") == 1
    # another job now waits for the shared cool-down instead of hitting kie.ai
    other = system.accept("polite")
    assert submission.attempt(system.rt, system.app, other) == "waiting:cooldown"
    assert system.sim_stats()["creates_total"] == 1


def test_402_fails_the_job_pauses_everyone_and_fails_the_waiter(system):
    job_id = system.accept("no money [sim:create=402]")
    waiter_id = system.waiter_ids[-1]
    assert submission.attempt(system.rt, system.app, job_id) == "failed"
    job = system.store.get(job_id)
    assert job["state"] == JobState.FAILED
    assert int(json.loads(job["outcome"])["fail_code"]) == 402
    assert system.rt.limiter.paused_for() > 0
    assert system.result(waiter_id).state == "FAILURE"
    other = system.accept("after the pause")
    assert submission.attempt(system.rt, system.app, other) == "waiting:paused"


@pytest.mark.parametrize("code", [422, 401])
def test_a_refused_create_fails_the_job_at_once_with_the_upstream_code(system, code):
    job_id = system.accept(f"refused [sim:create={code}]")
    assert submission.attempt(system.rt, system.app, job_id) == "failed"
    job = system.store.get(job_id)
    assert job["state"] == JobState.FAILED and int(json.loads(job["outcome"])["fail_code"]) == code
    assert system.rt.limiter.in_flight_jobs() == []       # the slot went back


def test_a_5xx_is_retried_with_backoff_then_succeeds(system):
    job_id = system.accept("flaky once [sim:create=500*1]")
    assert submission.attempt(system.rt, system.app, job_id) == "retrying"
    job = system.store.get(job_id)
    assert job["state"] == JobState.ACCEPTED and int(job["errors"]) == 1
    assert system.rt.limiter.in_flight_jobs() == []
    verdict = _attempt_when_due(system, job_id)
    assert verdict == "submitted"
    assert system.sim_stats()["creates_accepted"] == 1


def test_repeated_5xx_fails_after_max_attempts(system):
    job_id = system.accept("always down [sim:create=500]")
    verdicts = [submission.attempt(system.rt, system.app, job_id)]
    while verdicts[-1] == "retrying":
        verdicts.append(_attempt_when_due(system, job_id))
    assert verdicts == ["retrying", "retrying", "failed"]     # max_attempts = 3 in the fixture
    outcome = json.loads(system.store.get(job_id)["outcome"])
    assert int(outcome["fail_code"]) == 500 and "gave up after 3 attempts" in outcome["fail_msg"]


def test_a_create_that_times_out_after_sending_is_an_unknown_outcome_not_a_retry(system):
    system.sim_config(create_delay=2.0)          # longer than the client's 1 s timeout
    try:
        job_id = system.accept("slow create")
        assert submission.attempt(system.rt, system.app, job_id) == "unknown"
    finally:
        system.sim_config(create_delay=0.0)
    job = system.store.get(job_id)
    # still "submitting" (a create was sent and may exist), waiting in the due queue for the grace period
    assert job["state"] == JobState.SUBMITTING and job["wait_reason"] == "unknown"
    assert int(job["unknown_outcomes"]) == 1 and int(job["errors"]) == 1
    assert system.store.metrics.snapshot().value("kie_creates_unknown_outcome_total") == 1


def test_the_policy_table_sends_each_error_to_its_handler():
    from worker import errors
    handlers = {kind.__name__: handler.__name__ for kind, handler in submission.POLICY}
    assert handlers == {"RateLimited": "_rate_limited", "InsufficientCredits": "_no_credits",
                        "TransportError": "_transport", "MalformedResponse": "_unknown_outcome",
                        "RetryableUpstreamError": "_transient", "UpstreamError": "_refused"}
    # most specific first: no class is shadowed by an earlier, broader one
    kinds = [kind for kind, _ in submission.POLICY]
    for i, kind in enumerate(kinds):
        assert not any(issubclass(kind, earlier) for earlier in kinds[:i]), kind
    assert issubclass(errors.RateLimited, errors.UpstreamError)


def _attempt_when_due(system, job_id: str, timeout: float = 5.0) -> str:
    """Claim the job from the due queue once it is due (as the pump would), then attempt it."""
    from worker.cli.stack import wait_for
    wait_for(lambda: any(j == job_id for j, _ in system.store.claim_due("submit", horizon_ms=0, lease_ms=1000)),
             timeout, f"{job_id} due again", interval=0.01)
    return submission.attempt(system.rt, system.app, job_id)
