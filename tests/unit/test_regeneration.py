"""Tests of worker.jobs.regeneration: transient upstream failures are generated again (a new upstream
task each, up to KIE_GENERATION_RETRIES), others fail at once.  The small real system of
``tests/unit/conftest.py`` (real Redis, kiesim in-process over HTTP, no worker): the test plays the
worker (submission.attempt, checking.check)."""

from __future__ import annotations

import dataclasses

import pytest

from system_support import parked_waiter
from worker import runtime
from worker.cli.stack import wait_for
from worker.errors import GenerationFailed
from worker.jobs import checking, regeneration, submission
from worker.ops import actions, queries

FAST = "[sim:duration=0]"


def make(system, **changes):
    rt = runtime.build(dataclasses.replace(system.rt.settings, **changes)) if changes else system.rt
    return rt, system.app


def run_to_end(rt, app, job_id, deadline=20.0):
    """Submit the job, then poll it (as the sweep's kie.check would) until it is finished."""
    assert submission.attempt(rt, app, job_id) == "submitted"

    def finished():
        verdict = checking.check(rt, app, job_id)
        return verdict in ("succeeded", "failed", "timed_out") and verdict
    return wait_for(finished, deadline, f"job {job_id} finished", interval=0.02)


def test_the_rule_names_transient_fail_codes_only():
    assert all(regeneration.transient(c) for c in ("500", 500, "455", "408", "503"))
    assert not any(regeneration.transient(c) for c in ("422", "400", "501", "505", None, "", "policy"))


def test_transient_failures_are_generated_again_and_the_job_succeeds(system):
    rt, app = make(system)
    waiter = parked_waiter()
    system.accept("a lake [sim:fail=500:internal error*2] " + FAST, job_id="regen-ok", waiter=waiter)
    assert run_to_end(rt, app, "regen-ok") == "succeeded"
    job = rt.store.get("regen-ok")
    assert job["generation"] == "3" and len(job["task_ids"].split()) == 3
    assert job["retired_task_ids"].split() == job["task_ids"].split()[:2]
    events = [e["event"] for e in rt.store.timeline("regen-ok")]
    assert events.count("regenerate") == 2 and events.count("create_sent") == 3 and events[-1] == "finished"
    assert system.sim_stats()["prompts"]["a lake [sim:fail=500:internal error*2] " + FAST] == 3
    # the waiter was resumed once, with the final success
    assert rt.store.waiter_done("regen-ok", waiter["id"])
    assert app.AsyncResult(waiter["id"]).get(timeout=5)["task_id"] == job["task_id"]
    assert rt.store.metrics.snapshot().value("kie_regenerations_total") == 2
    view = queries.find_job(rt, "regen-ok")
    assert view.regenerations == 2 and [g["error"]["code"] for g in view.generations] == ["500", "500"]


def test_transient_failures_beyond_the_limit_fail_the_job(system):
    rt, app = make(system)
    waiter = parked_waiter()
    system.accept("a hill [sim:fail=500:internal error*9] " + FAST, job_id="regen-out", waiter=waiter)
    assert run_to_end(rt, app, "regen-out") == "failed"
    job = rt.store.get("regen-out")
    assert job["generation"] == "3" and len(job["task_ids"].split()) == 3     # 1 + KIE_GENERATION_RETRIES (2)
    with pytest.raises(GenerationFailed) as failed:
        app.AsyncResult(waiter["id"]).get(timeout=5)
    assert failed.value.fail_code == "500"


def test_a_content_failure_fails_at_once(system):
    rt, app = make(system)
    system.accept("a bad thing [sim:fail=422:content policy violation] " + FAST, job_id="regen-no")
    assert run_to_end(rt, app, "regen-no") == "failed"
    job = rt.store.get("regen-no")
    assert job["generation"] == "1" and len(job["task_ids"].split()) == 1
    assert "regenerate" not in [e["event"] for e in rt.store.timeline("regen-no")]


def test_generation_retries_zero_turns_it_off(system):
    rt, app = make(system, generation_retries=0)
    system.accept("a field [sim:fail=500*1] " + FAST, job_id="regen-off")
    assert run_to_end(rt, app, "regen-off") == "failed"
    assert rt.store.get("regen-off")["generation"] == "1"


def test_a_retired_task_reported_again_changes_nothing(system):
    rt, app = make(system)
    system.accept("a tree [sim:fail=500*1] [sim:duration=0.5]", job_id="regen-late")
    assert submission.attempt(rt, app, "regen-late") == "submitted"
    first = rt.store.get("regen-late")["task_id"]
    wait_for(lambda: checking.check(rt, app, "regen-late") == "regenerating", 10, "first generation failed",
             interval=0.02)
    before = rt.store.get("regen-late")
    assert before["generation"] == "2" and before["task_id"] != first
    # a late callback of the retired task: ignored, the current generation carries on
    rt.store.record_callback("regen-late", {"task_id": first, "state": "fail", "fail_code": "500"})
    assert checking.from_callback(rt, app, "regen-late") == "mismatch"
    assert rt.store.get("regen-late")["generation"] == "2"


def test_a_deliberate_rerun_gets_the_whole_budget_again(system):
    rt, app = make(system)
    prompt = "a road [sim:fail=500:internal error*5] " + FAST
    system.accept(prompt, job_id="regen-again")
    assert run_to_end(rt, app, "regen-again") == "failed"                    # generations 1-3 failed
    assert actions.retry(rt, app, ["regen-again"])[0]["outcome"] == "retried"   # generation 4
    assert rt.store.get("regen-again")["regenerations"] == "0"
    assert run_to_end(rt, app, "regen-again") == "succeeded"                 # 4 and 5 fail, 6 succeeds
    job = rt.store.get("regen-again")
    assert (job["generation"], job["regenerations"]) == ("6", "2")
    assert system.sim_stats()["prompts"][prompt] == 6
