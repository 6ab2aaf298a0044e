"""What a Redis that lost its last second of writes leaves behind, and how the product recovers.

With ``appendfsync everysec`` an OS crash can lose up to about a second of acknowledged writes: the
job store comes back as it was a moment earlier, while kie.ai and the workers have moved on.  These
tests make exactly that state: they copy every key of the deployment (``DUMP``) at a chosen moment,
let the job go on, and put the copy back (``RESTORE``, deleting keys made since), together with the
broker queue and result of the steps involved, as a restarted Redis would have them.

* A reverted ``record_task``: the job is back in ``submitting`` with a create sent and no task, as if
  its answer never came; the callback that names the task adopts it (within the unknown-outcome
  grace, so nothing is sent again): one upstream task, the chain continued once.
* A reverted ``finish``: the job is back in ``submitted``, its waiter not done and its continuation
  gone from the broker; the next poll finishes it again and the chain is continued once.
"""

import pytest

from harness import unique
from worker.cli.stack import wait_for

ENV = {"KIE_HTTP_TIMEOUT": "3", "KIE_UNKNOWN_OUTCOME_GRACE": "30", "KIE_CALLBACK_GRACE": "3"}


class Snapshot:
    """Every key under the deployment's prefix plus ``extra`` keys, as DUMP payloads (None = absent)."""

    def __init__(self, dep, extra=()):
        self.redis = dep.redis
        self.pattern = f"{dep.prefix}:*"
        names = [k.decode() for k in self.redis.scan_iter(self.pattern, count=1000)] + list(extra)
        self.saved = {k: (self.redis.dump(k), self.redis.pttl(k)) for k in names}
        self.extra = list(extra)

    def restore(self) -> None:
        now = {k.decode() for k in self.redis.scan_iter(self.pattern, count=1000)} | set(self.extra)
        for key in now - set(self.saved):
            self.redis.delete(key)
        for key, (payload, ttl) in self.saved.items():
            if payload is None:
                self.redis.delete(key)
            else:
                self.redis.restore(key, max(ttl, 0), payload, replace=True)


@pytest.fixture()
def fresh(deploy):
    def make(**start):
        return deploy("lostwrites", start={"workers": 1, "concurrency": 2, **start}, callbacks=True, hmac=True,
                      extra_env=ENV)
    return make


def test_a_reverted_record_task_is_resolved_by_the_unknown_outcome_path(fresh):
    with fresh() as dep:
        dep.sim_config(create_delay=1.5)
        prompt, job_id, tag = unique("[sim:duration=6] reverted record"), unique("rt").replace(" ", "-"), unique("t")
        res = (dep.generate(prompt, job_id=job_id) | dep.user_task(tag)).apply_async()
        wait_for(lambda: (j := dep.job(job_id)) and "sending_at" in j and dep.creates_for(prompt) == 1, 30,
                 "create in flight")
        snap = Snapshot(dep)
        dep.wait_job_state(job_id, "submitted", timeout=30)
        snap.restore()                                   # the answer's record is lost
        assert dep.job(job_id)["state"] == "submitting" and "task_id" not in dep.job(job_id)
        assert res.get(timeout=90)["tag"] == tag
        job = dep.job(job_id)
        assert job["state"] == "succeeded" and job["task_source"] == "callback"
        assert int(job["duplicates"]) == 0 and "resubmitted_after_unknown" not in job
        assert dep.creates_for(prompt) == 1
        wait_for(lambda: dep.redis.llen(dep.user_queue) == 0, 30, "user queue drained")
        assert len(dep.recorded(tag)) == 1


def test_a_reverted_finish_is_redone_by_the_poll(fresh):
    with fresh(user_worker=False) as dep:
        prompt, job_id, tag = unique("[sim:duration=3] reverted finish"), unique("rf").replace(" ", "-"), unique("t")
        gen = dep.generate(prompt, job_id=job_id)
        res = (gen | dep.user_task(tag)).apply_async()
        waiter = res.parent.id
        dep.wait_job_state(job_id, "submitted", timeout=30)
        meta = f"celery-task-meta-{waiter}"
        snap = Snapshot(dep, extra=[dep.user_queue, meta])
        dep.wait_job_state(job_id, "succeeded", timeout=30)
        wait_for(lambda: dep.redis.llen(dep.user_queue) == 1, 30, "the continuation with the broker")
        wait_for(lambda: dep.redis.sismember(f"{dep.prefix}:job:{job_id}:done", waiter), 30, "waiter done")
        snap.restore()                                   # finish, the waiter's mark and the message are lost
        assert dep.job(job_id)["state"] == "submitted" and dep.redis.llen(dep.user_queue) == 0
        dep.wait_job_state(job_id, "succeeded", timeout=60)
        dep.start_user_worker()
        assert res.get(timeout=60)["tag"] == tag
        wait_for(lambda: dep.redis.llen(dep.user_queue) == 0, 30, "user queue drained")
        assert len(dep.recorded(tag)) == 1
        assert dep.creates_for(prompt) == 1
