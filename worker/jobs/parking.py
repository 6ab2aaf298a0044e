"""Parking and resuming a Celery chain: every Celery-internal trick of the project lives here.

``kie.generate`` must not let Celery continue its chain when the task body returns (the upstream
job is not finished yet), and must not hold a worker until it is.  So the task:

1. writes ``SUBMITTED`` as its state (:func:`mark_submitted`) — before anything can complete it,
   because the Redis result backend refuses to overwrite SUCCESS but not FAILURE;
2. stores what Celery would have used to continue (:func:`capture`: the remaining chain — reversed,
   the next task is the last element — callbacks, errbacks, chord/group membership, ids) as JSON in
   the job store, then raises :func:`stop` (``celery.exceptions.Ignore``) so the tracer neither
   stores a result nor continues the chain;
3. at completion, :func:`resume` stores the real result under the task's own id (which also counts
   toward an enclosing chord) and sends the next step exactly as Celery's tracer would (frozen task
   ids and options survive, so the caller's ``AsyncResult`` for the end of the chain resolves), or
   :func:`fail` marks the task and every remaining step FAILURE and runs the errbacks.

:func:`rerun` makes a parked chain that already ran (failed) runnable again under new task ids
(an operator's retry): the original ``AsyncResult`` objects keep their FAILURE.

Measured with celery 5.7: without ``delivery_info={}`` in the rebuilt request, errbacks not
registered in the completing process crash on ``None.get``; the tests in ``tests/e2e/test_parking.py``
cover a plain chain, link/link_error, a group of chains and chords, with a failure in each.
"""

from __future__ import annotations

import json
import uuid

from celery import group, signature
from celery.app.task import Context
from celery.exceptions import Ignore

from .. import failpoints

_FIELDS = ("id", "task", "chain", "callbacks", "errbacks", "chord", "group", "group_index", "root_id",
           "parent_id", "reply_to", "correlation_id", "args", "kwargs")


def mark_submitted(task, job_id: str) -> None:
    """Write the ``SUBMITTED`` state for the running task (first thing, before parking)."""
    task.update_state(state="SUBMITTED", meta={"job_id": job_id})


def capture(request) -> dict:
    """What Celery needs to continue or fail this task later, as a JSON-safe dict."""
    parked = {name: getattr(request, name, None) for name in _FIELDS}
    parked["chain"] = [dict(s) for s in (parked["chain"] or [])]
    parked["callbacks"] = [dict(s) for s in (parked["callbacks"] or [])]
    parked["errbacks"] = [dict(s) for s in (parked["errbacks"] or [])]
    if parked["chord"] is not None:
        parked["chord"] = dict(parked["chord"])
    delivery = getattr(request, "delivery_info", None) or {}
    parked["priority"] = delivery.get("priority")
    return parked


def stop() -> Ignore:
    """The exception that ends the task body without a result and without continuing the chain."""
    return Ignore()


def _context(parked: dict) -> Context:
    ctx = Context({k: v for k, v in parked.items() if k not in ("priority", "traceparent", "rerun_of")})
    ctx.delivery_info = {}
    ctx.ignore_result = False
    ctx.root_id = parked.get("root_id") or parked["id"]
    return ctx


def store_result(app, parked: dict, result: dict) -> None:
    """Store SUCCESS with the real result under the parked task's id (no chain dispatch, no chord count)."""
    app.backend.store_result(parked["id"], result, "SUCCESS", request=_context(parked))


def store_failure(app, parked: dict, exc: Exception) -> None:
    """Store FAILURE under the parked task's id only (no errbacks, no chain marking)."""
    app.backend.store_result(parked["id"], exc, "FAILURE", request=_context(parked))


def resume(app, parked: dict, result: dict, *, again: bool = False) -> None:
    """Complete the parked task with ``result`` and continue its chain and callbacks, as the tracer would.

    ``again``: an earlier attempt may have stored the result already (its process died before the chain
    was marked continued); a stored SUCCESS is then not stored again, so an enclosing chord counts the
    task once."""
    ctx = _context(parked)
    if not (again and app.backend.get_state(parked["id"]) == "SUCCESS"):
        app.backend.mark_as_done(parked["id"], result, request=ctx)
    failpoints.hit("resume.after_store_result")
    parent_id, root_id, priority = parked["id"], ctx.root_id, parked.get("priority")
    callbacks = parked.get("callbacks") or []
    if len(callbacks) > 1:
        sigs, groups = [], []
        for raw in callbacks:
            sig = signature(raw, app=app)
            (groups if isinstance(sig, group) else sigs).append(sig)
        for grp in groups:
            grp.apply_async((result,), parent_id=parent_id, root_id=root_id, priority=priority)
        if sigs:
            group(sigs, app=app).apply_async((result,), parent_id=parent_id, root_id=root_id, priority=priority)
    elif callbacks:
        signature(callbacks[0], app=app).apply_async((result,), parent_id=parent_id, root_id=root_id,
                                                     priority=priority)
    chain = parked.get("chain") or []
    if chain:
        nxt = signature(chain[-1], app=app)
        nxt.apply_async((result,), chain=chain[:-1], parent_id=parent_id, root_id=root_id, priority=priority)


def fail(app, parked: dict, exc: Exception) -> None:
    """Fail the parked task with ``exc``: it and every remaining chain step become FAILURE, errbacks run,
    and an enclosing chord is told (so its body fails instead of waiting)."""
    app.backend.mark_as_failure(parked["id"], exc, request=_context(parked))


def rerun(parked: dict) -> dict:
    """A copy of ``parked`` that runs again under new task ids: the parked task itself, every frozen
    signature of its remaining chain, callbacks and errbacks (nested groups and chords included) get
    fresh ids, consistently; chord/group membership is dropped (the enclosing chord already failed,
    so the re-run stands alone).  ``rerun_of`` names the original task id."""
    renewed: dict[str, str] = {}

    def collect(node):
        if isinstance(node, dict):
            options = node.get("options")
            if isinstance(options, dict):
                for name in ("task_id", "group_id"):
                    if isinstance(options.get(name), str):
                        renewed.setdefault(options[name], uuid.uuid4().hex)
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    def rename(node):
        if isinstance(node, dict):
            options = node.get("options")
            if isinstance(options, dict):
                for name in ("task_id", "group_id", "parent_id"):
                    if options.get(name) in renewed:
                        options[name] = renewed[options[name]]
            for value in node.values():
                rename(value)
        elif isinstance(node, list):
            for value in node:
                rename(value)

    new = json.loads(json.dumps(parked))      # a parked chain is JSON (it is stored as JSON): a deep copy
    for part in ("chain", "callbacks", "errbacks"):
        collect(new.get(part) or [])
        rename(new.get(part) or [])
    new["rerun_of"] = parked["id"]
    new["id"] = uuid.uuid4().hex
    new["parent_id"] = parked.get("parent_id")
    new["chord"] = new["group"] = new["group_index"] = None
    return new


def chain_task_ids(parked: dict) -> list[str]:
    """The task ids of the parked chain's remaining steps, in the order they run (the last one's
    ``AsyncResult`` is the end of the chain)."""
    return [s.get("options", {}).get("task_id") for s in reversed(parked.get("chain") or [])]


def completed_before(task) -> bool:
    """Whether ``task``'s id already succeeded: this message is a redelivery (a worker died after the task
    ran but before it acknowledged the message).  Celery's tracer sends a task's chain and callbacks
    *before* it stores SUCCESS, so a stored SUCCESS means the next steps were sent already: running the
    body again would continue the chain twice.  (``worker_deduplicate_successful_tasks`` stays off: it
    would also skip a redelivered ``kie.generate``, whose SUCCESS the resumption stores, and then send its
    chain a second time.)"""
    return task.AsyncResult(task.request.id).state == "SUCCESS"
