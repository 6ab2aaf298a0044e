"""A real worker killed by a failpoint at every step of submit, complete and resume; a fresh worker
carries each chain to its end exactly once.

The first worker runs with ``KIE_FAILPOINTS=<point>:exit`` and the solo pool, so the exit ends the
whole worker (its unacked message comes back only after the broker's visibility timeout, which no
test waits for).  A second worker without failpoints starts once the first is gone; the job store's
leases, the sweep and the callbacks must finish the job.  The one allowed duplicate: killed between
the broker taking the next step and the waiter's mark, the chain is continued twice, and the
``continuations_redispatched`` counter accounts for it.
"""

import json

import pytest
from kombu import Connection

from harness import AMQP_URL, unique
from worker import failpoints
from worker.store.metrics import Metrics
from worker.cli.stack import wait_for

SHORT = {"KIE_HTTP_TIMEOUT": "3", "KIE_UNKNOWN_OUTCOME_GRACE": "3", "KIE_CALLBACK_GRACE": "3"}

# point -> (user-task arrivals, continuations_redispatched, creates upstream)
EXPECTED = {
    "submit.after_accept": (1, 0, 1),
    "submit.after_claim": (1, 0, 1),
    "submit.after_mark_sending": (1, 0, 1),      # nothing was POSTed: resubmitted after the grace, one task
    "submit.after_create": (1, 0, 1),            # the callback reveals the task the dead worker created
    "submit.after_record": (1, 0, 1),
    "complete.before_finish": (1, 0, 1),         # the sweep's poll finishes the job
    "complete.after_finish": (1, 0, 1),          # due:resume: the sweep resumes the waiter
    "complete.after_waiter_claim": (1, 1, 1),    # the lease ends undone: re-dispatched once
    "resume.after_store_result": (1, 1, 1),      # result stored, chain not sent: re-dispatched once
    "complete.after_publish": (2, 1, 1),         # the documented window: sent, not marked
    "complete.after_mark_done": (1, 0, 1),
}


IN_THE_WEBHOOK = "complete.after_callback_recorded"
IN_THE_DOWNLOAD = "download.after_continue"
IN_THE_BROKER = "broker.after_claim"


def test_every_failpoint_has_a_test():
    assert set(EXPECTED) | {IN_THE_WEBHOOK, IN_THE_DOWNLOAD, IN_THE_BROKER} == set(failpoints.POINTS)


@pytest.fixture()
def dep(deploy):
    """A fresh deployment per test, with no worker: the test starts them."""
    with deploy("failpoints", start={"workers": 0}, callbacks=True, hmac=True, extra_env=SHORT) as d:
        yield d


def counter(dep, name: str) -> int:
    """A counter of the deployment's metrics (``name`` without ``kie_`` and ``_total``)."""
    return int(Metrics(dep.redis, f"{dep.prefix}:metrics").snapshot().value(f"kie_{name}_total"))


def settled(dep, job_id: str, waiter_id: str) -> bool:
    """The waiter is marked done and no resumption is pending for the job."""
    return (dep.redis.sismember(f"{dep.prefix}:job:{job_id}:done", waiter_id)
            and dep.redis.zscore(f"{dep.prefix}:due:resume", job_id) is None)


@pytest.mark.parametrize("point", list(EXPECTED))
def test_killed_at_a_failpoint_the_chain_completes_exactly_once(dep, point):
    arrivals, redispatched, creates = EXPECTED[point]
    w1 = dep.stack.start_worker("w1", concurrency=1, pool="solo", env={"KIE_FAILPOINTS": f"{point}:exit"})
    prompt, job_id, tag = unique(f"failpoint {point}"), unique("fp").replace(" ", "-"), unique("fp-tag")
    gen = dep.generate(prompt, job_id=job_id)
    res = (gen | dep.user_task(tag)).apply_async()
    wait_for(lambda: w1.poll() is not None, 60, f"worker killed at {point}")
    assert w1.returncode == 137
    dep.stack.start_worker("w2", concurrency=1)
    got = dep.wait_recorded(tag, 1, timeout=90)
    assert got[0]["job_id"] == job_id and got[0]["state"] == "success"
    assert res.get(timeout=30)["tag"] == tag
    waiter_id = res.parent.id
    wait_for(lambda: settled(dep, job_id, waiter_id), 60, "the waiter marked done")
    # a second continuation could only come from a re-dispatch, which the settled state excludes;
    # drain the user queue before counting arrivals
    wait_for(lambda: dep.redis.llen(dep.user_queue) == 0, 30, "user queue drained")
    assert len(dep.wait_recorded(tag, arrivals, timeout=30)) == arrivals
    assert counter(dep, "continuations_redispatched") == redispatched
    assert dep.creates_for(prompt) == creates
    job = dep.job(job_id)
    assert job["state"] == "succeeded" and int(job["duplicates"]) == 0


@pytest.mark.parametrize("point, redispatched", [("complete.after_finish", 0), ("complete.after_waiter_claim", 1)])
def test_killed_while_failing_a_chain_its_errback_runs_once(dep, point, redispatched):
    w1 = dep.stack.start_worker("w1", concurrency=1, pool="solo", env={"KIE_FAILPOINTS": f"{point}:exit"})
    prompt, job_id, tag = unique(f"[sim:fail] failpoint {point}"), unique("ff").replace(" ", "-"), unique("ff-tag")
    sig = dep.generate(prompt, job_id=job_id)
    sig.link_error(dep.user_errback(tag))
    res = (sig | dep.user_task(unique("never"))).apply_async()
    wait_for(lambda: w1.poll() is not None, 60, f"worker killed at {point}")
    dep.stack.start_worker("w2", concurrency=1)
    got = dep.wait_recorded(tag, 1, timeout=90)
    assert got == [{"failed_task": res.parent.id}]
    wait_for(lambda: settled(dep, job_id, res.parent.id), 60, "the waiter marked done")
    wait_for(lambda: dep.redis.llen(dep.user_queue) == 0, 30, "user queue drained")
    assert len(dep.recorded(tag)) == 1
    assert counter(dep, "continuations_redispatched") == redispatched
    job = dep.job(job_id)
    assert job["state"] == "failed"
    # the failed job's parked chain is kept (for an operator's retry) until the retention
    assert dep.redis.hexists(f"{dep.prefix}:job:{job_id}:waiters", res.parent.id)


def test_webhook_killed_after_recording_a_callback_the_poll_finishes_the_job(deploy):
    """Every gunicorn worker that stores a callback dies before sending ``kie.complete`` (gunicorn starts
    another; a redelivered callback is ignored as already recorded): the sweep's poll finishes the job."""
    env = {**SHORT, "KIE_FAILPOINTS": f"{IN_THE_WEBHOOK}:exit"}
    with deploy("webhookfp", start={"workers": 1}, callbacks=True, hmac=True, extra_env=env) as d:
        prompt, job_id, tag = unique("webhook failpoint"), unique("wf").replace(" ", "-"), unique("wf-tag")
        res = (d.generate(prompt, job_id=job_id) | d.user_task(tag)).apply_async()
        assert res.get(timeout=90)["tag"] == tag
        job = d.job(job_id)
        assert job["state"] == "succeeded" and int(job["callbacks"]) >= 1 and "callback" in job
        assert counter(d, "polls") >= 1
        wait_for(lambda: d.redis.llen(d.user_queue) == 0, 30, "user queue drained")
        assert len(d.recorded(tag)) == 1 and d.creates_for(prompt) == 1
        assert "exited with code 137" in d.stack.log_of("web")     # the failpoint was reached


@pytest.fixture()
def rabbit_dep(deploy):
    """As ``dep``, on RabbitMQ: a dead worker's unacknowledged message comes back as soon as its connection
    drops (the Redis broker would hold it for the visibility timeout)."""
    with deploy("failpoints-amqp", start={"workers": 0}, callbacks=True, hmac=True, extra_env=SHORT,
                broker_url=AMQP_URL) as d:
        yield d


def test_a_download_redelivered_after_it_sent_its_next_step_does_not_send_it_again(rabbit_dep):
    """The worker dies after kie.download's next step went out and its result was stored, before the message
    was acknowledged; the broker redelivers it to another worker.  The redelivery sees the stored SUCCESS
    and sends nothing: the user's task runs once (without the check it ran twice)."""
    dep = rabbit_dep
    w1 = dep.stack.start_worker("w1", concurrency=1, pool="solo", env={"KIE_FAILPOINTS": f"{IN_THE_DOWNLOAD}:exit"})
    job_id, tag = unique("fp-dl").replace(" ", "-"), unique("fp-dl-tag")
    res = (dep.generate(unique("failpoint download"), job_id=job_id) | dep.download() | dep.user_task(tag)) \
        .apply_async()
    wait_for(lambda: w1.poll() is not None, 60, "worker killed after the download's next step")
    assert w1.returncode == 137
    got = dep.wait_recorded(tag, 1, timeout=90)
    assert got[0]["job_id"] == job_id and got[0]["files"]
    assert res.get(timeout=30)["tag"] == tag
    dep.stack.start_worker("w2", concurrency=1)
    wait_for(lambda: "this redelivery does nothing" in dep.stack.log_of("w2"), 60, "the redelivered download")
    wait_for(lambda: dep.redis.llen(dep.user_queue) == 0, 30, "user queue drained")
    assert len(dep.recorded(tag)) == 1


def unacked_task_ids(dep) -> dict[str, str]:
    """Celery task id -> kombu delivery tag, for every message in the Redis broker's unacked hash."""
    out = {}
    for tag, record in dep.redis.hgetall("unacked").items():   # the hash is the whole database's
        task_id = (json.loads(record)[0].get("headers") or {}).get("id")
        if task_id:
            out[task_id] = tag.decode()
    return out


def test_a_worker_killed_right_after_taking_a_message_from_redis_loses_nothing(deploy):
    """kombu's own Redis channel pops a message and records it as unacknowledged a round trip later; a
    worker killed in between lost the message (the chaos bench lost a chain that way).  The claiming
    transport takes and records it in one step: killed right after the claim, the message is in the
    unacked hash (and no longer on the queue), and kombu's restore, which workers run after the
    visibility timeout (here asked for at once, for this one message), brings it back to a fresh worker."""
    with deploy("brokerfp", start={"workers": 0, "beat": False}, callbacks=True, hmac=True, extra_env=SHORT) as dep:
        prompt, job_id, tag = unique("broker failpoint"), unique("bf").replace(" ", "-"), unique("bf-tag")
        res = (dep.generate(prompt, job_id=job_id) | dep.user_task(tag)).apply_async()
        generate_id = res.parent.id
        assert dep.redis.llen(dep.queue) == 1
        w1 = dep.stack.start_worker("w1", concurrency=1, pool="solo", env={"KIE_FAILPOINTS": f"{IN_THE_BROKER}:exit"})
        wait_for(lambda: w1.poll() is not None, 60, "worker killed right after its claim")
        assert w1.returncode == 137
        assert dep.redis.llen(dep.queue) == 0
        held = unacked_task_ids(dep)
        assert generate_id in held and dep.job(job_id) is None   # taken, recorded, never started
        with Connection(dep.broker_url) as conn:
            conn.default_channel.qos.restore_by_tag(held[generate_id])
        assert dep.redis.llen(dep.queue) == 1 and generate_id not in unacked_task_ids(dep)
        dep.stack.start_worker("w2", concurrency=1)
        assert res.get(timeout=90)["tag"] == tag
        wait_for(lambda: dep.redis.llen(dep.user_queue) == 0, 30, "user queue drained")
        assert len(dep.recorded(tag)) == 1 and dep.creates_for(prompt) == 1
        assert dep.job(job_id)["state"] == "succeeded"
        assert generate_id not in unacked_task_ids(dep)   # acknowledged by w2
