"""Named failpoints: tests kill a process at an exact step with ``KIE_FAILPOINTS`` (tests only).

``KIE_FAILPOINTS=name:exit[,name2:exit=3]`` makes the process ``os._exit`` (status 137, or the one
given) the first time it reaches a named point, so a test can stop a real worker between any two
steps of a job and show that a fresh worker carries the job to its end.  The variable is read once,
on the first :func:`hit` (never at import); when it is unset, a point costs one dict lookup.
An unknown name or action stops the process with an error naming the variable.

The points, in the order a job passes them:

submit (``worker.jobs.submission``, ``worker.tasks.generate``)
  ``submit.after_accept``        the job and its waiter are stored; no claim yet
  ``submit.after_claim``         the submit claim is held; no token taken from the limiter
  ``submit.after_mark_sending``  the create is recorded as going out; not yet POSTed
  ``submit.after_create``        kie.ai answered with a taskId; the answer is not recorded
  ``submit.after_record``        the taskId is recorded (state submitted)

complete (``webhook.routes``, ``worker.jobs.completion``)
  ``complete.after_callback_recorded``  the webhook stored a callback; ``kie.complete`` is not sent
  ``complete.before_finish``     the outcome is known; the job is not finished in the store
  ``complete.after_finish``      the job is terminal; no waiter claimed yet
  ``complete.after_waiter_claim`` one waiter's lease is taken; its next step is not published
  ``complete.after_publish``     the next step (or the failure and errbacks) is with the broker and
                                 the result backend; the waiter is not marked done
  ``complete.after_mark_done``   the waiter is marked done

resume (``worker.jobs.parking``)
  ``resume.after_store_result``  the parked task's SUCCESS is stored; its chain and callbacks are
                                 not sent yet

broker (``worker.broker.redis_claims``, a Redis broker)
  ``broker.after_claim``         a worker took a message off its queue list (recorded as unacknowledged);
                                 Celery has not seen it yet

download (``worker.celery_app``, Celery's ``task_success`` signal of ``kie.download``)
  ``download.after_continue``    the tracer sent the download's next step and stored its result; the
                                 message is not acknowledged yet (a redelivery must not send it again)
"""

from __future__ import annotations

import os

VARIABLE = "KIE_FAILPOINTS"

POINTS = (
    "submit.after_accept", "submit.after_claim", "submit.after_mark_sending", "submit.after_create",
    "submit.after_record",
    "complete.after_callback_recorded", "complete.before_finish", "complete.after_finish", "complete.after_waiter_claim", "complete.after_publish",
    "complete.after_mark_done",
    "resume.after_store_result",
    "download.after_continue",
    "broker.after_claim",
)
"""Every failpoint name (the list in the module docstring)."""

_armed: dict[str, int] | None = None


def parse(text: str) -> dict[str, int]:
    """``"a:exit,b:exit=3"`` → ``{"a": 137, "b": 3}``; ValueError naming the variable if malformed."""
    armed = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        name, _, action = item.partition(":")
        if name not in POINTS:
            raise ValueError(f"{VARIABLE}: unknown failpoint {name!r} (known: {', '.join(POINTS)})")
        verb, _, code = action.partition("=")
        if verb != "exit" or (code and not code.isdigit()):
            raise ValueError(f"{VARIABLE}: action of {name!r} must be 'exit' or 'exit=N', got {action!r}")
        armed[name] = int(code) if code else 137
    return armed


def hit(name: str) -> None:
    """Exit the process here if failpoint ``name`` is armed."""
    global _armed
    if _armed is None:
        _armed = parse(os.environ.get(VARIABLE, ""))
    code = _armed.get(name)
    if code is not None:
        os._exit(code)


def reset() -> None:
    """Forget the parsed variable (tests that change it in-process)."""
    global _armed
    _armed = None
