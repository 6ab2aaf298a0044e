"""Callback verification checks, each a pure function raising its own exception type.

* :func:`check_signature` — kie.ai's ``X-Webhook-Timestamp`` / ``X-Webhook-Signature`` headers:
  base64(HMAC-SHA256(key, taskId + "." + timestamp)), compared in constant time, timestamp within
  ``tolerance`` seconds of now.  It is computed from the parsed taskId and the raw header values,
  never from re-serialised JSON.  It proves the taskId, not the body.
* :func:`check_task` — the body's taskId must be one of the job's recorded tasks, or one the job
  may adopt (``worker.store.records.task_relation``: no task is recorded yet).
* :func:`check_job_token` — the per-job token in the URL (``worker.tokens.verify_job_token``:
  constant time, every configured secret, non-ASCII or oversized tokens refused like wrong ones).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from worker.errors import BadSignature, StaleTimestamp, TaskMismatch
from worker.store.records import FOREIGN, task_relation
from worker.tokens import verify_job_token

_TIMESTAMP = re.compile(r"[0-9]{1,15}", re.ASCII)
"""Unix seconds as ASCII digits (15 digits also admit milliseconds, refused as stale, never an overflow)."""


def signature_for(task_id: str, timestamp: str, key: str) -> str:
    """The signature kie.ai sends for ``task_id`` at ``timestamp`` (base64 of the raw digest)."""
    digest = hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def check_job_token(job_id: str, token: str | None, secrets) -> None:
    """Raise ``BadToken`` unless ``token`` is the job's token under one of ``secrets``."""
    verify_job_token(job_id, token, secrets)


def check_signature(task_id: str, timestamp: str | None, signature: str | None, key: str, *,
                    now: float, tolerance: float = 300.0) -> None:
    """Raise ``BadSignature`` (missing, malformed, wrong) or ``StaleTimestamp`` (outside ``tolerance``)."""
    if not timestamp or not signature:
        raise BadSignature("missing X-Webhook-Timestamp or X-Webhook-Signature header")
    if not _TIMESTAMP.fullmatch(timestamp.strip()):
        # digits only: int() would also take "+5", "1_000", "-3" or 400 digits (an OverflowError below)
        raise BadSignature("X-Webhook-Timestamp is not an integer")
    ts = int(timestamp.strip())
    if abs(now - ts) > tolerance:
        raise StaleTimestamp(f"X-Webhook-Timestamp is more than {tolerance:g} s from now")
    expected = signature_for(task_id, timestamp.strip(), key)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise BadSignature("X-Webhook-Signature does not verify")


def check_task(task_id: str, job: dict) -> None:
    """Raise ``TaskMismatch`` unless the callback's task belongs to the job (or may be adopted)."""
    if task_relation(job, task_id) == FOREIGN:
        raise TaskMismatch("callback taskId is not this job's task")
