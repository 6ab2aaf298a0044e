"""Polling-only mode (no KIE_CALLBACK_URL, no webhook): every job finishes through the sweep's recordInfo polls,
and a job with no outcome before its timeout fails with GenerationTimeout."""

import pytest

import worker.errors as errors
from harness import unique


DEPLOYMENT = dict(callbacks=False, hmac=False, start=dict(concurrency=2))


def test_jobs_complete_by_polling_without_any_webhook(dep):
    assert dep.web_url is None
    prompts = [unique(f"polled {i}") for i in range(5)]
    results = [(dep.generate(p) | dep.download()).apply_async() for p in prompts]
    outs = [r.get(timeout=90) for r in results]
    assert all(o["state"] == "success" and o["files"] for o in outs)
    stats = dep.sim_stats()
    assert stats["callbacks_sent"] == []          # nothing was called back
    assert stats["record_info_calls"] >= 5        # outcomes came from polls
    assert [stats["prompts"][p] for p in prompts] == [1] * 5


def test_job_without_outcome_times_out(dep):
    prompt = unique("[sim:duration=600] never finishes in time")
    job_id = unique("slow").replace(" ", "-")
    res = dep.generate(prompt, job_id=job_id, timeout=4).apply_async()
    with pytest.raises(errors.GenerationTimeout) as info:
        res.get(timeout=60)
    assert info.value.job_id == job_id and info.value.timeout == 4
    job = dep.job(job_id)
    assert job["state"] == "timed_out"
    assert dep.creates_for(prompt) == 1


def test_timed_out_job_releases_its_in_flight_slot(dep):
    prompt = unique("[sim:duration=600] holds a slot")
    job_id = unique("slot").replace(" ", "-")
    res = dep.generate(prompt, job_id=job_id, timeout=3).apply_async()
    with pytest.raises(errors.GenerationTimeout):
        res.get(timeout=60)
    inflight = [m.decode() for m in dep.redis.zrange(f"{dep.prefix}:rl:" + _account() + ":inflight", 0, -1)]
    assert job_id not in inflight


def _account():
    from harness import API_KEY
    from worker.store.keys import account_id
    return account_id(API_KEY)
