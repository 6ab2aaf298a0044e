"""Tests of worker.jobs.parking.rerun: a parked chain made runnable again under new task ids.
(Parking and resuming through real workers: tests/e2e/test_parking.py and tests/e2e/test_ops.py.)"""

from __future__ import annotations

import json

from celery import Celery, chain, group

from worker.jobs import parking


def ids_in(node, found=None):
    found = [] if found is None else found
    if isinstance(node, dict):
        options = node.get("options")
        if isinstance(options, dict) and options.get("task_id"):
            found.append(options["task_id"])
        for value in node.values():
            ids_in(value, found)
    elif isinstance(node, list):
        for value in node:
            ids_in(value, found)
    return found


def parked_chain():
    app = Celery("parking-tests", set_as_current=False, backend="cache+memory://")
    c = chain(app.signature("kie.generate", kwargs={"input": {"prompt": "p"}}),
              app.signature("kie.download", queue="kie"),
              group(app.signature("user.a", queue="user"), app.signature("user.b", queue="user")),
              app.signature("user.c", queue="user", priority=3))
    c.freeze()
    head, *rest = c.tasks
    errback = app.signature("user.on_error", queue="user").freeze()
    return {"id": head.id, "task": "kie.generate", "chain": [dict(s) for s in reversed(rest)], "callbacks": [],
            "errbacks": [dict(app.signature("user.on_error", queue="user", task_id=errback.id))],
            "chord": {"task": "celery.chord"}, "group": "g1", "group_index": 0, "root_id": head.id,
            "parent_id": None, "priority": None}


def test_rerun_gives_every_step_a_new_id_and_keeps_everything_else():
    original = parked_chain()
    snapshot = json.dumps(original, sort_keys=True)
    again = parking.rerun(original)
    assert json.dumps(original, sort_keys=True) == snapshot            # the stored original is untouched
    old_ids, new_ids = ids_in(original["chain"]) + [original["id"]], ids_in(again["chain"]) + [again["id"]]
    assert len(new_ids) == len(old_ids) and len(set(new_ids)) == len(set(old_ids)) and not set(old_ids) & set(new_ids)
    assert ids_in(again["errbacks"]) != ids_in(original["errbacks"])
    assert again["rerun_of"] == original["id"] and again["root_id"] == original["root_id"]
    assert (again["chord"], again["group"], again["group_index"]) == (None, None, None)
    # queues, priorities and task names survive
    assert [s["task"] for s in again["chain"]] == [s["task"] for s in original["chain"]]
    assert [s["options"].get("queue") for s in again["chain"]] == [s["options"].get("queue") for s in original["chain"]]
    assert again["chain"][0]["kwargs"]["body"]["options"]["priority"] == 3
    # the order they run in: the next step is the last element, chain_task_ids lists them in run order
    assert parking.chain_task_ids(again)[0] == again["chain"][-1]["options"]["task_id"]


def test_rerun_of_a_chord_keeps_its_parts_tied_together():
    original, again = parked_chain(), None
    again = parking.rerun(original)
    # a group followed by a task is a chord: its header members name the chord body by its task id
    old, new = original["chain"][0], again["chain"][0]
    assert new["task"] == "celery.chord"
    body_id = new["kwargs"]["body"]["options"]["task_id"]
    assert body_id != old["kwargs"]["body"]["options"]["task_id"]
    members = new["kwargs"]["header"]["kwargs"]["tasks"]
    assert [m["options"]["chord"]["options"]["task_id"] for m in members] == [body_id, body_id]
    assert new["kwargs"]["header"]["options"]["task_id"] == new["options"]["task_id"]
    assert len({m["options"]["task_id"] for m in members} | {body_id, new["options"]["task_id"]}) == 4
