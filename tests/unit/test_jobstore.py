"""Tests of worker.store.jobstore against the real Redis (database 5, a unique key prefix per test).

Every transition is a Lua script timed by the Redis server clock; leases and graces are made short
(a few hundred ms) and the tests poll, under deadlines, until the verdict they wait for holds.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from sim_support import wait_until
from worker.store.jobstore import TRIM_BATCH, TERMINAL, JobStore

MODEL = "google/nano-banana"


@pytest.fixture
def store(r, prefix):
    return JobStore(r, prefix)


def server_ms(r) -> int:
    sec, usec = r.time()
    return sec * 1000 + usec // 1000


def accept(store, job_id="job-1", waiter_id="w1", *, first_claim_ms=0, timeout=60, inp=None):
    return store.accept(job_id, model=MODEL, input=inp or {"prompt": "a cat"}, timeout=timeout,
                        waiter_id=waiter_id, waiter={"task_id": waiter_id, "chain": []},
                        first_claim_ms=first_claim_ms)


def submitted(store, job_id="job-1", task_id="t" * 32):
    accept(store, job_id)
    verdict, _, token = store.claim_submit(job_id, lease_ms=10_000, unknown_grace_ms=1000)
    assert verdict == "claimed"
    assert store.record_task(job_id, task_id, first_check_ms=5000, timeout_ms=60_000, source="create") == "recorded"
    return token


def parallel(n, fn):
    """Run fn(i) in n threads released together; returns the results in order."""
    barrier = threading.Barrier(n)
    results = [None] * n

    def run(i):
        barrier.wait()
        results[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return results


# -- accept and waiters -----------------------------------------------------------------------


def test_accept_creates_once_and_attaches_several_waiters(store, r):
    t0 = server_ms(r)
    assert accept(store, waiter_id="w1", first_claim_ms=5000, inp={"prompt": "a cat", "output_format": "png"}) == \
        ("accepted", True, True)
    # the same input with its keys in another order is the same input
    assert accept(store, waiter_id="w2", inp={"output_format": "png", "prompt": "a cat"}) == ("accepted", False, True)
    assert accept(store, waiter_id="w1", inp={"prompt": "a cat", "output_format": "png"}) == ("accepted", False, False)
    # another input under the same job id changes nothing and says so
    assert accept(store, waiter_id="w3", inp={"prompt": "something else"}) == ("conflict", False, False)

    job = store.get("job-1")
    assert job["state"] == "accepted" and job["model"] == MODEL and job["job_id"] == "job-1"
    assert json.loads(job["input"]) == {"prompt": "a cat", "output_format": "png"}   # the first input is kept
    assert (job["attempts"], job["errors"], job["duplicates"], job["callbacks"]) == ("0", "0", "0", "0")
    assert set(store.waiters("job-1")) == {"w1", "w2"}
    assert store.waiters("job-1")["w2"] == {"task_id": "w2", "chain": []}
    # due for submission first_claim_ms after acceptance (the caller tries at once; this covers its death)
    due = r.zscore(store.keys.due_submit, "job-1")
    assert t0 + 5000 <= due <= server_ms(r) + 5000


def test_accept_many_callers_at_once_make_one_job(store):
    results = parallel(8, lambda i: accept(store, waiter_id=f"w{i}"))
    assert sum(created for _, created, _ in results) == 1
    assert all(added for _, _, added in results)
    assert len(store.waiters("job-1")) == 8


def test_accept_on_a_submitted_job_adds_a_waiter_and_reports_the_state(store, r):
    submitted(store)
    assert accept(store, waiter_id="late") == ("submitted", False, True)
    assert r.zscore(store.keys.due_submit, "job-1") is None   # not queued for submission again


def test_reject(store):
    assert store.reject("bad", model=MODEL, error="prompt: required")
    job = store.get("bad")
    assert job["state"] == "rejected" and job["last_error"] == "prompt: required"
    assert not store.reject("bad", model=MODEL, error="again")
    accept(store, "exists")
    assert not store.reject("exists", model=MODEL, error="x")
    assert store.get("exists")["state"] == "accepted"
    assert store.get("missing") is None


# -- claim_submit -----------------------------------------------------------------------------


def test_claim_submit_claimed_then_busy(store, r):
    accept(store)
    verdict, wait, token = store.claim_submit("job-1", lease_ms=5000, unknown_grace_ms=1000)
    assert (verdict, wait) == ("claimed", 0) and len(token) == 32
    job = store.get("job-1")
    assert job["state"] == "submitting" and job["claim"] == token
    assert int(job["claimed_until"]) > server_ms(r) + 4000
    # the job stays in due:submit under its lease: a dead claimer's job comes back
    assert r.zscore(store.keys.due_submit, "job-1") == int(job["claimed_until"])

    verdict, wait, other = store.claim_submit("job-1", lease_ms=5000, unknown_grace_ms=1000)
    assert verdict == "busy" and 4000 < wait <= 5000 and other != token
    assert store.get("job-1")["claim"] == token


def test_claim_submit_missing_and_terminal(store, r):
    r.zadd(store.keys.due_submit, {"ghost": 0})
    assert store.claim_submit("ghost", lease_ms=100, unknown_grace_ms=100)[:2] == ("missing", 0)
    assert r.zscore(store.keys.due_submit, "ghost") is None
    submitted(store)
    assert store.claim_submit("job-1", lease_ms=100, unknown_grace_ms=100)[0] == "submitted"


def test_claim_submit_again_after_lease_expires_when_nothing_was_sent(store):
    accept(store)
    first = store.claim_submit("job-1", lease_ms=200, unknown_grace_ms=10_000)
    assert first[0] == "claimed"
    verdict, _, second = wait_until(
        lambda: (v := store.claim_submit("job-1", lease_ms=5000, unknown_grace_ms=10_000))[0] != "busy" and v,
        3.0, "the lease to expire")
    assert verdict == "claimed"
    assert store.get("job-1")["claim"] == second != first[2]
    assert store.mark_sending("job-1", first[2], send_lease_ms=5000) == 0          # the old holder lost its claim
    assert store.mark_sending("job-1", second, send_lease_ms=5000) == 1


def test_claim_submit_unknown_then_resubmit_after_grace(store, r):
    accept(store)
    _, _, token = store.claim_submit("job-1", lease_ms=150, unknown_grace_ms=300)
    assert store.mark_sending("job-1", token, send_lease_ms=150) == 1
    assert store.get("job-1")["sending_at"]

    # the lease runs out with the create's answer never recorded: its outcome is unknown
    verdict, wait, _ = wait_until(
        lambda: (v := store.claim_submit("job-1", lease_ms=150, unknown_grace_ms=300))[0] != "busy" and v,
        3.0, "the lease to expire")
    t_unknown = time.monotonic()
    assert verdict == "unknown" and 250 < wait <= 300
    job = store.get("job-1")
    assert job["unknown_outcomes"] == "1" and "unknown" in job["last_error"]
    assert r.zscore(store.keys.due_submit, "job-1") == int(job["unknown_since"]) + 300

    verdict2, wait2, _ = store.claim_submit("job-1", lease_ms=150, unknown_grace_ms=300)
    assert verdict2 == "unknown" and wait2 <= wait
    assert store.get("job-1")["unknown_outcomes"] == "1"       # counted once

    verdict, wait, token2 = wait_until(
        lambda: (v := store.claim_submit("job-1", lease_ms=5000, unknown_grace_ms=300))[0] != "unknown" and v,
        3.0, "the grace to pass")
    assert time.monotonic() - t_unknown >= 0.2
    assert (verdict, wait) == ("resubmit", 0)
    job = store.get("job-1")
    assert job["state"] == "submitting" and job["claim"] == token2
    assert "sending_at" not in job and "unknown_since" not in job
    assert job["resubmitted_after_unknown"] == "1"
    assert store.mark_sending("job-1", token2, send_lease_ms=5000) == 2


def test_claims_race_one_winner(store):
    accept(store)
    verdicts = parallel(8, lambda i: store.claim_submit("job-1", lease_ms=5000, unknown_grace_ms=1000)[0])
    assert sorted(verdicts) == ["busy"] * 7 + ["claimed"]


# -- defer ------------------------------------------------------------------------------------


def test_defer_with_a_stale_token_is_refused(store, r):
    accept(store)
    _, _, stale = store.claim_submit("job-1", lease_ms=100, unknown_grace_ms=1000)
    _, _, fresh = wait_until(
        lambda: (v := store.claim_submit("job-1", lease_ms=5000, unknown_grace_ms=1000))[0] == "claimed" and v,
        3.0, "a second claim")
    assert not store.defer("job-1", stale, delay_ms=100, reason="rate")
    job = store.get("job-1")
    assert job["state"] == "submitting" and job["claim"] == fresh and "wait_reason" not in job

    t0 = server_ms(r)
    assert store.defer("job-1", fresh, delay_ms=2500, reason="rate", error="429 upstream", count_error=True)
    job = store.get("job-1")
    assert job["state"] == "accepted" and "claim" not in job and job["wait_reason"] == "rate"
    assert job["last_error"] == "429 upstream" and job["errors"] == "1"
    assert t0 + 2500 <= r.zscore(store.keys.due_submit, "job-1") <= server_ms(r) + 2500
    assert not store.defer("job-1", fresh, delay_ms=0, reason="rate")    # the claim was given back


def test_defer_with_unknown_outcome_keeps_it_sending(store):
    accept(store)
    _, _, token = store.claim_submit("job-1", lease_ms=5000, unknown_grace_ms=1000)
    store.mark_sending("job-1", token, send_lease_ms=5000)
    assert store.defer("job-1", token, delay_ms=0, reason="transport", outcome_unknown=True)
    job = store.get("job-1")
    assert job["state"] == "submitting" and job["claimed_until"] == "0" and job["sending_at"]
    assert job["unknown_outcomes"] == "1" and job["errors"] == "0"
    # the next claimer is told the outcome is unknown, not handed a fresh claim
    assert store.claim_submit("job-1", lease_ms=5000, unknown_grace_ms=1000)[0] == "unknown"


# -- record_task ------------------------------------------------------------------------------


def test_record_task_recorded_known_duplicate(store, r):
    accept(store)
    store.claim_submit("job-1", lease_ms=5000, unknown_grace_ms=1000)
    t0 = server_ms(r)
    assert store.record_task("job-1", "a" * 32, first_check_ms=3000, timeout_ms=60_000, source="create") == \
        "recorded"
    job = store.get("job-1")
    assert job["state"] == "submitted" and job["task_id"] == "a" * 32 and job["task_source"] == "create"
    assert "claim" not in job and "sending_at" not in job
    assert t0 + 60_000 <= int(job["deadline"]) <= server_ms(r) + 60_000
    assert store.job_for_task("a" * 32) == "job-1"
    assert r.zscore(store.keys.due_submit, "job-1") is None
    assert t0 + 3000 <= r.zscore(store.keys.due_check, "job-1") <= server_ms(r) + 3000

    assert store.record_task("job-1", "a" * 32, first_check_ms=3000, timeout_ms=60_000, source="callback") == "known"
    assert store.get("job-1")["duplicates"] == "0"

    assert store.record_task("job-1", "b" * 32, first_check_ms=3000, timeout_ms=60_000, source="callback") == \
        "duplicate"
    job = store.get("job-1")
    assert job["duplicates"] == "1" and job["task_id"] == "a" * 32
    assert job["task_ids"].split() == ["a" * 32, "b" * 32]
    assert store.job_for_task("b" * 32) == "job-1"
    assert store.record_task("job-1", "b" * 32, first_check_ms=0, timeout_ms=1, source="poll") == "known"
    assert store.get("job-1")["duplicates"] == "1"
    assert store.record_task("nope", "c" * 32, first_check_ms=0, timeout_ms=1, source="create") == "missing"
    assert store.job_for_task("c" * 32) is None


def test_record_task_first_check_never_after_the_deadline(store, r):
    accept(store)
    t0 = server_ms(r)
    store.record_task("job-1", "a" * 32, first_check_ms=50_000, timeout_ms=2000, source="create")
    assert r.zscore(store.keys.due_check, "job-1") <= t0 + 2000 + 50


def test_record_task_task_ids_are_matched_whole(store):
    submitted(store, task_id="abc123")
    assert store.record_task("job-1", "abc", first_check_ms=0, timeout_ms=1, source="poll") == "duplicate"


# -- finish and callbacks ---------------------------------------------------------------------


def test_finish_exactly_once(store, r):
    submitted(store)
    assert store.finish("job-1", "succeeded", {"result_urls": ["https://x/1.png"]})
    assert not store.finish("job-1", "failed", {"fail_code": "500"}, error="late failure")
    job = store.get("job-1")
    assert job["state"] == "succeeded" and json.loads(job["outcome"]) == {"result_urls": ["https://x/1.png"]}
    assert "last_error" not in job and job["finished_at"]
    assert r.zscore(store.keys.due_check, "job-1") is None
    assert r.zscore(store.keys.due_submit, "job-1") is None
    assert not store.finish("missing", "failed", {})


def test_finish_race_one_winner(store):
    submitted(store)
    states = ["succeeded", "failed", "timed_out", "succeeded"] * 3
    results = parallel(len(states), lambda i: store.finish("job-1", states[i], {"by": i}))
    assert results.count(True) == 1
    winner = results.index(True)
    assert store.get("job-1")["state"] == states[winner]
    assert json.loads(store.get("job-1")["outcome"]) == {"by": winner}


def test_finish_only_terminal_states():
    assert set(TERMINAL) == {"succeeded", "failed", "timed_out", "cancelled", "rejected"}


def test_record_callback_ignored_after_terminal(store):
    submitted(store)
    assert store.record_callback("job-1", {"state": "success", "n": 1}) == ("submitted", 1)
    assert json.loads(store.get("job-1")["callback"]) == {"state": "success", "n": 1}
    assert store.record_callback("job-1", {"state": "success", "n": 2}) == ("submitted", 2)
    assert json.loads(store.get("job-1")["callback"])["n"] == 2
    store.finish("job-1", "succeeded", {})
    assert store.record_callback("job-1", {"state": "fail", "n": 3}) == ("succeeded", 3)
    job = store.get("job-1")
    assert json.loads(job["callback"])["n"] == 2 and job["state"] == "succeeded"
    assert store.record_callback("missing", {}) == ("missing", 0)


def test_claim_waiter_is_a_lease_until_marked_done(store, r):
    accept(store)
    token, taken_over = store.claim_waiter("job-1", "w1")
    assert not taken_over
    assert store.claim_waiter("job-1", "w1") is None            # leased to a live holder
    assert not store.waiter_done("job-1", "w1")                  # claimed is not done
    assert r.zscore(store.keys.due_resume, "job-1") >= server_ms(r) + 9000   # the sweep looks after the lease
    assert store.mark_waiter_done("job-1", "w1", token, drop_parked=True)
    assert store.waiter_done("job-1", "w1") and not store.waiter_done("job-1", "w2")
    assert store.claim_waiter("job-1", "w1") is None            # done
    assert "w1" not in store.waiters("job-1")                    # a resumed chain's parked copy is gone
    results = parallel(6, lambda i: store.claim_waiter("job-1", "w2"))
    assert sum(x is not None for x in results) == 1


def test_an_expired_waiter_lease_is_taken_over_and_the_late_mark_says_so(store):
    accept(store)
    token, _ = store.claim_waiter("job-1", "w1", lease_ms=100)
    lease = wait_until(lambda: store.claim_waiter("job-1", "w1", lease_ms=5000), 3.0, "the lease to expire")
    token2, taken_over = lease
    assert taken_over and token2 != token
    assert not store.mark_waiter_done("job-1", "w1", token, drop_parked=False)   # the first holder was late
    assert store.waiter_done("job-1", "w1") and "w1" in store.waiters("job-1")   # kept: not dropped


def test_resume_settled_only_when_every_waiter_is_done(store, r):
    submitted(store)
    accept(store, waiter_id="w2")
    store.finish("job-1", "failed", {"fail_code": "500"})
    assert r.zscore(store.keys.due_resume, "job-1") is not None
    for w in ("w1", "w2"):
        token, _ = store.claim_waiter("job-1", w)
        assert not store.resume_settled("job-1")
        store.mark_waiter_done("job-1", w, token, drop_parked=False)
    assert store.resume_settled("job-1")
    assert r.zscore(store.keys.due_resume, "job-1") is None


def test_finish_sets_the_retention_on_every_key_of_the_job(r, prefix):
    store = JobStore(r, prefix, retention_s=60)
    submitted(store)
    accept(store, waiter_id="w2")
    token, _ = store.claim_waiter("job-1", "w1")
    store.finish("job-1", "succeeded", {})
    k = store.keys
    for key in (k.job("job-1"), k.waiters("job-1"), k.waiter_leases("job-1"), k.task("t" * 32)):
        assert 55_000 < r.pttl(key) <= 60_000, key
    store.mark_waiter_done("job-1", "w1", token, drop_parked=True)
    assert 55_000 < r.pttl(k.waiters_done("job-1")) <= 60_000
    # a waiter that arrives after the finish expires with the job and is left for the sweep if its caller dies
    r.delete(k.waiters("job-1"))
    assert accept(store, waiter_id="late") == ("succeeded", False, True)
    assert 55_000 < r.pttl(k.waiters("job-1")) <= 60_000
    assert store.reject("bad", model=MODEL, error="x") and 55_000 < r.pttl(k.job("bad")) <= 60_000


# -- due queues -------------------------------------------------------------------------------


def test_claim_due_leases_what_it_returns(store, r):
    for i in range(3):
        accept(store, f"now-{i}")
    accept(store, "later", first_claim_ms=10_000)
    got = store.claim_due("submit", horizon_ms=0, lease_ms=5000)
    assert sorted(j for j, _ in got) == ["now-0", "now-1", "now-2"]
    assert all(due_in == 0 for _, due_in in got)
    assert store.claim_due("submit", horizon_ms=0, lease_ms=5000) == []     # leased
    for i in range(3):
        assert r.zscore(store.keys.due_submit, f"now-{i}") >= server_ms(r) + 4000

    ahead = store.claim_due("submit", horizon_ms=20_000, lease_ms=50_000)
    due_in = dict(ahead)["later"]
    assert 9000 < due_in <= 10_000


def test_claim_due_lease_expires_and_limit(store):
    for i in range(5):
        accept(store, f"j{i}")
    assert len(store.claim_due("submit", horizon_ms=0, lease_ms=200, limit=2)) == 2
    assert len(store.claim_due("submit", horizon_ms=0, lease_ms=200, limit=10)) == 3
    again = set()   # the two batches' leases end a few ms apart: collect until all five came back
    wait_until(lambda: again.update(j for j, _ in store.claim_due("submit", horizon_ms=0, lease_ms=5000))
               or len(again) == 5, 3.0, "the leases to expire")
    assert sorted(again) == [f"j{i}" for i in range(5)]


def test_claim_due_check_queue_is_separate(store):
    submitted(store, "checked")
    accept(store, "queued")
    assert [j for j, _ in store.claim_due("check", horizon_ms=10_000, lease_ms=5000)] == ["checked"]
    assert [j for j, _ in store.claim_due("submit", horizon_ms=0, lease_ms=5000)] == ["queued"]


def test_wake_submits(store, r):
    accept(store, "soon", first_claim_ms=30_000)
    accept(store, "much-later", first_claim_ms=600_000)
    accept(store, "already-due")
    assert store.claim_due("submit", horizon_ms=0, lease_ms=0) == [("already-due", 0)]
    assert store.wake_submits() == 2
    now = server_ms(r)
    assert r.zscore(store.keys.due_submit, "soon") <= now
    got = store.claim_due("submit", horizon_ms=0, lease_ms=5000)
    assert {j for j, _ in got} >= {"soon", "much-later"}
    assert store.wake_submits() >= 2     # leased members are "later" again


def test_reschedule_check_only_while_submitted(store, r):
    submitted(store)
    t0 = server_ms(r)
    assert store.reschedule_check("job-1", 7000)
    assert t0 + 7000 <= r.zscore(store.keys.due_check, "job-1") <= server_ms(r) + 7000
    store.finish("job-1", "failed", {})
    r.zadd(store.keys.due_check, {"job-1": 0})
    assert not store.reschedule_check("job-1", 7000)
    assert r.zscore(store.keys.due_check, "job-1") is None


def test_counters(store):
    store.incr("jobs_accepted")
    store.incr("jobs_accepted", 2)
    store.incr("jobs_failed")
    snap = store.metrics.snapshot()
    assert snap.value("kie_jobs_accepted_total") == 3
    assert snap.value("kie_jobs_finished_total", "failed") == 1


def test_keys_live_under_the_prefix(store, r):
    submitted(store)
    token, _ = store.claim_waiter("job-1", "w1")
    store.mark_waiter_done("job-1", "w1", token, drop_parked=False)
    store.incr("x")
    keys = {k.decode() for k in r.scan_iter(f"{store.keys.prefix}:*")}
    assert keys == {store.keys.job("job-1"), store.keys.waiters("job-1"), store.keys.waiters_done("job-1"),
                    store.keys.task("t" * 32), store.keys.due_check, store.keys.due_resume, store.keys.metrics,
                    store.keys.timeline("job-1"), store.keys.jobs}
    # the task index entry lives as long as the job can: its timeout plus the retention
    assert 0 < r.ttl(store.keys.task("t" * 32)) <= 60 + 7 * 86400


def test_mark_sending_extends_the_claim_over_the_request(store, r):
    accept(store)
    _, _, token = store.claim_submit("job-1", lease_ms=100, unknown_grace_ms=10_000)
    assert store.mark_sending("job-1", token, send_lease_ms=5000) == 1
    before = server_ms(r)
    assert r.zscore(store.keys.due_submit, "job-1") >= before + 4000      # not handed out again meanwhile
    wait_until(lambda: server_ms(r) > before + 200, 3.0, "the short claim lease to pass")
    verdict, wait, _ = store.claim_submit("job-1", lease_ms=100, unknown_grace_ms=10_000)
    assert verdict == "busy" and wait > 4000


# -- the timeline ------------------------------------------------------------------------------


def test_every_transition_appends_to_the_timeline_in_order(store, r):
    accept(store)
    _, _, token = store.claim_submit("job-1", lease_ms=10_000, unknown_grace_ms=1000)
    assert store.defer("job-1", token, delay_ms=0, reason="429", error="slow down")
    _, _, token = store.claim_submit("job-1", lease_ms=10_000, unknown_grace_ms=1000)
    assert store.mark_sending("job-1", token, send_lease_ms=10_000) == 1
    assert store.record_task("job-1", "t" * 32, first_check_ms=5000, timeout_ms=60_000, source="create") == "recorded"
    assert store.record_task("job-1", "u" * 32, first_check_ms=5000, timeout_ms=60_000, source="callback") == "duplicate"
    store.record_callback("job-1", {"state": "success", "task_id": "t" * 32})
    store.record_callback("job-1", {"state": "success", "task_id": "t" * 32, "again": 1})
    assert store.reschedule_check("job-1", 100, event="poll", detail="task generating")
    assert store.finish("job-1", "succeeded", {"ok": True})
    events = store.timeline("job-1")
    assert [e["event"] for e in events] == ["accepted", "rate_limited", "create_sent", "task_recorded",
                                           "duplicate_task", "callback_received", "duplicate_callback", "poll",
                                           "finished"]
    assert events[1]["detail"] == "429, 0 ms: slow down" and events[3]["detail"] == "t" * 32 + " (create)"
    assert events[-1]["detail"] == "succeeded"
    times = [e["t"] for e in events]
    assert times == sorted(times) and abs(times[-1] - server_ms(r)) < 5000


def test_the_timeline_keeps_the_last_events_only(store):
    from worker.store.keys import TIMELINE_CAP

    accept(store)
    _, _, token = store.claim_submit("job-1", lease_ms=10_000, unknown_grace_ms=1000)
    for i in range(TIMELINE_CAP + 20):
        assert store.defer("job-1", token, delay_ms=i, reason="rate")
        _, _, token = store.claim_submit("job-1", lease_ms=10_000, unknown_grace_ms=1000)
    events = store.timeline("job-1")
    assert len(events) == TIMELINE_CAP
    assert events[-1]["detail"] == f"rate, {TIMELINE_CAP + 19} ms" and events[0]["event"] == "wait"


def test_a_rerun_keeps_the_ended_generation_and_retires_its_tasks(store):
    submitted(store)
    assert store.finish("job-1", "failed", {"error": "GenerationFailed", "fail_code": "422", "fail_msg": "no"},
                        error="[422] no")
    token, _ = store.claim_waiter("job-1", "w1")
    store.mark_waiter_done("job-1", "w1", token, drop_parked=False)
    assert store.rerun("job-1", generation=5, reason="retried") == (0, "failed")     # not the generation seen
    # a swap that does not name every finished waiter: a chain failed after the caller looked
    assert store.rerun("job-1", generation=1, reason="retried", add_waiters={"w8": {"id": "w8"}}) == (0, "changed")
    assert store.rerun("job-1", generation=1, reason="retried", remove_waiters=["w1"],
                       add_waiters={"w9": {"id": "w9"}}) == (2, "accepted")
    job = store.get("job-1")
    assert job["state"] == "accepted" and job["generation"] == "2" and "task_id" not in job and "outcome" not in job
    assert job["retired_task_ids"] == "t" * 32 and job["task_ids"] == "t" * 32
    [ended] = json.loads(job["history"])
    assert (ended["generation"], ended["state"], ended["task_id"]) == (1, "failed", "t" * 32)
    assert ended["outcome"]["fail_code"] == "422"
    assert store.waiters("job-1") == {"w9": {"id": "w9"}}
    assert store.rerun("job-1", generation=2, reason="retried") == (0, "accepted")     # nothing to re-run now
    assert store.keys.prefix and store.redis.zscore(store.keys.due_submit, "job-1") is not None
    # running again, the job is live state: its keys no longer expire, and it leaves due:resume
    for key in (store.keys.job("job-1"), store.keys.waiters("job-1"), store.keys.timeline("job-1")):
        assert store.redis.pttl(key) == -1, key
    assert store.resume_settled("job-1") and store.redis.zscore(store.keys.due_resume, "job-1") is None


def test_job_parts_are_suffixes_of_the_record_key(store):
    """The Lua prologue's expire_job/persist_job name a job's keys as suffixes of its record's key."""
    k, rec = store.keys, store.keys.job("j")
    assert {k.waiters("j"), k.waiters_done("j"), k.waiter_leases("j"), k.timeline("j")} == \
        {rec + s for s in (":waiters", ":done", ":leases", ":timeline")}


def test_cancel_and_reject_expire_and_the_sweep_trims_the_index(r, prefix):
    store = JobStore(r, prefix, retention_s=1)
    accept(store, "c1")
    assert store.cancel("c1")[0]
    assert 0 < r.pttl(store.keys.job("c1")) <= 1000 and 0 < r.pttl(store.keys.timeline("c1")) <= 1000
    assert r.zscore(store.keys.due_resume, "c1") is not None        # its waiters are failed like a finish's
    assert store.reject("bad", model=MODEL, error="x") and 0 < r.pttl(store.keys.job("bad")) <= 1000
    accept(store, "live")
    wait_until(lambda: not r.exists(store.keys.job("c1"), store.keys.job("bad")), 5, "the records to expire")
    wait_until(lambda: store.trim_index() == 0 and r.zcard(store.keys.jobs) == 1, 5, "the index trimmed")
    assert r.zrange(store.keys.jobs, 0, -1) == [b"live"]
    # a backlog of several batches goes in one call, the sweep's: the entries of 1200 jobs whose records
    # expired, behind more than a batch of entries of jobs older than the retention that are still there
    held = [f"held-{i:03d}" for i in range(TRIM_BATCH + 1)]
    for job_id in held:
        accept(store, job_id)
    old_ms = int(r.time()[0]) * 1000 - 60_000
    r.zadd(store.keys.jobs, {job_id: old_ms for job_id in held})
    r.zadd(store.keys.jobs, {f"gone-{i:04d}": old_ms + 1 + i for i in range(1200)})
    assert store.trim_index(budget_s=0) == 0          # the bound: one batch, here all of them jobs still there
    assert store.trim_index() == 1200
    assert r.zrange(store.keys.jobs, 0, -1) == sorted(job_id.encode() for job_id in held) + [b"live"]


def test_regenerate_only_the_failing_current_task(store):
    submitted(store)
    outcome = {"error": "GenerationFailed", "fail_code": "500", "fail_msg": "internal error"}
    assert store.regenerate("job-1", task_id="x" * 32, outcome=outcome, detail="d") == (0, "submitted")
    assert store.regenerate("job-1", task_id="t" * 32, outcome=outcome, detail="d") == (2, "accepted")
    assert store.regenerate("job-1", task_id="t" * 32, outcome=outcome, detail="d") == (0, "accepted")   # once


def test_cancel_is_once_and_only_for_unfinished_jobs(store):
    accept(store)
    assert store.cancel("job-1") == (True, "cancelled", None, False)
    assert store.cancel("job-1") == (False, "cancelled", None, False)
    assert store.cancel("ghost") == (False, "missing", None, False)
    assert store.redis.zscore(store.keys.due_submit, "job-1") is None
    # a create that was in flight when the job was cancelled is kept for the record, nothing more
    assert store.record_task("job-1", "t" * 32, first_check_ms=1, timeout_ms=1000, source="create") == "cancelled"
    assert store.get("job-1")["state"] == "cancelled" and store.redis.zscore(store.keys.due_check, "job-1") is None
