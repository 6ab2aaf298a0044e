"""Per-job callback tokens: an HMAC of the job id under ``KIE_WEBHOOK_SECRET``.

The worker puts the token in each job's ``callBackUrl``; the webhook checks it in constant time.
Several secrets may be configured (comma-separated, newest first) so a secret can be rotated:
tokens are minted with the first and accepted under any.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Iterable
from urllib.parse import quote

from .errors import BadToken


def job_token(job_id: str, secret: str) -> str:
    """The token for ``job_id`` (64 hex characters)."""
    return hmac.new(secret.encode(), b"kie-queue-job:" + job_id.encode(), hashlib.sha256).hexdigest()


def verify_job_token(job_id: str, token: str | None, secrets: Iterable[str]) -> None:
    """Raise ``BadToken`` unless ``token`` was minted for ``job_id`` under one of ``secrets``."""
    if not token:
        raise BadToken("missing job token")
    if not token.isascii() or len(token) > 512:
        raise BadToken("job token does not verify")  # the same answer as any other wrong token
    ok = False
    for secret in secrets:
        # compare against every secret, so timing does not tell which one matched
        ok |= hmac.compare_digest(job_token(job_id, secret), token)
    if not ok:
        raise BadToken("job token does not verify")


CALLBACK_PATH = "/kie/callback/"
"""The webhook's callback route; a job's own path is this plus the URL-quoted job id."""


def callback_path(job_id: str) -> str:
    """``/kie/callback/<job id, URL-quoted>``: the path of one job's callback URL."""
    return CALLBACK_PATH + quote(job_id, safe="")


def callback_url(base: str, job_id: str, secret: str) -> str:
    """The full ``callBackUrl`` for a job: ``{base}/kie/callback/{job_id}?token=...``."""
    return f"{base.rstrip('/')}{callback_path(job_id)}?token={job_token(job_id, secret)}"
