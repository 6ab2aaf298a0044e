"""End to end, with callbacks: producer → kie.generate → simulator → signed callback → webhook → chain resumes.

One deployment for the module (simulator, gunicorn webhook, one worker with two processes, beat,
and a user's worker on its own queue); each test uses its own prompts and job ids.
"""

import os

import pytest

import worker.errors as errors
from harness import unique
from worker.cli.stack import wait_for


DEPLOYMENT = dict(callbacks=True, hmac=True, start=dict(concurrency=3))


def test_chain_sent_by_name_reaches_user_task_with_downloaded_files(dep):
    prompt = unique("a red bicycle")
    tag = unique("chain").replace(" ", "-")
    res = (dep.generate(prompt, image_size="16:9") | dep.download() | dep.user_task(tag)).apply_async()
    final = res.get(timeout=60)
    assert final["tag"] == tag
    received = dep.wait_recorded(tag)[0]
    assert received["state"] == "success"
    assert received["result_urls"] and received["task_id"]
    [f] = received["files"]
    assert os.path.exists(f["path"]) and f["bytes"] > 0 and f["content_type"] == "image/png"
    from PIL import Image
    with Image.open(f["path"]) as img:
        w, h = img.size
    assert abs(w / h - 16 / 9) < 0.05
    assert dep.creates_for(prompt) == 1
    job = dep.job(received["job_id"])
    assert job["state"] == "succeeded" and job["task_id"] == received["task_id"]


def test_generate_alone_get_returns_finished_result(dep):
    prompt = unique("a teapot")
    res = dep.generate(prompt, job_id=unique("solo").replace(" ", "-")).apply_async()
    out = res.get(timeout=60)
    assert out["state"] == "success" and out["model"] == "google/nano-banana"
    assert out["result_urls"][0].startswith(dep.sim_url)
    assert res.state == "SUCCESS"


def test_fifty_jobs_in_flight_each_created_once(dep):
    prompts = [unique(f"batch {i}") for i in range(50)]
    results = [dep.generate(p).apply_async() for p in prompts]
    outs = [r.get(timeout=120) for r in results]
    assert all(o["state"] == "success" for o in outs)
    assert len({o["task_id"] for o in outs}) == 50
    counts = dep.sim_stats()["prompts"]
    assert [counts.get(p) for p in prompts] == [1] * 50


def test_upstream_failure_fails_chain_runs_errback_once(dep):
    prompt = unique("[sim:fail=501:content policy violation]")
    tag = unique("err").replace(" ", "-")
    sig = dep.generate(prompt) | dep.download() | dep.user_task(tag + "-never")
    sig.link_error(dep.user_errback(tag))
    res = sig.apply_async()
    with pytest.raises(errors.GenerationFailed) as info:
        res.get(timeout=60)
    assert info.value.fail_code == "501"
    assert "content policy violation" in info.value.fail_msg
    assert res.state == "FAILURE"              # the last step
    assert res.parent.state == "FAILURE"       # download
    assert res.parent.parent.state == "FAILURE"  # generate
    calls = dep.wait_recorded(tag)
    assert len(calls) == 1
    assert dep.recorded(tag + "-never") == []


def test_duplicate_callbacks_resume_chain_once(dep):
    dep.sim_config(duplicate_callbacks=2)
    try:
        prompt = unique("three deliveries")
        tag = unique("dup").replace(" ", "-")
        job_id = unique("dup-job").replace(" ", "-")
        res = (dep.generate(prompt, job_id=job_id) | dep.user_task(tag)).apply_async()
        res.get(timeout=60)
        task_id = dep.job(job_id)["task_id"]
        # wait until all three deliveries reached the webhook, then check nothing ran twice
        wait_for(lambda: int(dep.job(job_id).get("callbacks", 0)) + _ignored(dep, task_id) >= 3, 30,
                 "three callback deliveries")
        wait_for(lambda: len([c for c in dep.sim_stats()["callbacks_sent"] if c["taskId"] == task_id]) >= 3, 30,
                 "simulator sent three callbacks")
        assert len(dep.recorded(tag)) == 1
        assert dep.creates_for(prompt) == 1
    finally:
        dep.sim_config(duplicate_callbacks=0)


def _ignored(dep, task_id):
    return sum(1 for c in dep.sim_stats()["callbacks_sent"] if c["taskId"] == task_id and c["status"] == 200)


def test_callback_before_create_response_resumes_once(dep):
    dep.sim_config(early_callback=True)
    try:
        prompt = unique("early bird")
        tag = unique("early").replace(" ", "-")
        job_id = unique("early-job").replace(" ", "-")
        res = (dep.generate(prompt, job_id=job_id) | dep.user_task(tag)).apply_async()
        out = res.get(timeout=60)
        assert out["received"]["state"] == "success"
        job = dep.job(job_id)
        assert job["state"] == "succeeded"
        assert len(job["task_ids"].split()) == 1 and int(job["duplicates"]) == 0
        assert len(dep.recorded(tag)) == 1
        assert dep.creates_for(prompt) == 1
    finally:
        dep.sim_config(early_callback=False)


@pytest.mark.parametrize("inp,field", [
    ({"prompt": "x" * 5001}, "prompt"),
    ({"prompt": "ok", "image_size": "7:5"}, "image_size"),
    ({"image_size": "1:1"}, "prompt"),
])
def test_invalid_input_fails_at_once_naming_field(dep, inp, field):
    before = dep.sim_stats()
    res = dep.producer.signature("kie.generate", kwargs={"input": inp}).apply_async()
    with pytest.raises(errors.InvalidInput) as info:
        res.get(timeout=30)
    assert field in info.value.errors
    after = dep.sim_stats()
    assert after["creates_accepted"] == before["creates_accepted"]
    assert sum(after["creates_rejected"].values()) == sum(before["creates_rejected"].values())


def test_same_job_id_twice_is_one_upstream_task(dep):
    prompt = unique("idempotent")
    job_id = unique("same").replace(" ", "-")
    a = dep.generate(prompt, job_id=job_id).apply_async()
    b = dep.generate(prompt, job_id=job_id).apply_async()
    ra, rb = a.get(timeout=60), b.get(timeout=60)
    assert ra["task_id"] == rb["task_id"]
    assert dep.creates_for(prompt) == 1
    c = dep.generate(prompt, job_id=job_id).apply_async()   # after completion: answered from the record
    assert c.get(timeout=30)["task_id"] == ra["task_id"]
    assert dep.creates_for(prompt) == 1


def test_webhook_health_and_metrics(dep):
    import requests
    r = requests.get(dep.web_url + "/healthz", timeout=5)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    m = requests.get(dep.web_url + "/metrics", timeout=5).text
    assert "kie_jobs_accepted_total" in m and "kie_in_flight " in m


def test_job_id_of_a_rejected_call_can_be_used_again_with_valid_input(dep):
    job_id = unique("retry-after-reject").replace(" ", "-")
    bad = dep.producer.signature("kie.generate", kwargs={"input": {"prompt": ""}, "job_id": job_id},
                                 queue=dep.queue).apply_async()
    with pytest.raises(errors.InvalidInput):
        bad.get(timeout=30)
    assert dep.job(job_id)["state"] == "rejected"
    prompt = unique("fixed input")
    assert dep.generate(prompt, job_id=job_id).apply_async().get(timeout=60)["state"] == "success"
    assert dep.creates_for(prompt) == 1
