"""Rules read off a job record (the dict ``JobStore.get`` returns), and the typed view of a job.

:func:`task_relation` is the one statement of which upstream tasks a job accepts: its own recorded
tasks of the current generation, or — while no task is recorded yet (the create is in flight, or
its outcome was unknown) — a task it may adopt once kie.ai confirms it was created for this job.
Tasks of earlier generations (a job that was re-run) are *retired*: their outcomes are ignored.

:class:`JobView` is the one typed shape of a job for people and tools (``kie-queue status --json``,
``kie-queue jobs``, the dashboard): ints as ints, times as ISO-8601 UTC strings, no secret (the
callback URL's job token is masked).
"""

from __future__ import annotations

import dataclasses
import datetime
import json

from ..tokens import callback_path
from .states import RERUNNABLE, UNSUBMITTED

KNOWN, ADOPTABLE, FOREIGN = "known", "adoptable", "foreign"
MASKED = "***"


def task_ids(job: dict) -> list[str]:
    """The upstream task ids recorded for the job, oldest first (every generation's)."""
    return (job.get("task_ids") or "").split()


def retired_task_ids(job: dict) -> list[str]:
    """The upstream task ids of the job's earlier generations (a re-run job no longer listens to them)."""
    return (job.get("retired_task_ids") or "").split()


def task_relation(job: dict, task_id: str) -> str:
    """``known`` (a task of this job), ``adoptable`` (no task recorded yet) or ``foreign`` (another
    job's task, or one of this job's retired tasks)."""
    if task_id in retired_task_ids(job):
        return FOREIGN
    if task_id in task_ids(job):
        return KNOWN
    if job.get("state") in UNSUBMITTED:
        return ADOPTABLE
    return FOREIGN


def iso_ms(ms) -> str | None:
    """Epoch milliseconds (int or numeric text) as ISO-8601 UTC with milliseconds, e.g.
    ``2026-12-02T16:09:19.123Z``; None for missing or zero."""
    if ms in (None, "", 0, "0"):
        return None
    value = int(float(ms))
    when = datetime.datetime.fromtimestamp(value / 1000.0, tz=datetime.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value % 1000:03d}Z"


def _int(value, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _json(value, default):
    if not value:
        return default
    try:
        return json.loads(value)
    except ValueError:
        return default


def _error(job: dict, outcome: dict) -> dict | None:
    if job.get("state") == "succeeded":
        return None
    if outcome.get("error"):
        code = outcome.get("fail_code")
        message = outcome.get("fail_msg") or outcome.get("reason") or job.get("last_error")
        return {"type": outcome["error"], "code": None if code is None else str(code), "message": message}
    if job.get("last_error"):
        return {"type": None, "code": None, "message": job["last_error"]}
    return None


@dataclasses.dataclass(frozen=True)
class JobView:
    """One job, typed.  Times are ISO-8601 UTC strings (``...T16:09:19.123Z``) or None; ``timeline``
    entries are ``{"time", "event", "detail"}``.  See the README section "The job record"."""

    job_id: str
    state: str
    model: str | None
    input: dict | None
    created_at: str | None
    updated_at: str | None
    submitted_at: str | None
    finished_at: str | None
    deadline: str | None
    timeout_seconds: float | None
    generation: int
    regenerations: int
    retryable: bool
    attempts: int
    errors: int
    task_id: str | None
    task_ids: list
    callbacks: int
    duplicate_tasks: int
    wait_reason: str | None
    error: dict | None
    credits_consumed: float | None
    remained_credits: float | None
    result_urls: list
    files: list
    generations: list
    callers: int
    callback_url: str | None
    timeline: list
    tenant: str = "default"
    priority: int = 0

    @classmethod
    def from_record(cls, job: dict, *, timeline: list[dict] = (), callers: int = 0,
                    callback_base: str | None = None) -> "JobView":
        """Build the view from ``JobStore.get``'s dict, the job's timeline and its number of waiters.
        ``callback_base`` (``KIE_CALLBACK_URL``) gives the callback URL, its token masked."""
        outcome = _json(job.get("outcome"), {})
        succeeded = job.get("state") == "succeeded"
        history = []
        for g in _json(job.get("history"), []):
            o = g.get("outcome") or {}
            history.append({"generation": _int(g.get("generation"), 1), "state": g.get("state"),
                            "task_id": g.get("task_id") or None, "ended_at": iso_ms(g.get("ended_at")),
                            "error": {"code": None if o.get("fail_code") is None else str(o.get("fail_code")),
                                      "message": o.get("fail_msg") or g.get("error") or None}})
        files = [{"path": f.get("path"), "url": f.get("url"), "sha256": f.get("sha256"), "content_type":
                  f.get("content_type"), **f, "bytes": _int(f.get("bytes"))}   # other storages' fields pass through
                 for f in _json(job.get("files"), []) if isinstance(f, dict)]
        timeout = job.get("timeout")
        return cls(
            job_id=job["job_id"],
            state=job.get("state"),
            model=job.get("model"),
            input=_json(job.get("input"), None),
            created_at=iso_ms(job.get("created_at")),
            updated_at=iso_ms(job.get("updated_at")),
            submitted_at=iso_ms(job.get("submitted_at")),
            finished_at=iso_ms(job.get("finished_at")),
            deadline=iso_ms(job.get("deadline")),
            timeout_seconds=float(timeout) if timeout not in (None, "") else None,
            generation=_int(job.get("generation"), 1),
            regenerations=_int(job.get("regenerations")),
            retryable=job.get("state") in RERUNNABLE,
            attempts=_int(job.get("attempts")),
            errors=_int(job.get("errors")),
            task_id=job.get("task_id") or None,
            task_ids=task_ids(job),
            callbacks=_int(job.get("callbacks")),
            duplicate_tasks=_int(job.get("duplicates")),
            wait_reason=job.get("wait_reason") or None,
            error=_error(job, outcome),
            credits_consumed=outcome.get("credits") if succeeded else (0.0 if job.get("state") == "failed" else None),
            remained_credits=outcome.get("remained_credits") if succeeded else None,
            result_urls=list(outcome.get("result_urls") or []) if succeeded else [],
            files=files,
            generations=history,
            callers=int(callers),
            callback_url=(f"{callback_base.rstrip('/')}{callback_path(job['job_id'])}?token={MASKED}"
                          if callback_base else None),
            timeline=[{"time": iso_ms(e.get("t")), "event": e.get("event"), "detail": e.get("detail") or ""}
                      for e in timeline],
            tenant=job.get("tenant") or "default",
            priority=_int(job.get("priority")),
        )

    def to_json(self) -> dict:
        """The plain JSON-ready dict (what ``kie-queue status --json`` prints)."""
        return dataclasses.asdict(self)
