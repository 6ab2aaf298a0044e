"""Job states and the sets of them that rules are written against: the one place they are spelled.

``accepted → submitting → submitted → succeeded | failed | timed_out | cancelled``, plus
``rejected`` for input that failed validation (nothing was sent upstream).  A failed, timed-out or
cancelled job may be re-run (``RERUNNABLE``): it goes back to ``accepted`` with a new generation.  The job store's Lua scripts receive the
same sets through their shared prologue (``worker.store.scripts``), so Python and Lua never
disagree on which state is terminal.
"""

from __future__ import annotations

import enum


class JobState(str, enum.Enum):
    """A job's state, as stored in its record (the value is the stored text)."""

    ACCEPTED = "accepted"       # waiting for a createTask attempt (in the submit due queue)
    SUBMITTING = "submitting"   # a worker holds the claim; a create may be going out
    SUBMITTED = "submitted"     # kie.ai has the task; waiting for its callback or the next poll
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"     # an operator cancelled it; a later upstream outcome is ignored
    REJECTED = "rejected"       # invalid input: nothing was sent upstream

    def __str__(self) -> str:
        return self.value


FINISHED = frozenset({JobState.SUCCEEDED.value, JobState.FAILED.value, JobState.TIMED_OUT.value,
                      JobState.CANCELLED.value})
"""Outcomes that the job's waiters receive (their chains are resumed or failed)."""

TERMINAL = FINISHED | {JobState.REJECTED.value}
"""Nothing happens to a job in these states any more."""

RERUNNABLE = frozenset({JobState.FAILED.value, JobState.TIMED_OUT.value, JobState.CANCELLED.value})
"""Terminal failures that ``retry_failed=True`` or an operator's retry may run again (a success never is)."""

UNSUBMITTED = frozenset({JobState.ACCEPTED.value, JobState.SUBMITTING.value})
"""No upstream task is recorded yet: a create may be in flight, so a callback may reveal its task."""

HOLDS_NO_SLOT = TERMINAL | {JobState.ACCEPTED.value}
"""States in which a job cannot hold an in-flight slot (the sweep frees any it still has)."""
