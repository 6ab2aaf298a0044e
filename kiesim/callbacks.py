"""Callback bodies, their HMAC signature, and one HTTP delivery attempt.

Shapes follow kie.ai's documentation: success ``{"code":200,"msg":...,"data":{completeTime,
consumeCredits, costTime (s), createTime, model, param, remainedCredits, resultJson,
state, taskId, updateTime}}``; failure has body code 501 (configurable), state
``fail``, ``failCode``, ``failMsg`` and ``consumeCredits`` 0.  The documented variant
uses ``creditsConsumed`` and ``task_id`` plus a top-level ``taskId``.

Scheduling and retries live in ``simulator.py``; this module does no threading.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

import requests

from .tasks import Task, ms

USER_AGENT = "kiesim/0.1 (kie.ai simulator; +callbacks)"
SUCCESS_MSG = "Playground task completed successfully."
FAIL_MSG = "Playground task failed."


def build_callback_body(task: Task, *, remained_credits: float, cost_in_ms: bool,
                        variant: bool, fail_body_code: int) -> dict:
    """The JSON object POSTed to ``callBackUrl`` for a finished task."""
    success = task.outcome == "success"
    credits_key = "creditsConsumed" if variant else "consumeCredits"
    id_key = "task_id" if variant else "taskId"
    cost = ms(task.duration) if cost_in_ms else int(round(task.duration))
    data = {
        "completeTime": ms(task.complete_at),
        credits_key: _number(task.credits_cost if success else 0),
        "costTime": cost,
        "createTime": ms(task.created),
        "model": task.model,
        "param": task.param,
        "remainedCredits": _number(remained_credits),
        "resultJson": task.result_json() if success else "",
        "state": "success" if success else "fail",
        id_key: task.task_id,
        "updateTime": ms(task.complete_at),
    }
    if not success:
        data["failCode"] = task.fail_code
        data["failMsg"] = task.fail_msg
    body = {"code": 200 if success else fail_body_code, "msg": SUCCESS_MSG if success else FAIL_MSG,
            "data": data}
    if variant:
        body["taskId"] = task.task_id
    return body


def sign(hmac_key: str, task_id: str, timestamp: str) -> str:
    """base64 of the raw HMAC-SHA256 digest of ``taskId + "." + timestamp``."""
    digest = hmac.new(hmac_key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def callback_headers(task_id: str, hmac_key: str | None, now: float | None = None) -> dict:
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    if hmac_key:
        timestamp = str(int(now if now is not None else time.time()))
        headers["X-Webhook-Timestamp"] = timestamp
        headers["X-Webhook-Signature"] = sign(hmac_key, task_id, timestamp)
    return headers


@dataclass
class DeliveryResult:
    status: int | None     # HTTP status, or None when the request itself failed
    error: str | None      # transport error or "HTTP <status>"

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def post_callback(url: str, body: dict, headers: dict, timeout: float) -> DeliveryResult:
    """One attempt.  The receiver must answer 2xx within ``timeout`` seconds."""
    try:
        response = requests.post(url, data=json.dumps(body).encode(), headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        return DeliveryResult(status=None, error=f"{type(exc).__name__}: {exc}")
    response.close()
    ok = 200 <= response.status_code < 300
    return DeliveryResult(status=response.status_code, error=None if ok else f"HTTP {response.status_code}")


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value
