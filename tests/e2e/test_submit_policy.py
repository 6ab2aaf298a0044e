"""Submitting under kie.ai's real limits: one sliding window for every worker, upstream 429/402/422/500 handling.

The simulator enforces 20 creates in any 10 s (as kie.ai does: over it, 429 and not queued).
"""

import subprocess
import sys

import pytest

import worker.errors as errors
from harness import API_KEY, unique
from worker.store.keys import account_id
from bench.schedule import max_in_window
from worker.cli.stack import wait_for

LIMIT, WINDOW = 20, 10.0




DEPLOYMENT = dict(callbacks=True, hmac=False, sim_args=("--rate-limit", "20/10s"),
                  extra_env={"KIE_RATE_LIMIT": "20/10s", "KIE_BACKOFF_BASE": "0.2", "KIE_BACKOFF_CAP": "1"},
                  start=dict(workers=3, concurrency=2))


def test_three_workers_share_one_window_and_see_no_429(dep):
    dep.sim("/_sim/reset", "POST")
    prompts = [unique(f"windowed {i}") for i in range(45)]
    results = [dep.generate(p).apply_async() for p in prompts]
    outs = [r.get(timeout=120) for r in results]
    assert all(o["state"] == "success" for o in outs)
    stats = dep.sim_stats()
    assert stats["creates_rejected"].get("429", 0) == 0
    assert max_in_window(stats["create_accept_times"], WINDOW) <= LIMIT
    assert [stats["prompts"][p] for p in prompts] == [1] * 45


def test_upstream_429_is_waited_out_without_spending_retries(dep):
    prompt = unique("[sim:create=429*2] busy upstream")
    job_id = unique("r429").replace(" ", "-")
    out = dep.generate(prompt, job_id=job_id).apply_async().get(timeout=60)
    assert out["state"] == "success"
    job = dep.job(job_id)
    assert int(job["errors"]) == 0          # 429s are waits, not errors
    assert int(job["attempts"]) == 3
    assert dep.creates_for(prompt) == 1


def test_500_then_200_succeeds_after_a_retry(dep):
    prompt = unique("[sim:create=500*1] flaky upstream")
    job_id = unique("r500").replace(" ", "-")
    out = dep.generate(prompt, job_id=job_id).apply_async().get(timeout=60)
    assert out["state"] == "success"
    job = dep.job(job_id)
    assert int(job["errors"]) == 1 and int(job["attempts"]) == 2
    assert dep.creates_for(prompt) == 1


def test_422_fails_at_once_with_the_upstream_message(dep):
    prompt = unique("[sim:create=422] refused")
    job_id = unique("r422").replace(" ", "-")
    with pytest.raises(errors.GenerationFailed) as info:
        dep.generate(prompt, job_id=job_id).apply_async().get(timeout=60)
    assert info.value.fail_code == "422" and info.value.fail_msg
    job = dep.job(job_id)
    assert job["state"] == "failed" and int(job["attempts"]) == 1
    assert dep.creates_for(prompt) == 0


def test_402_fails_the_job_and_pauses_everyone_until_resumed(dep):
    paused_key = f"{dep.prefix}:rl:{account_id(API_KEY)}:paused"
    with pytest.raises(errors.GenerationFailed) as info:
        dep.generate(unique("[sim:create=402] no credits")).apply_async().get(timeout=60)
    assert info.value.fail_code == "402"
    assert dep.redis.pttl(paused_key) > 0
    job_id = unique("after402").replace(" ", "-")
    prompt = unique("waits for credits")
    res = dep.generate(prompt, job_id=job_id).apply_async()
    job = dep.wait_job_state(job_id, "accepted")
    wait_for(lambda: dep.job(job_id).get("wait_reason") == "paused", 30, "job waiting on the pause")
    assert dep.creates_for(prompt) == 0
    env = {**dep.stack.env}
    done = subprocess.run([sys.executable, "-m", "worker.cli", "resume"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert dep.redis.pttl(paused_key) < 0
    assert res.get(timeout=60)["state"] == "success"
    assert job["state"] == "accepted"
