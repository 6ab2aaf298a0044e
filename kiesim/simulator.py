"""``Simulator``: the shared, lock-protected state behind the HTTP layer.

It owns the tasks, the accounts (one per configured API key: credit balance and
counters; the rate limiters are keyed by key too), the counters behind ``/_sim/stats``,
pending createTask bursts, the random source, the image cache and the callback
scheduler, and decides every upstream verdict as an ``Answer`` (body code, text, data,
extra headers).  ``api.py`` turns answers into HTTP responses; nothing here knows about
Flask.  Every read or write of shared state happens under ``self._lock``; network I/O
(callback POSTs) and image rendering never do.

Random choices are reproducible with ``seed``: each accepted create takes one draw from
the seeded source to seed its own generator, which makes every choice for that task in
a fixed order (duration jitter, failure, early, late, duplicate, and the draws later
compared with ``lose_callbacks`` and ``variant_fields``), whatever the knobs are.
Accounts are named by ``account_id(key)`` (12 hex of SHA-256) wherever they are shown.
"""

from __future__ import annotations

import functools
import hashlib
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
from .images import CONTENT_TYPES, ImageCache, normalise_format, render_image, render_picture
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
BURST_CODES = (429, 455, 500)
BURST_STYLES = ("body", "http")


def account_id(api_key: str) -> str:
    """The name an account goes by in stats and task records: 12 hex of SHA-256 of its key."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


@dataclass
class Answer:
    """An upstream verdict: body ``code``/``msg``/(optional) ``data`` plus extra headers.

    ``style`` ``"http"``/``"body"`` forces how an error goes out (HTTP status = code, or
    HTTP 200); ``None`` leaves it to ``error_style`` / ``rate_limit_style``.
    """

    code: int
    msg: str
    data: Any = NO_DATA
    headers: dict = field(default_factory=dict)
    style: str | None = None


@dataclass
class Account:
    """One API key's balance and counters (the key itself is not kept here)."""

    account_id: str
    credits: float
    creates_total: int = 0
    creates_accepted: int = 0
    rejected: Counter = field(default_factory=Counter)
    accept_times: list = field(default_factory=list)
    record_info_calls: int = 0
    record_info_429: int = 0
    credit_calls: int = 0

    def view(self) -> dict:
        return {
            "credits": _number(self.credits),
            "creates_total": self.creates_total,
            "creates_accepted": self.creates_accepted,
            "creates_429": self.rejected[429],
            "creates_rejected": {str(code): n for code, n in sorted(self.rejected.items())},
            "create_accept_times": list(self.accept_times),
            "record_info_calls": self.record_info_calls,
            "record_info_429": self.record_info_429,
            "credit_calls": self.credit_calls,
        }


@dataclass
class Burst:
    """The next ``remaining`` createTask calls (of ``account``, or of anyone) answer ``code``."""

    code: int
    remaining: int
    style: str | None = None
    account: str | None = None

    def view(self) -> dict:
        return {"code": self.code, "remaining": self.remaining, "style": self.style, "account": self.account}


class TaskNotFinished(Exception):
    """``POST /_sim/tasks/<id>/callback`` for a task that has no callback to send yet."""


class UnknownAccount(Exception):
    """A control request named a key that is not configured (or an account id never seen)."""


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
        self._accounts: dict[str, Account] = {}     # account id -> Account
        self._bursts: list[Burst] = []
        self._burst_served: Counter = Counter()      # body code -> createTask calls answered by a burst
        self._create_attempts: Counter = Counter()  # prompt -> attempts seen by [sim:create=...]
        self._fail_counts: Counter = Counter()  # prompt -> tasks created under [sim:fail=...*K]
        self._prompts: Counter = Counter()           # prompt -> accepted creates
        self._rejected: Counter = Counter()          # body code -> rejected creates
        self._accept_times: list[float] = []
        self._callbacks_sent: list[dict] = []
        self._callbacks_lost: list[dict] = []
        self._counts: Counter = Counter()
        self._429_toggle = 0
        self._images = ImageCache()

    def reset(self) -> None:
        """Forget tasks, accounts (balances go back to ``credits``), counters, bursts, cached images
        and limiter history (config is kept; pending callbacks are dropped)."""
        with self._lock:
            self._reset_locked()

    # ------------------------------------------------------------------ accounts
    def _account_locked(self, api_key: str) -> Account:
        ident = account_id(api_key)
        account = self._accounts.get(ident)
        if account is None:
            account = self._accounts[ident] = Account(ident, self.config.credits)
        return account

    def _find_account_locked(self, api_key: str | None, ident: str | None) -> Account:
        if api_key is not None:
            if api_key not in self.config.api_key:
                raise UnknownAccount("api_key: not one of the configured keys")
            return self._account_locked(api_key)
        for key in self.config.api_key:
            self._account_locked(key)
        account = self._accounts.get(ident or "")
        if account is None:
            raise UnknownAccount("account: no account has that id (see accounts in GET /_sim/stats)")
        return account

    def set_account_credits(self, credits: float, *, api_key: str | None = None,
                            account: str | None = None) -> dict:
        """Set one account's balance (named by its key or its id); returns ``{account, credits}``."""
        with self._lock:
            found = self._find_account_locked(api_key, account)
            found.credits = credits
            return {"account": found.account_id, "credits": _number(found.credits)}

    def accounts(self) -> dict:
        """``{account id: figures}`` for every configured key (and any seen before a config change)."""
        with self._lock:
            for key in self.config.api_key:
                self._account_locked(key)
            return {ident: account.view() for ident, account in self._accounts.items()}

    # ------------------------------------------------------------------ bursts
    def add_burst(self, code: int, count: int, *, style: str | None = None, api_key: str | None = None,
                  account: str | None = None) -> dict:
        """Queue a burst: the next ``count`` createTask calls (of one account if named) answer ``code``."""
        with self._lock:
            ident = None
            if api_key is not None or account is not None:
                ident = self._find_account_locked(api_key, account).account_id
            burst = Burst(code, count, style, ident)
            self._bursts.append(burst)
            return burst.view()

    def bursts(self) -> list[dict]:
        with self._lock:
            return [b.view() for b in self._bursts]

    def clear_bursts(self) -> int:
        with self._lock:
            count = len(self._bursts)
            self._bursts.clear()
            return count

    def _take_burst_locked(self, ident: str) -> Burst | None:
        for burst in self._bursts:
            if burst.account is None or burst.account == ident:
                burst.remaining -= 1
                if burst.remaining <= 0:
                    self._bursts.remove(burst)
                self._burst_served[burst.code] += 1
                return burst
        return None

    def close(self) -> None:
        self._scheduler.close()

    def count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def note_create_rejected(self, code: int) -> None:
        """Record a createTask refused before it reached ``create_task`` (401, 403: no account)."""
        with self._lock:
            self._counts["creates_total"] += 1
            self._rejected[code] += 1

    def update_config(self, changes: dict) -> dict:
        """Apply knob changes; a new ``credits`` becomes every account's balance."""
        with self._lock:
            self.config.update(changes)
            if "seed" in changes:
                self._rng.seed(self.config.seed)
            if "credits" in changes:
                for account in self._accounts.values():
                    account.credits = self.config.credits
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
    def _reject(self, account: Account, code: int, msg: str | None = None, headers: dict | None = None,
                style: str | None = None) -> Answer:
        with self._lock:
            self._rejected[code] += 1
            account.rejected[code] += 1
        return Answer(code, msg or MESSAGES.get(code, "Error"), headers=headers or {}, style=style)

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
            account = self._account_locked(api_key)
            account.creates_total += 1
            burst = self._take_burst_locked(account.account_id)
            if burst is not None:
                headers = self._retry_after_headers(api_key, cfg.rate, time.time()) if burst.code == 429 else {}
                return self._reject(account, burst.code, headers=headers, style=burst.style)
        if cfg.maintenance:
            return self._reject(account, 455)
        try:
            req = validate_create_body(body, strict=cfg.strict_input)
            directives = parse_directives(req.prompt)
        except InvalidRequest as exc:
            return self._reject(account, 422, str(exc))

        with self._lock:
            now = time.time()
            if directives.create_code is not None:
                self._create_attempts[req.prompt] += 1
                if directives.create_times is None or self._create_attempts[req.prompt] <= directives.create_times:
                    code = directives.create_code
                    headers = self._retry_after_headers(api_key, cfg.rate, now) if code == 429 else {}
                    return self._reject(account, code, headers=headers)
            rate = cfg.rate
            if rate is not None and not self._limiter.try_acquire(api_key, *rate, now):
                return self._reject(account, 429, headers=self._retry_after_headers(api_key, rate, now))
            if account.credits < cfg.credits_per_task:
                return self._reject(account, 402)

            # every random choice of this task, in a fixed order (see the module docstring)
            rng = random.Random(self._rng.getrandbits(64))
            jitter_u, fail_u, early_u, late_u, duplicate_u, lose_u, variant_u = (rng.random() for _ in range(7))
            early = cfg.early_callback or early_u < cfg.early_rate
            late = not early and late_u < cfg.late_rate
            duplicated = duplicate_u < cfg.duplicate_rate
            if early:
                duration = 0.0
            elif directives.duration is not None:
                duration = directives.duration
            else:
                jitter = cfg.duration_jitter * (2 * jitter_u - 1)
                duration = max(0.0, cfg.duration + jitter)
            if directives.fail is not None and directives.fail_times is not None:
                self._fail_counts[req.prompt] += 1
                fail = directives.fail if self._fail_counts[req.prompt] <= directives.fail_times else None
            elif directives.fail is not None:
                fail = directives.fail
            elif fail_u < cfg.fail_rate:
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
                account=account.account_id,
                image_small=cfg.small_images,
                image_side=cfg.image_short_side if cfg.small_images else cfg.image_long_side,
                early=early,
                callback_delay=0.0 if early else cfg.late_callback_delay + (cfg.late_delay if late else 0.0),
                extra_deliveries=cfg.duplicate_callbacks + (1 if duplicated else 0),
                late=late,
                duplicated=duplicated,
                rolls={"lose": lose_u, "variant": variant_u},
            )
            account.credits -= cost
            account.creates_accepted += 1
            account.accept_times.append(now)
            self.tasks[task.task_id] = task
            self._accept_times.append(now)
            self._prompts[req.prompt] += 1
            self._counts["creates_accepted"] += 1
            for name, picked in (("tasks_early", early), ("tasks_late", late), ("tasks_duplicated", duplicated)):
                if picked:
                    self._counts[name] += 1

        if task.callback_url:
            if task.early:
                self._deliver(task.task_id, 0, 1)  # before the createTask answer leaves
            else:
                self._scheduler.call_at(task.complete_at + task.callback_delay,
                                        functools.partial(self._deliver, task.task_id, 0, 1))
        return Answer(200, "success", {"taskId": task.task_id, "recordId": task.task_id})

    # ------------------------------------------------------------------ other endpoints
    def record_info(self, api_key: str, task_id: str | None) -> Answer:
        with self._lock:
            self._counts["record_info_calls"] += 1
            account = self._account_locked(api_key)
            account.record_info_calls += 1
            now = time.time()
            rate = self.config.status_rate
            if rate is not None and not self._status_limiter.try_acquire(api_key, *rate, now):
                account.record_info_429 += 1
                return Answer(429, MESSAGES[429])
            if not task_id:
                return Answer(422, "taskId: is required", None)
            task = self.tasks.get(task_id)
            if task is None:
                return Answer(422, "recordInfo is null", None)
            return Answer(200, "success", task.record_info(now, sparse=self.config.sparse_records))

    def credits(self, api_key: str) -> Answer:
        """The calling account's balance."""
        with self._lock:
            self._counts["credit_calls"] += 1
            account = self._account_locked(api_key)
            account.credit_calls += 1
            return Answer(200, "success", _number(account.credits))

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
            ratio, fmt, side, seed = task.aspect_ratio, task.image_format, task.image_side, f"{task_id}/{index}"
            images = self._images
            if task.image_small:
                key = ("small", seed, ratio, fmt, side)
                render = functools.partial(render_image, seed, ratio, fmt, side)
            else:
                key = ("picture", seed, ratio, fmt, side)
                render = functools.partial(render_picture, task.prompt, seed, ratio, fmt, side)
        return images.get(key, render), CONTENT_TYPES[fmt]

    # ------------------------------------------------------------------ callbacks
    def _deliver(self, task_id: str, delivery: int, attempt: int, manual: bool = False) -> DeliveryResult | None:
        """One delivery attempt; schedules retries and (after the first original attempt) duplicates."""
        with self._lock:
            task = self.tasks.get(task_id)
            if task is None or task.callback_url is None:
                return None
            cfg = self.config
            if task.callback_variant is None:
                task.callback_variant = cfg.variant_fields >= 1 or task.rolls["variant"] < cfg.variant_fields
            if not manual:
                if task.callback_lost is None:
                    reason = "nocallback" if task.nocallback else (
                        "lose_callbacks" if task.rolls["lose"] < cfg.lose_callbacks else None)
                    task.callback_lost = reason is not None
                    if reason:
                        self._callbacks_lost.append({"taskId": task_id, "reason": reason, "time": time.time()})
                if task.callback_lost:
                    return None
            account = self._accounts.get(task.account)
            remained = account.credits if account is not None else cfg.credits
            body = build_callback_body(task, remained_credits=remained, cost_in_ms=cfg.callback_cost_ms,
                                       variant=task.callback_variant, fail_body_code=cfg.fail_callback_code)
            headers = callback_headers(task_id, cfg.hmac_key)
            url, timeout = task.callback_url, cfg.callback_timeout
            retries, retry_delay, duplicates = cfg.callback_retries, cfg.callback_retry_delay, task.extra_deliveries

        result = post_callback(url, body, headers, timeout)

        now = time.time()
        retry_at = None if manual or result.ok or attempt > retries else now + retry_delay * 2 ** (attempt - 1)
        entry = {"taskId": task_id, "status": result.status, "attempt": attempt,
                 "delivery": "manual" if manual else delivery, "time": now, "error": result.error,
                 "retry_at": retry_at}  # None: this delivery gets no further attempt
        with self._lock:
            if self.tasks.get(task_id) is not task:  # reset while the POST was in flight
                return result
            self._callbacks_sent.append(entry)
            task.deliveries.append(entry)
        if manual:
            return result
        if retry_at is not None:
            self._scheduler.call_at(retry_at, functools.partial(self._deliver, task_id, delivery, attempt + 1))
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
        """Totals (over every account) plus ``accounts``, ``bursts``, ``faults`` and image figures."""
        with self._lock:
            accounts = self.accounts()
            now = time.time()
            states = Counter(t.state_at(now) for t in self.tasks.values())
            images = self._images.stats()
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
                "credits": _number(sum(self._accounts[ident].credits for ident in accounts)),  # all accounts
                "accounts": accounts,
                "bursts": {"pending": [b.view() for b in self._bursts],
                           "served": {str(code): n for code, n in sorted(self._burst_served.items())}},
                "faults": {"early": self._counts["tasks_early"], "late": self._counts["tasks_late"],
                           "duplicated": self._counts["tasks_duplicated"]},
                **images,
            }


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value

