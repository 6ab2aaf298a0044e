"""``Simulator``: the shared, lock-protected state behind the HTTP layer.

It owns the tasks, the counters behind ``/_sim/stats``, the rate limiters, the random
source and the callback scheduler, and decides every upstream verdict as an
``Answer`` (body code, text, data, extra headers).  ``api.py`` turns answers into HTTP
responses; nothing here knows about Flask.  Every read or write of shared state
happens under ``self._lock``; network I/O (callback POSTs) never does.
"""

from __future__ import annotations

import functools
import json
import math
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .callbacks import DeliveryResult, build_callback_body, callback_headers, post_callback
from .config import SimConfig
from .directives import DEFAULT_FAIL, parse_directives
from .errors import InvalidRequest
from .images import CONTENT_TYPES, normalise_format, render_image
from .ratelimit import SlidingWindowLimiter
from .scheduler import Scheduler
from .schemas import validate_create_body
from .tasks import TERMINAL, Task

MESSAGES = {
    401: "You do not have access permissions",
    402: "Credits insufficient",
    404: "Not found",
    408: "Upstream returned nothing for 10 minutes",
    422: "Validation error",
    429: "Rate limited: too many requests, please try again later",
    433: "Sub-key usage exceeds its limit",
    455: "Service unavailable: maintenance in progress",
    500: "Server error, please try again later",
    501: "Generation failed",
    505: "Feature disabled",
}
DUPLICATE_GAP = 0.05  # seconds between an original delivery and each duplicate
NO_DATA = object()


@dataclass
class Answer:
    """An upstream verdict: body ``code``/``msg``/(optional) ``data`` plus extra headers."""

    code: int
    msg: str
    data: Any = NO_DATA
    headers: dict = field(default_factory=dict)


class TaskNotFinished(Exception):
    """``POST /_sim/tasks/<id>/callback`` for a task that has no callback to send yet."""


class Simulator:
    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config if config is not None else SimConfig()
        self._lock = threading.RLock()
        self._scheduler = Scheduler()
        self._rng = random.Random(self.config.seed)
        self._reset_locked()

    # ------------------------------------------------------------------ state & counters
    def _reset_locked(self) -> None:
        self.tasks: dict[str, Task] = {}
        self._limiter = SlidingWindowLimiter()
        self._status_limiter = SlidingWindowLimiter()
        self._create_attempts: Counter = Counter()  # prompt -> attempts seen by [sim:create=...]
        self._prompts: Counter = Counter()           # prompt -> accepted creates
        self._rejected: Counter = Counter()          # body code -> rejected creates
        self._accept_times: list[float] = []
        self._callbacks_sent: list[dict] = []
        self._callbacks_lost: list[dict] = []
        self._counts: Counter = Counter()
        self._429_toggle = 0

    def reset(self) -> None:
        """Forget tasks, counters and limiter history (config is kept; pending callbacks are dropped)."""
        with self._lock:
            self._reset_locked()

    def close(self) -> None:
        self._scheduler.close()

    def count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def note_create_rejected(self, code: int) -> None:
        """Record a createTask refused before it reached ``create_task`` (401, 403)."""
        with self._lock:
            self._counts["creates_total"] += 1
            self._rejected[code] += 1

    def update_config(self, changes: dict) -> dict:
        with self._lock:
            self.config.update(changes)
            if "seed" in changes:
                self._rng.seed(self.config.seed)
            return self.config.public_dict()

    def rate_limit_as_http(self) -> bool:
        """Whether the next 429 goes out as HTTP 429 (per ``rate_limit_style``)."""
        style = self.config.rate_limit_style
        if style == "mixed":
            with self._lock:
                self._429_toggle += 1
                return self._429_toggle % 2 == 0
        return style == "http"

    # ------------------------------------------------------------------ createTask
    def _reject(self, code: int, msg: str | None = None, headers: dict | None = None) -> Answer:
        with self._lock:
            self._rejected[code] += 1
        return Answer(code, msg or MESSAGES.get(code, "Error"), headers=headers or {})

    def _retry_after_headers(self, api_key: str, rate: tuple[int, float] | None, now: float) -> dict:
        value = self.config.retry_after
        if value is None:
            return {}
        if value == "auto":
            wait = self._limiter.seconds_until_free(api_key, *rate, now) if rate else 0.0
            return {"Retry-After": str(max(1, math.ceil(wait)))}
        return {"Retry-After": f"{value:g}"}

    def create_task(self, api_key: str, body: Any, base_url: str) -> Answer:
        """Decide a createTask for an authenticated caller; creates the task when accepted."""
        cfg = self.config
        with self._lock:
            self._counts["creates_total"] += 1
        if cfg.maintenance:
            return self._reject(455)
        try:
            req = validate_create_body(body, strict=cfg.strict_input)
            directives = parse_directives(req.prompt)
        except InvalidRequest as exc:
            return self._reject(422, str(exc))

        with self._lock:
            now = time.time()
            if directives.create_code is not None:
                self._create_attempts[req.prompt] += 1
                if directives.create_times is None or self._create_attempts[req.prompt] <= directives.create_times:
                    code = directives.create_code
                    headers = self._retry_after_headers(api_key, cfg.rate, now) if code == 429 else {}
                    return self._reject(code, headers=headers)
            rate = cfg.rate
            if rate is not None and not self._limiter.try_acquire(api_key, *rate, now):
                return self._reject(429, headers=self._retry_after_headers(api_key, rate, now))
            if cfg.credits < cfg.credits_per_task:
                return self._reject(402)

            if cfg.early_callback:
                duration = 0.0
            elif directives.duration is not None:
                duration = directives.duration
            else:
                jitter = self._rng.uniform(-cfg.duration_jitter, cfg.duration_jitter) if cfg.duration_jitter else 0
                duration = max(0.0, cfg.duration + jitter)
            if directives.fail is not None:
                fail = directives.fail
            elif cfg.fail_rate and self._rng.random() < cfg.fail_rate:
                fail = DEFAULT_FAIL
            else:
                fail = None
            cost = 0.0 if fail else cfg.credits_per_task
            task = Task(
                task_id=uuid.uuid4().hex,
                model=req.model,
                request=body,
                param=json.dumps(body, ensure_ascii=False),
                prompt=req.prompt,
                created=now,
                duration=duration,
                outcome="fail" if fail else "success",
                fail_code=fail[0] if fail else None,
                fail_msg=fail[1] if fail else None,
                image_count=directives.images,
                output_format=req.output_format,
                aspect_ratio=req.aspect_ratio,
                base_url=base_url.rstrip("/"),
                callback_url=req.callback_url,
                credits_cost=cost,
                nocallback=directives.nocallback,
            )
            cfg.credits -= cost
            self.tasks[task.task_id] = task
            self._accept_times.append(now)
            self._prompts[req.prompt] += 1
            self._counts["creates_accepted"] += 1
            late = cfg.late_callback_delay

        if task.callback_url:
            if cfg.early_callback:
                self._deliver(task.task_id, 0, 1)  # before the createTask answer leaves
            else:
                self._scheduler.call_at(task.complete_at + late,
                                        functools.partial(self._deliver, task.task_id, 0, 1))
        return Answer(200, "success", {"taskId": task.task_id, "recordId": task.task_id})

    # ------------------------------------------------------------------ other endpoints
    def record_info(self, api_key: str, task_id: str | None) -> Answer:
        with self._lock:
            self._counts["record_info_calls"] += 1
            now = time.time()
            rate = self.config.status_rate
            if rate is not None and not self._status_limiter.try_acquire(api_key, *rate, now):
                return Answer(429, MESSAGES[429])
            if not task_id:
                return Answer(422, "taskId: is required", None)
            task = self.tasks.get(task_id)
            if task is None:
                return Answer(422, "recordInfo is null", None)
            return Answer(200, "success", task.record_info(now, sparse=self.config.sparse_records))

    def credits(self) -> Answer:
        with self._lock:
            self._counts["credit_calls"] += 1
            return Answer(200, "success", _number(self.config.credits))

    def download_url(self, body: Any) -> Answer:
        with self._lock:
            self._counts["download_url_calls"] += 1
        url = body.get("url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return Answer(422, f"url: must be an http(s) URL, got {url!r}")
        return Answer(200, "success", url)

    def file(self, task_id: str, index: int, ext: str) -> tuple[bytes, str] | None:
        """Bytes and Content-Type of result ``index`` of a succeeded task, or None (404)."""
        with self._lock:
            task = self.tasks.get(task_id)
            if task is None or task.state_at(time.time()) != "success" or not 0 <= index < task.image_count:
                return None
            if normalise_format(ext) != task.image_format:
                return None
            self._counts["file_downloads"] += 1
            ratio, fmt, side = task.aspect_ratio, task.image_format, self.config.image_short_side
        return render_image(f"{task_id}/{index}", ratio, fmt, side), CONTENT_TYPES[fmt]

    # ------------------------------------------------------------------ callbacks
    def _deliver(self, task_id: str, delivery: int, attempt: int, manual: bool = False) -> DeliveryResult | None:
        """One delivery attempt; schedules retries and (after the first original attempt) duplicates."""
        with self._lock:
            task = self.tasks.get(task_id)
            if task is None or task.callback_url is None:
                return None
            cfg = self.config
            if task.callback_variant is None:
                task.callback_variant = cfg.variant_fields >= 1 or self._rng.random() < cfg.variant_fields
            if not manual:
                if task.callback_lost is None:
                    reason = "nocallback" if task.nocallback else (
                        "lose_callbacks" if self._rng.random() < cfg.lose_callbacks else None)
                    task.callback_lost = reason is not None
                    if reason:
                        self._callbacks_lost.append({"taskId": task_id, "reason": reason, "time": time.time()})
                if task.callback_lost:
                    return None
            body = build_callback_body(task, remained_credits=cfg.credits, cost_in_ms=cfg.callback_cost_ms,
                                       variant=task.callback_variant, fail_body_code=cfg.fail_callback_code)
            headers = callback_headers(task_id, cfg.hmac_key)
            url, timeout = task.callback_url, cfg.callback_timeout
            retries, retry_delay, duplicates = cfg.callback_retries, cfg.callback_retry_delay, cfg.duplicate_callbacks

        result = post_callback(url, body, headers, timeout)

        now = time.time()
        entry = {"taskId": task_id, "status": result.status, "attempt": attempt,
                 "delivery": "manual" if manual else delivery, "time": now, "error": result.error}
        with self._lock:
            if self.tasks.get(task_id) is not task:  # reset while the POST was in flight
                return result
            self._callbacks_sent.append(entry)
            task.deliveries.append(entry)
        if manual:
            return result
        if not result.ok and attempt <= retries:
            self._scheduler.call_at(now + retry_delay * 2 ** (attempt - 1),
                                    functools.partial(self._deliver, task_id, delivery, attempt + 1))
        if delivery == 0 and attempt == 1:
            for k in range(1, duplicates + 1):
                self._scheduler.call_at(now + DUPLICATE_GAP * k, functools.partial(self._deliver, task_id, k, 1))
        return result

    def redeliver(self, task_id: str) -> DeliveryResult:
        """Send a finished task's callback once more, now, in the caller's thread (no retries)."""
        with self._lock:
            task = self.tasks.get(task_id)
            if task is None:
                raise KeyError(task_id)
            if task.callback_url is None:
                raise TaskNotFinished("the task has no callBackUrl")
            if task.state_at(time.time()) not in TERMINAL:
                raise TaskNotFinished("the task has not finished yet")
        return self._deliver(task_id, 0, 1, manual=True)

    # ------------------------------------------------------------------ inspection
    def task_record(self, task_id: str) -> dict | None:
        with self._lock:
            task = self.tasks.get(task_id)
            return None if task is None else task.internal(time.time())

    def task_summaries(self) -> list[dict]:
        with self._lock:
            now = time.time()
            return [{"taskId": t.task_id, "state": t.state_at(now), "prompt": t.prompt} for t in self.tasks.values()]

    def stats(self) -> dict:
        with self._lock:
            now = time.time()
            states = Counter(t.state_at(now) for t in self.tasks.values())
            return {
                "requests_total": self._counts["requests_total"],
                "creates_total": self._counts["creates_total"],
                "creates_accepted": self._counts["creates_accepted"],
                "creates_rejected": {str(code): n for code, n in sorted(self._rejected.items())},
                "create_accept_times": list(self._accept_times),
                "record_info_calls": self._counts["record_info_calls"],
                "credit_calls": self._counts["credit_calls"],
                "download_url_calls": self._counts["download_url_calls"],
                "file_downloads": self._counts["file_downloads"],
                "callbacks_sent": [dict(e) for e in self._callbacks_sent],
                "callbacks_lost": [dict(e) for e in self._callbacks_lost],
                "callbacks_pending": self._scheduler.pending(),
                "tasks": len(self.tasks),
                "tasks_by_state": dict(states),
                "prompts": dict(self._prompts),
                "credits": _number(self.config.credits),
            }


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value

