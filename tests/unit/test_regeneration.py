"""Tests of worker.jobs.regeneration: transient upstream failures are generated again (a new upstream
task each, up to KIE_GENERATION_RETRIES), others fail at once.  Real Redis, the simulator in-process
over HTTP; the test plays the worker (submission.attempt, checking.check)."""

from __future__ import annotations

import pytest

from conftest import UNIT_REDIS_URL
from kiesim import SimConfig, SimServer
from runtime_support import BASELINE, accept, runtime_for
from worker.cli.stack import wait_for
from worker.errors import GenerationFailed
from worker.jobs import checking, regeneration, submission


@pytest.fixture(scope="module")
def server():
    with SimServer(SimConfig(**BASELINE)) as srv:
        yield srv


def make(server, prefix, **env):
    server.simulator.reset()
    rt, app = runtime_for(server.url, UNIT_REDIS_URL, prefix, **env)
    return rt, app


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


def test_transient_failures_are_generated_again_and_the_job_succeeds(server, prefix):
    rt, app = make(server, prefix)
    waiter = accept(rt, "regen-ok", "a lake [sim:fail=500:internal error*2]")
    assert run_to_end(rt, app, "regen-ok") == "succeeded"
    job = rt.store.get("regen-ok")
    assert job["generation"] == "3" and len(job["task_ids"].split()) == 3
    assert job["retired_task_ids"].split() == job["task_ids"].split()[:2]
    events = [e["event"] for e in rt.store.timeline("regen-ok")]
    assert events.count("regenerate") == 2 and events.count("create_sent") == 3 and events[-1] == "finished"
    assert server.simulator.stats()["prompts"]["a lake [sim:fail=500:internal error*2]"] == 3
    # the waiter was resumed once, with the final success
    assert rt.store.waiter_done("regen-ok", waiter["id"])
    assert app.AsyncResult(waiter["id"]).get(timeout=5)["task_id"] == job["task_id"]
    assert rt.store.metrics.snapshot().value("kie_regenerations_total") == 2


def test_transient_failures_beyond_the_limit_fail_the_job(server, prefix):
    rt, app = make(server, prefix)
    waiter = accept(rt, "regen-out", "a hill [sim:fail=500:internal error*9]")
    assert run_to_end(rt, app, "regen-out") == "failed"
    job = rt.store.get("regen-out")
    assert job["generation"] == "3" and len(job["task_ids"].split()) == 3     # 1 + KIE_GENERATION_RETRIES (2)
    with pytest.raises(GenerationFailed) as failed:
        app.AsyncResult(waiter["id"]).get(timeout=5)
    assert failed.value.fail_code == "500"


def test_a_content_failure_fails_at_once(server, prefix):
    rt, app = make(server, prefix)
    accept(rt, "regen-no", "a bad thing [sim:fail=422:content policy violation]")
    assert run_to_end(rt, app, "regen-no") == "failed"
    job = rt.store.get("regen-no")
    assert job["generation"] == "1" and len(job["task_ids"].split()) == 1
    assert "regenerate" not in [e["event"] for e in rt.store.timeline("regen-no")]


def test_generation_retries_zero_turns_it_off(server, prefix):
    rt, app = make(server, prefix, KIE_GENERATION_RETRIES="0")
    accept(rt, "regen-off", "a field [sim:fail=500*1]")
    assert run_to_end(rt, app, "regen-off") == "failed"
    assert rt.store.get("regen-off")["generation"] == "1"


def test_a_retired_task_reported_again_changes_nothing(server, prefix):
    rt, app = make(server, prefix)
    accept(rt, "regen-late", "a tree [sim:fail=500*1] [sim:duration=0.5]")
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
