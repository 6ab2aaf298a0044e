"""Operator actions and the job rules of a re-run, through real workers, webhook, beat and simulator:
retry re-runs a failed job's parked post-processing once; cancel fails the chain once (before and after
submission) with its errbacks once; transient failCodes are generated again up to the limit; a job id
reused with another input is refused; retry_failed re-runs a failure; status prints the typed record
with no token."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import worker.errors as errors
from harness import WEBHOOK_SECRET, Deployment, unique
from worker.celery_conf import producer as make_producer
from worker.cli.stack import wait_for
from worker.ops import actions, queries
from worker.runtime import build
from worker.settings import Settings
from worker.tokens import job_token

KIE = str(Path(sys.executable).with_name("kie-queue"))


@pytest.fixture(scope="module")
def dep(tmp_path_factory):
    d = Deployment(tmp_path_factory.mktemp("ops"), callbacks=True, hmac=False)
    try:
        yield d.start(concurrency=3)
    finally:
        d.stop()


@pytest.fixture(scope="module")
def ops(dep):
    settings = Settings.from_env(dep.stack.env)
    rt = build(settings)
    yield rt, make_producer(settings, name="ops-tests")
    rt.redis.close()


def _id(name):
    return unique(name).replace(" ", "-")


def generate(dep, prompt, job_id, **kwargs):
    return dep.producer.signature("kie.generate", kwargs={"input": {"prompt": prompt}, "job_id": job_id, **kwargs},
                                  queue=dep.queue)


def check_now(dep, ops, job_id):
    """Run one more kie.check for the job and wait for it (a worker re-checking a finished job)."""
    rt, producer = ops
    # kie.check stores no result by default: ask for one, to wait for this run
    return producer.send_task("kie.check", args=[job_id], queue=dep.queue, ignore_result=False).get(timeout=30)


def test_retry_reruns_the_failed_job_and_its_parked_post_processing_once(dep, ops):
    rt, producer = ops
    job_id, tag = _id("retry"), _id("retry-tag")
    prompt = unique("[sim:fail=422:content policy*1] a vase")
    res = (generate(dep, prompt, job_id) | dep.user_task(tag)).apply_async()
    with pytest.raises(errors.GenerationFailed):
        res.get(timeout=60)
    [result] = actions.retry(rt, producer, [job_id])
    assert result["outcome"] == "retried" and result["generation"] == 2
    [run] = result["runs"]
    [step_id] = run["chain_task_ids"]
    assert step_id != res.id
    out = producer.AsyncResult(step_id).get(timeout=60)      # the re-run chain's end
    assert out["tag"] == tag
    [received] = dep.wait_recorded(tag)
    assert received == out["received"] and received["job_id"] == job_id and received["state"] == "success"
    check_now(dep, ops, job_id)
    assert len(dep.recorded(tag)) == 1                       # once, even after another check of the job
    assert res.state == "FAILURE"                            # the original AsyncResult stays failed
    assert dep.creates_for(prompt) == 2
    view = queries.find_job(rt, job_id)
    assert view.state == "succeeded" and view.generation == 2 and len(view.task_ids) == 2
    assert [g["error"]["code"] for g in view.generations] == ["422"]


def test_cancel_before_submission_fails_the_chain_once_and_never_submits(dep, ops):
    rt, producer = ops
    job_id, tag = _id("cx-early"), _id("cx-early-tag")
    prompt = unique("a ship")
    rt.limiter.pause(120)                                    # submissions wait (as after a 402)
    try:
        sig = generate(dep, prompt, job_id)
        sig.link_error(dep.user_errback(tag + "-err"))
        res = (sig | dep.user_task(tag)).apply_async()
        wait_for(lambda: (j := dep.job(job_id)) and j.get("wait_reason") == "paused", 30, "job waiting", interval=0.1)
        [result] = actions.cancel(rt, producer, [job_id])
        assert result == {"job_id": job_id, "outcome": "cancelled", "submitted": False, "task_id": None}
        with pytest.raises(errors.GenerationCancelled) as exc:
            res.get(timeout=60)
        assert exc.value.job_id == job_id and exc.value.submitted is False
        [call] = dep.wait_recorded(tag + "-err")
        assert call == {"failed_task": res.parent.id}
    finally:
        actions.resume(rt)
    check_now(dep, ops, job_id)
    assert len(dep.recorded(tag + "-err")) == 1 and dep.recorded(tag) == []
    assert dep.job(job_id)["state"] == "cancelled" and dep.creates_for(prompt) == 0


def test_cancel_after_submission_fails_the_chain_once_and_ignores_the_outcome(dep, ops):
    rt, producer = ops
    job_id, tag = _id("cx-late"), _id("cx-late-tag")
    prompt = unique("[sim:duration=3] a plane")
    sig = generate(dep, prompt, job_id)
    sig.link_error(dep.user_errback(tag + "-err"))
    res = (sig | dep.user_task(tag)).apply_async()
    task_id = dep.wait_job_state(job_id, "submitted")["task_id"]
    [result] = actions.cancel(rt, producer, [task_id])       # by the kie.ai taskId
    assert result == {"job_id": job_id, "outcome": "cancelled", "submitted": True, "task_id": task_id}
    with pytest.raises(errors.GenerationCancelled) as exc:
        res.get(timeout=60)
    assert exc.value.submitted is True
    dep.wait_recorded(tag + "-err")
    # kie.ai finishes the task anyway and calls back: the outcome is ignored
    wait_for(lambda: any(c["taskId"] == task_id for c in dep.sim_stats()["callbacks_sent"]), 60,
             "the late callback", interval=0.1)
    check_now(dep, ops, job_id)
    job = dep.job(job_id)
    assert job["state"] == "cancelled" and "outcome" in job and json.loads(job["outcome"])["submitted"] is True
    assert len(dep.recorded(tag + "-err")) == 1 and dep.recorded(tag) == []
    events = [e["event"] for e in queries.find_job(rt, job_id).timeline]
    assert events[-1] == "cancelled" and "task_recorded" in events


def test_transient_fail_codes_are_generated_again_up_to_the_limit(dep):
    recovers, gives_up = unique("[sim:fail=500:internal error*2] a bell"), unique("[sim:fail=500:internal error*9] a horn")
    ok = generate(dep, recovers, _id("regen-ok")).apply_async()
    bad = generate(dep, gives_up, _id("regen-bad")).apply_async()
    assert ok.get(timeout=90)["state"] == "success"
    with pytest.raises(errors.GenerationFailed) as exc:
        bad.get(timeout=90)
    assert exc.value.fail_code == "500"
    assert dep.creates_for(recovers) == 3 and dep.creates_for(gives_up) == 3     # 1 + KIE_GENERATION_RETRIES (2)
    content = generate(dep, unique("[sim:fail=400:content policy] a sign"), _id("regen-no")).apply_async()
    with pytest.raises(errors.GenerationFailed) as exc:
        content.get(timeout=60)
    assert exc.value.fail_code == "400"


def test_a_job_id_reused_with_a_different_input_is_invalid_input(dep):
    job_id = _id("reuse")
    first = dep.producer.signature("kie.generate", kwargs={"input": {"prompt": "a bee", "image_size": "4:3"},
                                                           "job_id": job_id}, queue=dep.queue).apply_async()
    out = first.get(timeout=60)
    same = dep.producer.signature("kie.generate", kwargs={"input": {"image_size": "4:3", "prompt": "a bee"},
                                                          "job_id": job_id}, queue=dep.queue).apply_async()
    assert same.get(timeout=60) == out                       # key order does not matter: the stored result
    other = generate(dep, "a wasp", job_id).apply_async()
    with pytest.raises(errors.InvalidInput) as exc:
        other.get(timeout=60)
    assert exc.value.errors == {"job_id": ["already used with a different input"]}
    assert dep.job(job_id)["state"] == "succeeded"


def test_retry_failed_reruns_a_failure_under_its_job_id_and_never_a_success(dep):
    job_id = _id("again")
    prompt = unique("[sim:fail=422:content policy*1] a drum")
    with pytest.raises(errors.GenerationFailed):
        generate(dep, prompt, job_id).apply_async().get(timeout=60)
    with pytest.raises(errors.GenerationFailed):                 # without the flag: the stored failure
        generate(dep, prompt, job_id).apply_async().get(timeout=60)
    assert dep.creates_for(prompt) == 1
    out = generate(dep, prompt, job_id, retry_failed=True).apply_async().get(timeout=60)
    assert out["state"] == "success" and dep.creates_for(prompt) == 2
    assert generate(dep, prompt, job_id, retry_failed=True).apply_async().get(timeout=60) == out
    assert dep.creates_for(prompt) == 2
    job = dep.job(job_id)
    assert job["generation"] == "2" and len(job["task_ids"].split()) == 2


def test_status_prints_the_typed_record_without_the_token(dep):
    job_id = _id("status")
    out = (generate(dep, unique("a lamp"), job_id) | dep.download()).apply_async().get(timeout=60)
    done = subprocess.run([KIE, "status", job_id], env=dep.stack.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert job_token(job_id, WEBHOOK_SECRET) not in done.stdout and "token=***" in done.stdout
    record = json.loads(done.stdout)
    assert record["state"] == "succeeded" and record["attempts"] == 1 and record["callbacks"] >= 1
    assert record["created_at"].endswith("Z") and record["finished_at"] > record["created_at"]
    assert record["credits_consumed"] == out["credits"] and record["task_ids"] == [out["task_id"]]
    assert record["files"][0]["path"] == out["files"][0]["path"] and record["files"][0]["bytes"] > 0
    events = [e["event"] for e in record["timeline"]]
    assert events[0] == "accepted" and "callback_received" in events and events[-1] == "finished"
