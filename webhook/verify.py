"""Callback verification checks, each a pure function raising its own exception type.

* :func:`check_signature` — kie.ai's ``X-Webhook-Timestamp`` / ``X-Webhook-Signature`` headers:
  base64(HMAC-SHA256(key, taskId + "." + timestamp)), compared in constant time, timestamp within
  ``tolerance`` seconds of now.  It is computed from the parsed taskId and the raw header values,
  never from re-serialised JSON.  It proves the taskId, not the body.
* :func:`check_task` — the body's taskId must be the job's recorded task, or (while the create's
  outcome is unknown) not yet recorded, in which case it will be adopted once.

The per-job URL token is checked by ``worker.tokens.verify_job_token``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from worker.errors import BadSignature, StaleTimestamp, TaskMismatch


def signature_for(task_id: str, timestamp: str, key: str) -> str:
    """The signature kie.ai sends for ``task_id`` at ``timestamp`` (base64 of the raw digest)."""
    digest = hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def check_signature(task_id: str, timestamp: str | None, signature: str | None, key: str, *,
                    now: float, tolerance: float = 300.0) -> None:
    if not timestamp or not signature:
        raise BadSignature("missing X-Webhook-Timestamp or X-Webhook-Signature header")
    try:
        ts = int(timestamp.strip())
    except ValueError:
        raise BadSignature("X-Webhook-Timestamp is not an integer") from None
    if abs(now - ts) > tolerance:
        raise StaleTimestamp(f"X-Webhook-Timestamp is more than {tolerance:g} s from now")
    expected = signature_for(task_id, timestamp.strip(), key)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise BadSignature("X-Webhook-Signature does not verify")


def check_task(task_id: str, job: dict) -> None:
    """Raise ``TaskMismatch`` unless the callback's task belongs to the job (or may be adopted)."""
    known = (job.get("task_ids") or "").split()
    if task_id in known:
        return
    if job.get("state") in ("accepted", "submitting"):
        return  # create in flight or outcome unknown: the callback reveals the task
    raise TaskMismatch("callback taskId is not this job's task")
