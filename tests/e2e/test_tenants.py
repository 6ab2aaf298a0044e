"""Tenants sharing one account's budget fairly, priorities, and two accounts side by side, end to end.

Real workers, beat, webhook and the simulator enforcing the limit per API key (as kie.ai does: over
it, 429 and not queued).  A job's create time is the simulator's own record where it can be told
apart (per account), else the job record's ``submitted_at`` (the Redis clock, on this host).
"""

from __future__ import annotations

import re
import time

import pytest
import requests

import worker.errors as errors
from bench.schedule import max_in_window
from harness import API_KEY, SECOND_API_KEY, Deployment, unique
from worker.cli.stack import wait_for
from worker.store.keys import account_id

def gen(dep, prompt: str, *, tenant: str | None = None, priority: int = 0, job_id: str | None = None):
    kwargs = {"input": {"prompt": prompt}, "priority": priority}
    if tenant:
        kwargs["tenant"] = tenant
    if job_id:
        kwargs["job_id"] = job_id
    return dep.producer.signature("kie.generate", kwargs=kwargs, queue=dep.queue)


def submitted_at(dep, job_ids) -> dict[str, float]:
    out = {}
    for job_id in job_ids:
        job = dep.job(job_id) or {}
        if job.get("submitted_at"):
            out[job_id] = int(job["submitted_at"]) / 1000.0
    return out


def waiting_in(dep, account: str, tenant: str) -> int:
    return int(dep.redis.zcard(f"{dep.prefix}:rl:{account}:q:{tenant}"))


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    d = Deployment(tmp_path_factory.mktemp("tenants"), callbacks=True, hmac=False,
                   sim_args=("--rate-limit", "20/10s"), extra_env={"KIE_RATE_LIMIT": "20/10s"})
    try:
        yield d.start(workers=2, concurrency=2, user_worker=False)
    finally:
        d.stop()


def test_a_small_tenant_is_served_beside_a_big_backlog_at_its_fair_share(shared):
    dep = shared
    dep.sim("/_sim/reset", "POST")
    account = account_id(API_KEY)
    tag = unique("fair").replace(" ", "-")
    a_ids = [f"{tag}-a{i:03d}" for i in range(300)]
    b_ids = [f"{tag}-b{i:02d}" for i in range(20)]
    for job_id in a_ids:
        gen(dep, f"{job_id} prompt", tenant="A", job_id=job_id).apply_async()
    wait_for(lambda: waiting_in(dep, account, "A") >= 250, 60, "A's backlog to wait in its queue", interval=0.1)
    t_b = time.time()
    for job_id in b_ids:
        gen(dep, f"{job_id} prompt", tenant="B", job_id=job_id).apply_async()
    wait_for(lambda: len(submitted_at(dep, b_ids)) == 20, 60, "B's 20 creates", interval=0.2)
    b_times = submitted_at(dep, b_ids)
    last_b = max(b_times.values())
    assert last_b - t_b <= 30, f"B's last create {last_b - t_b:.1f} s after its enqueue"
    assert waiting_in(dep, account, "A") > 200          # A still had its backlog all along
    # the share while both were ready: every create from B's first to its last
    first_b = min(b_times.values())
    a_times = [t for t in submitted_at(dep, a_ids).values() if first_b <= t <= last_b]
    share_b = 20 / (20 + len(a_times))
    assert abs(share_b - 0.5) <= 0.05, (share_b, len(a_times))
    stats = dep.sim_stats()
    assert stats["creates_rejected"].get("429", 0) == 0
    assert max_in_window(stats["create_accept_times"], 10.0) <= 20
    # the per-tenant figures, as /metrics shows them
    metrics = requests.get(dep.web_url + "/metrics", timeout=10).text
    assert f'kie_tenant_granted_total{{account="{account}",tenant="B"}} 20' in metrics
    waiting_a = re.search(rf'kie_tenant_waiting{{account="{account}",tenant="A"}} (\d+)', metrics)
    assert waiting_a and int(waiting_a.group(1)) > 150
    assert API_KEY not in metrics


@pytest.fixture(scope="module")
def two_accounts(tmp_path_factory):
    d = Deployment(tmp_path_factory.mktemp("accounts"), callbacks=True, hmac=False,
                   sim_args=("--rate-limit", "10/4s", "--api-key", SECOND_API_KEY),
                   extra_env={"KIE_RATE_LIMIT": "10/4s", "KIE_API_KEY_ACME_EU": SECOND_API_KEY})
    try:
        yield d.start(workers=2, concurrency=2, user_worker=False)
    finally:
        d.stop()


def sim_account(key: str) -> str:
    import hashlib
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def test_two_accounts_each_run_at_their_own_limit_and_a_402_pauses_only_its_own(two_accounts):
    dep = two_accounts
    dep.sim("/_sim/reset", "POST")
    tag = unique("acct").replace(" ", "-")
    mine = [gen(dep, f"{tag} default {i}", job_id=f"{tag}-d{i:02d}") for i in range(20)]
    theirs = [gen(dep, f"{tag} acme {i}", tenant="acme-eu", job_id=f"{tag}-e{i:02d}") for i in range(20)]
    results = [s.apply_async() for pair in zip(mine, theirs) for s in pair]
    assert all(r.get(timeout=90)["state"] == "success" for r in results)
    stats = dep.sim_stats()
    assert stats["creates_rejected"].get("429", 0) == 0
    one, two = stats["accounts"][sim_account(API_KEY)], stats["accounts"][sim_account(SECOND_API_KEY)]
    assert one["creates_accepted"] == 20 and two["creates_accepted"] == 20   # each tenant on its own key
    assert max_in_window(one["create_accept_times"], 4.0) == 10
    assert max_in_window(two["create_accept_times"], 4.0) == 10
    # at the same time: twice one account's rate (20 in some 4-s span)
    assert max_in_window(one["create_accept_times"] + two["create_accept_times"], 4.0) == 20

    # acme-eu's account runs out of credits: its job fails with 402 and only its submissions pause
    dep.sim("/_sim/accounts", "POST", json={"api_key": SECOND_API_KEY, "credits": 0})
    with pytest.raises(errors.GenerationFailed) as info:
        gen(dep, f"{tag} acme broke", tenant="acme-eu").apply_async().get(timeout=60)
    assert info.value.fail_code == "402"
    paused = f"{dep.prefix}:rl:{account_id(SECOND_API_KEY)}:paused"
    assert dep.redis.pttl(paused) > 0
    assert dep.redis.pttl(f"{dep.prefix}:rl:{account_id(API_KEY)}:paused") < 0
    held = [f"{tag}-held{i}" for i in range(3)]
    held_results = [gen(dep, f"{tag} acme held {i}", tenant="acme-eu", job_id=j).apply_async()
                    for i, j in enumerate(held)]
    more = [gen(dep, f"{tag} default after {i}").apply_async() for i in range(5)]
    assert all(r.get(timeout=60)["state"] == "success" for r in more)
    for job_id in held:
        job = dep.wait_job_state(job_id, "accepted")
        assert job.get("wait_reason") == "paused" and not job.get("task_id")
    assert not any(r.ready() for r in held_results)
    # credits back: the sweep's check lifts the pause (within its 30-s round) and the held jobs go
    dep.sim("/_sim/accounts", "POST", json={"api_key": SECOND_API_KEY, "credits": 1000})
    dep.redis.delete(f"{dep.prefix}:sweep:reclaim")          # let the next sweep run its checks now
    assert all(r.get(timeout=60)["state"] == "success" for r in held_results)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    d = Deployment(tmp_path_factory.mktemp("credits"), callbacks=True, hmac=False,
                   sim_args=("--rate-limit", "2/1s", "--credits", "100", "--credits-per-task", "4"),
                   extra_env={"KIE_RATE_LIMIT": "2/1s", "KIE_MIN_CREDITS": "60"})
    try:
        yield d.start(workers=1, concurrency=2, user_worker=False)
    finally:
        d.stop()


def test_the_credit_guard_pauses_below_the_minimum_and_resumes_by_itself(guarded):
    dep = guarded
    tag = unique("guard").replace(" ", "-")
    ids = [f"{tag}-{i:02d}" for i in range(16)]
    results = {j: gen(dep, f"{j} prompt", job_id=j).apply_async() for j in ids}
    paused = f"{dep.prefix}:rl:{account_id(API_KEY)}:paused"
    wait_for(lambda: dep.redis.pttl(paused) > 0, 60, "the low-credit pause", interval=0.1)
    assert dep.redis.get(paused).decode().startswith("low_credits: ")
    # below the minimum nothing more goes out and nothing fails: the rest wait for credits
    wait_for(lambda: all((dep.job(j) or {}).get("state") in ("succeeded", "accepted") for j in ids), 30,
             "the jobs in flight to finish", interval=0.2)
    done = [j for j in ids if dep.job(j)["state"] == "succeeded"]
    waiting = [j for j in ids if dep.job(j)["state"] == "accepted"]
    assert 10 <= len(done) < 16 and waiting
    assert not any(dep.job(j).get("task_id") for j in waiting)
    assert dep.sim_stats()["creates_accepted"] == len(done)         # nothing was sent for the waiting ones
    assert int(dep.redis.hget(f"{dep.prefix}:metrics", "jobs_failed") or 0) == 0
    assert all(dep.job(j)["credits"] == "4.0" for j in done)        # what each job consumed stays on it
    # credits are topped up: the sweep's next balance check resumes the account
    dep.sim("/_sim/accounts", "POST", json={"api_key": API_KEY, "credits": 1000})
    dep.redis.delete(f"{dep.prefix}:sweep:reclaim")
    assert all(results[j].get(timeout=60)["state"] == "success" for j in ids)
    assert dep.redis.pttl(paused) < 0
    assert all(dep.job(j)["credits"] == "4.0" for j in ids)
