"""Rules read off a job record (the dict ``JobStore.get`` returns), shared by the worker and the webhook.

:func:`task_relation` is the one statement of which upstream tasks a job accepts: its own recorded
tasks, or — while no task is recorded yet (the create is in flight, or its outcome was unknown) —
a task it may adopt once kie.ai confirms it was created for this job.
"""

from __future__ import annotations

from .states import UNSUBMITTED

KNOWN, ADOPTABLE, FOREIGN = "known", "adoptable", "foreign"


def task_ids(job: dict) -> list[str]:
    """The upstream task ids recorded for the job, oldest first."""
    return (job.get("task_ids") or "").split()


def task_relation(job: dict, task_id: str) -> str:
    """``known`` (a task of this job), ``adoptable`` (no task recorded yet) or ``foreign``."""
    if task_id in task_ids(job):
        return KNOWN
    if job.get("state") in UNSUBMITTED:
        return ADOPTABLE
    return FOREIGN
