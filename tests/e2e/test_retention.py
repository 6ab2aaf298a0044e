"""``KIE_JOB_RETENTION``: after a batch (successes, a failure, a rejected input, a second caller of one job
id), once the retention has passed, the deployment's prefix holds only live state.

Live state is what a deployment with no job at all still has: the counters, the due queues and the
jobs index (empty sorted sets vanish in Redis; the sweep trims expired jobs off the index), the in-flight set,
the fair scheduler's per-account hash (weights, virtual times, grants so far), and keys that carry their own TTL
(the rate log, cool-downs, the sweep's reclaim lock).  Nothing else may be left, with or without TTL.

Celery's result backend follows the same retention (``result_expires``): every result key a kie-queue process
stored for these jobs (``celery-task-meta-<id>`` of each ``kie.generate``, parked and resumed or not) has a TTL
of at most the retention, and is gone once it passed.  The user task's results are its own worker's business.
"""

import pytest
from celery.exceptions import CeleryError

from harness import API_KEY, unique
from worker.cli.stack import wait_for
from worker.store.keys import Keys, account_id

RETENTION_S = 2


DEPLOYMENT = {"callbacks": True, "hmac": False, "start": {"workers": 1, "concurrency": 2},
              "extra_env": {"KIE_JOB_RETENTION": str(RETENTION_S), "KIE_CALLBACK_GRACE": "3",
                            "KIE_GENERATION_RETRIES": "0"}}


def keys_with_ttl(dep) -> dict[str, int]:
    return {k.decode(): dep.redis.pttl(k) for k in dep.redis.scan_iter(f"{dep.prefix}:*", count=1000)}


def test_after_the_retention_only_live_state_is_left(dep):
    k, acct = Keys(dep.prefix), account_id(API_KEY)
    live_without_ttl = {k.metrics, k.due_submit, k.due_check, k.due_resume, k.jobs, k.inflight(acct), k.sched(acct)}
    live_with_ttl = {k.rate_log(acct), k.cooldown(acct), k.paused(acct), k.sweep_reclaim}

    tags = [unique("kept") for _ in range(6)]
    ok = [(dep.generate(unique(f"retained {i}")) | dep.user_task(tag)).apply_async() for i, tag in enumerate(tags)]
    shared = unique("shared").replace(" ", "-")
    twice = [dep.generate("one job, two callers", job_id=shared).apply_async() for _ in range(2)]
    failed = dep.generate(unique("[sim:fail] retained failure")).apply_async()
    rejected = dep.producer.signature("kie.generate", kwargs={"input": {"prompt": ""}, "job_id": unique("r")[-8:]},
                                      queue=dep.queue).apply_async()
    assert [r.get(timeout=90)["tag"] for r in ok] == tags
    assert {r.get(timeout=60)["job_id"] for r in twice} == {shared}
    job, ttl = dep.job(shared), dep.redis.pttl(k.job(shared))
    assert job is None or (job["state"] == "succeeded" and 0 < ttl <= RETENTION_S * 1000)   # expiring, or gone
    for res in (failed, rejected):
        with pytest.raises((CeleryError, Exception)):
            res.get(timeout=60)
    # the result keys kie-queue's workers stored: every kie.generate's (a chain's first step is parked, then
    # resumed by kie.complete), expiring with the retention like the job records
    results = [f"celery-task-meta-{r.parent.id}" for r in ok] + [
        f"celery-task-meta-{r.id}" for r in (*twice, failed, rejected)]
    ttls = dict(zip(results, (dep.redis.pttl(m) for m in results)))
    assert all(0 < ttl <= RETENTION_S * 1000 or ttl == -2 for ttl in ttls.values()), ttls   # -2: gone already

    def only_live():
        keys = keys_with_ttl(dep)
        return set(keys) <= live_without_ttl | live_with_ttl and keys
    keys = wait_for(only_live, 30, f"only live state under the prefix: {sorted(keys_with_ttl(dep))}")
    for key, ttl in keys.items():
        assert (key in live_with_ttl) == (ttl > 0) or ttl == -2, (key, ttl)   # -2: expired just now
    # the due queues hold no finished job, and the sweep trims the jobs index (every 30 s)
    for due in (k.due_submit, k.due_check, k.due_resume):
        assert dep.redis.zcard(due) == 0, due
    wait_for(lambda: not dep.redis.exists(*results), 10, "kie.generate's result keys expired")
    wait_for(lambda: dep.redis.zcard(k.jobs) == 0, 60, "the jobs index trimmed")
    assert k.metrics in keys
