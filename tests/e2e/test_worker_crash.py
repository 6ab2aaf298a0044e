"""Workers SIGKILLed around ``kie.generate``'s create: every job completes, and one upstream task per job
unless the kill left the create's outcome unknown (then the job record says so).

A killed worker's unacked messages come back only after the broker's visibility timeout, so these
tests show that jobs do not depend on them: the job store (due queues with leases), the sweep and
the callbacks carry every job to its end.
"""

import math
import signal

import pytest

from harness import unique
from bench.schedule import shortest_span
from worker.cli.stack import wait_for

SHORT = {"KIE_HTTP_TIMEOUT": "3", "KIE_UNKNOWN_OUTCOME_GRACE": "4", "KIE_RATE_LIMIT": "20/10s"}


@pytest.fixture()
def dep(deploy):
    """A fresh deployment per test: each kills its worker."""
    with deploy("crash", callbacks=True, hmac=True, sim_args=("--rate-limit", "20/10s"), extra_env=SHORT,
                start=dict(workers=1, concurrency=1, user_worker=False)) as d:
        yield d


def _sending(dep, job_id):
    job = dep.job(job_id)
    return job is not None and "sending_at" in job


def test_kill_during_the_create_post_adopts_the_task_from_its_callback(dep):
    dep.sim_config(create_delay=2.0)
    prompt, job_id = unique("killed mid-POST"), unique("mid").replace(" ", "-")
    res = dep.generate(prompt, job_id=job_id).apply_async()
    # the simulator has made the task and holds its answer back: the create is in flight
    wait_for(lambda: _sending(dep, job_id) and dep.creates_for(prompt) == 1, 30, "create in flight")
    dep.stack.kill("w1", signal.SIGKILL)
    dep.sim_config(create_delay=0)
    dep.stack.start_worker("w2", concurrency=1)
    assert res.get(timeout=60)["state"] == "success"
    job = dep.job(job_id)
    assert dep.creates_for(prompt) == 1
    assert job["task_source"] == "callback"     # the callback revealed the task the dead worker created
    assert int(job["duplicates"]) == 0


def test_kill_during_the_post_with_lost_callback_resubmits_after_grace_and_says_so(dep):
    dep.sim_config(create_delay=2.0)
    prompt, job_id = unique("[sim:nocallback] killed, callback lost"), unique("lost").replace(" ", "-")
    res = dep.generate(prompt, job_id=job_id).apply_async()
    # the simulator has made the task and holds its answer back: the create is in flight
    wait_for(lambda: _sending(dep, job_id) and dep.creates_for(prompt) == 1, 30, "create in flight")
    dep.stack.kill("w1", signal.SIGKILL)
    dep.sim_config(create_delay=0)
    dep.stack.start_worker("w2", concurrency=1)
    assert res.get(timeout=90)["state"] == "success"
    job = dep.job(job_id)
    # no callback could reveal the first task: after the grace period the job was sent again
    assert dep.creates_for(prompt) == 2
    assert int(job["unknown_outcomes"]) >= 1 and int(job["resubmitted_after_unknown"]) == 1


def test_kill_before_the_post_loses_nothing(dep):
    # a shared 429 cool-down makes the jobs wait in Redis (not in a worker) before their create
    from harness import API_KEY
    from worker.store.keys import account_id
    # long enough that all four are accepted and waiting before it ends, even on a loaded machine
    dep.redis.set(f"{dep.prefix}:rl:{account_id(API_KEY)}:cooldown", "1", px=10_000)
    prompts = [unique(f"waiting {i}") for i in range(4)]
    job_ids = [unique(f"waiting-{i}").replace(" ", "-") for i in range(4)]
    results = [dep.generate(p, job_id=j).apply_async() for p, j in zip(prompts, job_ids)]
    wait_for(lambda: all((dep.job(j) or {}).get("state") == "accepted" for j in job_ids), 30,
             "jobs waiting in the job store")
    dep.stack.kill("w1", signal.SIGKILL)
    dep.stack.start_worker("w2", concurrency=1)
    assert [r.get(timeout=60)["state"] for r in results] == ["success"] * 4
    assert [dep.creates_for(p) for p in prompts] == [1] * 4


def test_kill_right_after_the_create_answered_creates_nothing_twice(dep):
    # one job at a time: a message the dead worker had fetched but not started comes back only after
    # the broker's visibility timeout (a property of the Redis broker, see README), which no test waits for
    prompt, job_id = unique("answered"), unique("ans").replace(" ", "-")
    res = dep.generate(prompt, job_id=job_id).apply_async()
    wait_for(lambda: dep.creates_for(prompt) == 1, 30, "create accepted")
    dep.stack.kill("w1", signal.SIGKILL)
    dep.stack.start_worker("w2", concurrency=1)
    assert res.get(timeout=60)["state"] == "success"
    assert dep.creates_for(prompt) == 1
    assert int(dep.job(job_id)["duplicates"]) == 0


def test_sixty_jobs_at_the_allowed_rate_with_a_worker_killed_mid_run(deploy):
    with deploy("sixty", callbacks=True, hmac=False, sim_args=("--rate-limit", "20/10s"), extra_env=SHORT,
                start=dict(workers=3, concurrency=1, user_worker=False)) as d:
        prompts = [unique(f"sixty {i}") for i in range(60)]
        results = [d.generate(p).apply_async() for p in prompts]
        wait_for(lambda: d.sim_stats()["creates_accepted"] >= 25, 60, "second window started")
        d.stack.kill("w2", signal.SIGKILL)
        assert [r.get(timeout=120)["state"] for r in results] == ["success"] * 60
        stats = d.sim_stats()
        times = sorted(stats["create_accept_times"])
        assert len(times) == 60 and stats["creates_rejected"].get("429", 0) == 0
        k = math.ceil(0.95 * 60)
        shortest = shortest_span(20, 10.0, k)
        rel = [round(t - times[0], 2) for t in times]
        assert times[k - 1] - times[0] <= shortest / 0.97, (times[k - 1] - times[0], shortest, rel)
        assert [stats["prompts"][p] for p in prompts] == [1] * 60
