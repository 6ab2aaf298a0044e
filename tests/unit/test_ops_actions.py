"""Tests of worker.ops (queries and actions) against the real Redis and the simulator in-process over
HTTP; the test plays the worker where a worker would carry a job on (submission.attempt, checking.check).
The end-to-end halves (real workers, chains, errbacks) are in tests/e2e/test_ops.py; this file is test_ops_actions.py (one basename per suite)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from system_support import parked_waiter
from worker import runtime
from worker.cli.stack import wait_for
from worker.errors import GenerationCancelled, InsufficientCredits
from worker.jobs import checking, submission
from worker.ops import actions, queries
from worker.settings import RateLimit
from worker.tokens import job_token

SECRET = "unit-ops-webhook-" + "secret-7f7f7f"


FAST = " [sim:duration=0]"


def with_settings(system, **changes):
    return runtime.build(dataclasses.replace(system.rt.settings, **changes))


@pytest.fixture
def env(system):
    """(runtime, send-only app) of the small real system; the limiter allows 5 creates per 10 s, 7 in flight."""
    rt = with_settings(system, rate_limit=RateLimit(5, 10.0), max_in_flight=7)
    yield rt, system.app
    forget_results(rt)
    rt.redis.close()


def forget_results(rt):
    """Delete the Celery results stored for the test's waiters (they live outside the key prefix)."""
    for key in rt.redis.scan_iter(f"{rt.settings.key_prefix}:job:*:waiters"):
        for waiter_id in rt.redis.hkeys(key):
            rt.redis.delete(b"celery-task-meta-" + waiter_id)


def accept(rt, job_id, prompt, *, waiter=None, tenant="default"):
    waiter = waiter or parked_waiter()
    rt.store.accept(job_id, model="google/nano-banana", input={"prompt": prompt}, timeout=60,
                    waiter_id=waiter["id"], waiter=waiter, first_claim_ms=2000, tenant=tenant)
    return waiter


def finish(rt, app, job_id):
    assert submission.attempt(rt, app, job_id) == "submitted"
    return wait_for(lambda: (v := checking.check(rt, app, job_id)) in ("succeeded", "failed") and v, 10,
                    f"job {job_id} finished", interval=0.02)


# -- queries -----------------------------------------------------------------------------------


def test_find_job_by_id_or_task_id_gives_the_typed_record_with_its_timeline(system):
    rt = with_settings(system, callback_url="http://127.0.0.1:9/hooks", webhook_secrets=(SECRET,))
    app = system.app
    accept(rt, "find-1", "a boat" + FAST)
    assert finish(rt, app, "find-1") == "succeeded"
    view = queries.find_job(rt, "find-1")
    assert view is not None and view.state == "succeeded"
    assert queries.find_job(rt, view.task_id) == view
    assert queries.find_job(rt, "nope") is None
    out = view.to_json()
    assert isinstance(out["attempts"], int) and out["attempts"] == 1 and out["generation"] == 1
    assert isinstance(out["callbacks"], int) and isinstance(out["timeout_seconds"], float)
    for name in ("created_at", "submitted_at", "finished_at", "updated_at"):
        assert out[name].endswith("Z") and out[name][10] == "T", (name, out[name])
    assert out["task_ids"] == [out["task_id"]] and out["result_urls"]
    assert out["credits_consumed"] is None      # polled: recordInfo carries no credit figures (callbacks do)
    assert out["error"] is None and out["input"] == {"prompt": "a boat" + FAST}
    # the callback URL is shown with its token masked: the token appears nowhere
    assert out["callback_url"] == "http://127.0.0.1:9/hooks/kie/callback/find-1?token=***"
    text = json.dumps(out)
    assert job_token("find-1", SECRET) not in text and SECRET not in text
    events = [e["event"] for e in out["timeline"]]
    assert events[0] == "accepted" and events[-1] == "finished"
    assert events.index("create_sent") < events.index("task_recorded") < events.index("finished")
    assert all(e["time"].endswith("Z") for e in out["timeline"])


def test_list_jobs_is_newest_first_with_state_since_and_limit(env):
    rt, app = env
    for i in range(4):
        accept(rt, f"list-{i}", f"a cup {i}")
    rt.store.cancel("list-1")
    rt.store.cancel("list-3")
    assert [j.job_id for j in queries.list_jobs(rt)] == ["list-3", "list-2", "list-1", "list-0"]
    assert [j.job_id for j in queries.list_jobs(rt, state="cancelled")] == ["list-3", "list-1"]
    assert [j.job_id for j in queries.list_jobs(rt, state="accepted", limit=1)] == ["list-2"]
    assert len(queries.list_jobs(rt, since_seconds=3600)) == 4
    assert queries.list_jobs(rt, limit=0) == []
    assert all(j.timeline == [] for j in queries.list_jobs(rt))
    assert [e["event"] for e in queries.list_jobs(rt, state="cancelled", with_timeline=True)[0].timeline] == \
        ["accepted", "cancelled"]
    rt.redis.zadd(rt.store.keys.jobs, {"list-0": rt.store.server_ms() - 7_200_000})   # two hours old
    assert "list-0" not in [j.job_id for j in queries.list_jobs(rt, since_seconds=3600)]


def test_limiter_status_shows_the_window_the_cap_and_pauses(env):
    rt, app = env
    quiet = queries.limiter_status(rt)
    figures = {"window_seconds": 10.0, "limit": 5, "creates_in_window": 0, "reserved": 0, "waiting": 0,
               "in_flight": 0, "cap": 7, "cooldown": None, "pause": None}
    assert {k: quiet[k] for k in figures} == figures
    assert [a["account"] for a in quiet["accounts"]] == [rt.limiter.account] and quiet["tenants"] == []
    for i in range(3):
        accept(rt, f"lim-{i}", f"a kite {i}", tenant="acme")
        _, _, token = rt.store.claim_submit(f"lim-{i}", lease_ms=2000, unknown_grace_ms=1000)
        assert rt.limiter.acquire(f"lim-{i}", token, tenant="acme")[0]
    accept(rt, "lim-w", "a kite")
    rt.limiter.cool_down(2.0)
    rt.limiter.pause(30.0)
    busy = queries.limiter_status(rt)
    assert (busy["creates_in_window"], busy["in_flight"], busy["waiting"]) == (3, 3, 4)   # 3 claimed, 1 due
    assert busy["cooldown"]["reason"] == "429 from kie.ai" and 0 < busy["cooldown"]["seconds_left"] <= 2.0
    assert busy["pause"]["reason"] == "402 insufficient credits" and 25 < busy["pause"]["seconds_left"] <= 30.0
    view = queries.find_job(rt, "lim-0")
    assert (view.tenant, view.priority) == ("acme", 0) and view.to_json()["tenant"] == "acme"
    assert queries.find_job(rt, "lim-w").tenant == "default"
    [acme] = busy["tenants"]
    assert (acme["tenant"], acme["in_flight"], acme["creates_in_window"], acme["waiting"]) == ("acme", 3, 3, 0)
    assert actions.resume(rt) == {"resumed": True, "woken": 4}
    assert queries.limiter_status(rt)["pause"] is None


def test_credits_asks_kie_ai(env, system):
    rt, _ = env
    try:
        system.sim_config(credits=123.5)
        assert queries.credits(rt) == 123.5
        system.sim_config(credits=0)
        assert queries.credits(rt) == 0.0
    finally:
        system.sim_config(credits=1_000_000)


# -- actions -----------------------------------------------------------------------------------


def test_cancel_before_submission_means_never_submitted_and_the_waiter_fails_once(env, system):
    rt, app = env
    waiter = accept(rt, "cx-1", "a dog")
    [result] = actions.cancel(rt, app, ["cx-1"])
    assert result == {"job_id": "cx-1", "outcome": "cancelled", "submitted": False, "task_id": None}
    assert submission.attempt(rt, app, "cx-1") == "cancelled"          # a due submission finds nothing to send
    assert checking.check(rt, app, "cx-1") == "cancelled"              # what the sent kie.check does: fail chains
    assert checking.check(rt, app, "cx-1") == "cancelled"              # again: nothing more
    with pytest.raises(GenerationCancelled) as exc:
        app.AsyncResult(waiter["id"]).get(timeout=5)
    assert exc.value.job_id == "cx-1" and exc.value.submitted is False
    assert system.sim_stats()["creates_total"] == 0
    # the kie.check that fails the chains inside a worker was sent by name to the deployment's queue
    assert [m["task"] for m in system.sent()] == ["kie.check"]
    assert actions.cancel(rt, app, ["cx-1", "ghost"]) == [
        {"job_id": "cx-1", "outcome": "not_cancellable: cancelled"}, {"job_id": "ghost", "outcome": "not_found"}]


def test_cancel_after_submission_ignores_the_later_outcome(env, system):
    rt, app = env
    waiter = accept(rt, "cx-2", "a cat [sim:duration=0.3]")
    assert submission.attempt(rt, app, "cx-2") == "submitted"
    task_id = rt.store.get("cx-2")["task_id"]
    [result] = actions.cancel(rt, app, [task_id])                    # by the kie.ai taskId
    assert result == {"job_id": "cx-2", "outcome": "cancelled", "submitted": True, "task_id": task_id}
    assert rt.limiter.in_flight() == 0
    wait_for(lambda: system.sim.simulator.task_record(task_id)["state"] == "success", 5, "upstream done",
             interval=0.02)
    assert checking.check(rt, app, "cx-2") == "cancelled"
    job = rt.store.get("cx-2")
    assert job["state"] == "cancelled" and json.loads(job["outcome"])["error"] == "GenerationCancelled"
    with pytest.raises(GenerationCancelled) as exc:
        app.AsyncResult(waiter["id"]).get(timeout=5)
    assert exc.value.submitted is True and "may still bill" in exc.value.message
    assert [m["task"] for m in system.sent()] == ["kie.check"]


def test_retry_refuses_what_is_not_a_failure(env):
    rt, app = env
    accept(rt, "rt-ok", "a pear" + FAST)
    assert finish(rt, app, "rt-ok") == "succeeded"
    accept(rt, "rt-wait", "a plum")
    assert actions.retry(rt, app, ["rt-ok", "rt-wait", "ghost"]) == [
        {"job_id": "rt-ok", "outcome": "not_retryable: succeeded"},
        {"job_id": "rt-wait", "outcome": "not_retryable: accepted"},
        {"job_id": "ghost", "outcome": "not_found"}]


def test_retry_runs_a_failed_job_again_with_new_ids_for_its_parked_chain(env):
    rt, app = env
    step = {"task": "user.step", "args": [], "kwargs": {}, "options": {"task_id": "step-1", "queue": "user"},
            "subtask_type": None, "immutable": False}
    waiter = accept(rt, "rt-1", "a fig [sim:fail=422:content policy*1]" + FAST, waiter=parked_waiter(chain=[step]))
    assert finish(rt, app, "rt-1") == "failed"
    assert rt.store.waiter_done("rt-1", waiter["id"])
    [result] = actions.retry(rt, app, ["rt-1"])
    assert result["outcome"] == "retried" and result["generation"] == 2
    [run] = result["runs"]
    assert run["replaces"] == waiter["id"] and run["task_id"] != waiter["id"]
    assert run["chain_task_ids"] != ["step-1"] and len(run["chain_task_ids"]) == 1
    assert set(rt.store.waiters("rt-1")) == {run["task_id"]}
    assert actions.retry(rt, app, ["rt-1"]) == [{"job_id": "rt-1", "outcome": "not_retryable: accepted"}]
    assert finish(rt, app, "rt-1") == "succeeded"
    job = queries.find_job(rt, "rt-1")
    assert job.generation == 2 and len(job.task_ids) == 2
    assert [g["state"] for g in job.generations] == ["failed"] and job.generations[0]["error"]["code"] == "422"
    assert "retried" in [e["event"] for e in job.timeline]
    # the re-run waiter got the result; the original stays failed
    assert app.AsyncResult(run["task_id"]).get(timeout=5)["job_id"] == "rt-1"
    assert app.AsyncResult(waiter["id"]).state == "FAILURE"


def test_a_402_pause_is_visible_and_resume_lifts_it(env, system, request):
    rt, app = env
    system.sim_config(credits=0)
    request.addfinalizer(lambda: system.sim_config(credits=1_000_000))
    accept(rt, "pay-1", "a coin")
    assert submission.attempt(rt, app, "pay-1") == "failed"
    assert queries.limiter_status(rt)["pause"]["reason"] == "402 insufficient credits"
    assert queries.find_job(rt, "pay-1").error["code"] == "402"
    with pytest.raises(InsufficientCredits):
        rt.client.create_task({"model": "google/nano-banana", "input": {"prompt": "x"}})
    system.sim_config(credits=1_000_000)
    actions.resume(rt)
    assert queries.limiter_status(rt)["pause"] is None
