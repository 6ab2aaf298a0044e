"""The Celery-internal part (worker/parking.py) through real workers: a parked ``kie.generate`` continues or
fails exactly as Celery would have continued the task itself, in every primitive.

Covered: link (callbacks) and link_error on ``generate`` itself, a group of ``generate``, a group of chains,
a chord with ``generate`` as a header member, inside header chains and as a header chain's last step, and a
failure in each of those.
"""

import pytest
from celery import chain, chord, group

import worker.errors as errors
from harness import unique
from worker.cli.stack import wait_for


DEPLOYMENT = dict(callbacks=True, hmac=False, start=dict(concurrency=3))


def _tag(name):
    return unique(name).replace(" ", "-")


def test_link_on_generate_receives_the_result_once(dep):
    tag = _tag("link")
    sig = dep.generate(unique("linked"))
    sig.link(dep.user_task(tag))
    out = sig.apply_async().get(timeout=60)
    [received] = dep.wait_recorded(tag)
    assert received == out


def test_link_error_on_generate_runs_once_and_link_does_not(dep):
    tag = _tag("linkerr")
    sig = dep.generate(unique("[sim:fail] linked failure"))
    sig.link(dep.user_task(tag + "-ok"))
    sig.link_error(dep.user_errback(tag))
    res = sig.apply_async()
    with pytest.raises(errors.GenerationFailed):
        res.get(timeout=60)
    [call] = dep.wait_recorded(tag)
    assert call == {"failed_task": res.id}
    assert dep.recorded(tag + "-ok") == []


def test_group_of_chains_each_resumes_its_own_chain(dep):
    tag = _tag("gchains")
    res = group(chain(dep.generate(unique(f"gc {i}")), dep.user_task(f"{tag}-{i}")) for i in range(3)).apply_async()
    outs = res.get(timeout=60)
    assert [o["tag"] for o in outs] == [f"{tag}-{i}" for i in range(3)]
    for i in range(3):
        assert len(dep.recorded(f"{tag}-{i}")) == 1


def test_group_of_chains_with_one_failure_fails_only_that_chain(dep):
    tag = _tag("gfail")
    res = group([chain(dep.generate(unique("gf ok")), dep.user_task(f"{tag}-ok")),
                 chain(dep.generate(unique("[sim:fail] gf bad")), dep.user_task(f"{tag}-bad"))]).apply_async()
    with pytest.raises(errors.GenerationFailed):
        res.get(timeout=60)
    dep.wait_recorded(f"{tag}-ok")
    assert res.results[0].get(timeout=30)["tag"] == f"{tag}-ok"
    wait_for(lambda: res.results[1].state == "FAILURE", 30, "failed chain's last step FAILURE")
    assert dep.recorded(f"{tag}-bad") == []


def test_generate_in_a_group(dep):
    prompts = [unique(f"group {i}") for i in range(3)]
    res = group(dep.generate(p) for p in prompts).apply_async()
    outs = res.get(timeout=60)
    assert [o["state"] for o in outs] == ["success"] * 3
    assert len({o["task_id"] for o in outs}) == 3


def test_chord_waits_for_generate_as_last_step_of_header(dep):
    tag = unique("chord").replace(" ", "-")
    pre = dep.producer.signature("user.record", args=("seed",), kwargs={"tag": tag + "-pre"},
                                 queue=dep.user_queue, immutable=True)
    header = [dep.generate(unique("chord a")),
              chain(pre, dep.generate(unique("chord b")).set(immutable=True)),
              chain(dep.generate(unique("chord c")), dep.download())]
    res = chord(header)(dep.user_task(tag))
    res.get(timeout=90)
    [received] = dep.wait_recorded(tag)
    assert len(received) == 3
    assert all(r["state"] == "success" for r in received)
    assert "files" in received[2]


def test_chord_body_fails_when_header_generation_fails(dep):
    tag = unique("chordfail").replace(" ", "-")
    header = [dep.generate(unique("ok one")), dep.generate(unique("[sim:fail] bad one"))]
    res = chord(header)(dep.user_task(tag))
    with pytest.raises(errors.GenerationFailed):
        res.get(timeout=60)
    # the body is failed when the last header member reports (the chord join), not before
    wait_for(lambda: res.state == "FAILURE", 60, "chord body FAILURE")
    assert dep.recorded(tag) == []
