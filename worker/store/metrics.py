"""Deployment-wide metrics kept in Redis: the catalogue of every metric and the recording API.

Every process (gunicorn workers, Celery workers, beat, on any host) records into one Redis hash,
``<prefix>:metrics``; the webhook's ``/metrics`` reads it back and exposes it (``webhook.metrics``).
So one scrape target answers for the whole deployment, numbers survive process restarts, and no
host needs its own scrape configuration.  Observations are written in batches: a Celery task's, a
webhook request's and a pump tick's are summed in process (per thread) and written together when it
ends, in one round trip (``begin``/``flush``; also when a batch grows to ``MAX_FIELDS`` fields or
``MAX_AGE_S`` seconds); anywhere else each observation is one round trip.  The counts are exact
across processes (increments add up in Redis), but a process killed inside a batch loses what the
batch held: metrics are best-effort, the job store is not.

Fields of the hash (label values are sanitised to ``[A-Za-z0-9_.:-]``, at most 64 characters)::

    c|<metric>|<label values...>            counter value (HINCRBY, HINCRBYFLOAT for credits)
    g|<metric>|<label values...>            gauge value set by whoever observed it (HSET)
    h|<metric>|<label values...>|<le>       per-bucket count (not cumulative: one HINCRBY per observation)
    h|<metric>|<label values...>|sum        sum of observed values
    h|<metric>|<label values...>|count      number of observations

``CATALOGUE`` names every metric with its type, help text, labels and the label values that exist
from the first scrape (zero-valued).  The job code reports *events* through :meth:`Metrics.count`
(``store.incr("upstream_429")``); ``EVENTS`` maps each event to the counters it moves.  An event
the table does not know still counts, as ``kie_events_total{event=...}``.  Nothing secret is ever a
label or a value.  No Celery, no HTTP here.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import threading
import time

from . import scripts

log = logging.getLogger("kie_queue.metrics")

_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")
INF = math.inf

# seconds; chosen for each histogram's expected range (a 2 creates/s limit, kie.ai generations of 5-60 s)
WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
OUTCOME_BUCKETS = (1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 300, 600, 900, 1800)
DELAY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)
DISPATCH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
DOWNLOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


@dataclasses.dataclass(frozen=True)
class Metric:
    """One metric family.  ``name`` is the exposed name (counters end in ``_total``); ``series`` lists
    the label-value tuples that exist from the first scrape, zero-valued."""

    name: str
    kind: str                               # counter | gauge | histogram
    help: str
    labels: tuple[str, ...] = ()
    series: tuple[tuple[str, ...], ...] = ((),)
    buckets: tuple[float, ...] = ()
    live: bool = False                      # a gauge computed at scrape time from the job store, not stored


def _one(label_values: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    return tuple((v,) for v in label_values)


CALLBACK_OUTCOMES = ("accepted", "redelivered", "duplicate", "unauthorized", "bad_signature", "bad_json",
                     "invalid", "too_large", "bad_content_type", "unknown_job", "task_mismatch")
CALLBACK_CHECKS = ("task_mismatch", "unknown_task", "foreign_task", "contradicted")
RETRY_REASONS = ("rate_limited", "transient_error", "unknown_outcome")
WAIT_REASONS = ("rate", "reserved", "cooldown", "paused", "in_flight", "fair", "tenant_cap")
FINISHED_STATES = ("succeeded", "failed", "timed_out", "cancelled")
LIVE_STATES = ("accepted", "submitting", "submitted")

CATALOGUE: tuple[Metric, ...] = (
    # -- counters ------------------------------------------------------------------------------
    Metric("kie_jobs_accepted_total", "counter", "Jobs accepted by kie.generate (new job ids)."),
    Metric("kie_jobs_rejected_total", "counter", "kie.generate calls refused for invalid input."),
    Metric("kie_jobs_finished_total", "counter", "Jobs that reached a final state, by state.",
           ("state",), _one(FINISHED_STATES)),
    Metric("kie_creates_sent_total", "counter", "createTask requests sent to kie.ai."),
    Metric("kie_creates_accepted_total", "counter", "createTask requests kie.ai answered with a taskId."),
    Metric("kie_creates_unknown_outcome_total", "counter",
           "createTask requests whose outcome is unknown (timeout or reset after sending)."),
    Metric("kie_upstream_429_total", "counter", "createTask requests kie.ai answered with 429 (rate limited)."),
    Metric("kie_upstream_402_total", "counter", "createTask requests kie.ai answered with 402 (no credits)."),
    Metric("kie_upstream_refused_total", "counter", "createTask requests kie.ai refused for good, by code.",
           ("code",), ()),
    Metric("kie_retries_total", "counter", "createTask attempts put back to be tried again, by reason.",
           ("reason",), _one(RETRY_REASONS)),
    Metric("kie_waits_total", "counter",
           "Submissions told to wait by the shared limiter, by reason (rate, reserved, cooldown, paused, in_flight, "
           "fair, tenant_cap).",
           ("reason",), _one(WAIT_REASONS)),
    Metric("kie_callbacks_total", "counter", "Callback requests answered by the webhook, by outcome.",
           ("outcome",), _one(CALLBACK_OUTCOMES)),
    Metric("kie_duplicate_callbacks_total", "counter",
           "Callbacks for an outcome already recorded or a job already finished (kie.ai redelivers)."),
    Metric("kie_callback_checks_failed_total", "counter",
           "Recorded callbacks the worker's confirmation with recordInfo did not trust, by reason.",
           ("reason",), _one(CALLBACK_CHECKS)),
    Metric("kie_duplicate_tasks_total", "counter",
           "Extra upstream tasks seen for a job that already had one (possibly billed twice)."),
    Metric("kie_resubmitted_after_unknown_total", "counter",
           "Jobs resubmitted after an unknown create outcome and no callback within the grace period."),
    Metric("kie_tasks_adopted_from_callback_total", "counter",
           "Upstream taskIds learned from a callback instead of the create's answer."),
    Metric("kie_credits_consumed_total", "counter", "kie.ai credits charged for succeeded jobs (as reported)."),
    Metric("kie_polls_total", "counter", "recordInfo status polls answered."),
    Metric("kie_poll_errors_total", "counter", "recordInfo status polls that failed."),
    Metric("kie_credit_pauses_total", "counter",
           "Times an account's submissions paused because its credits fell below KIE_MIN_CREDITS."),
    Metric("kie_tenant_granted_total", "counter", "Creates granted to a tenant by the fair scheduler, by account "
           "and tenant.", ("account", "tenant"), (), live=True),
    Metric("kie_slots_reclaimed_total", "counter", "In-flight slots freed by the sweep (their job was gone)."),
    Metric("kie_regenerations_total", "counter",
           "Upstream generations started again after a transient failCode (KIE_GENERATION_RETRIES)."),
    Metric("kie_jobs_retried_total", "counter", "Finished jobs re-run by an operator (kie-queue retry, the dashboard)."),
    Metric("kie_job_id_conflicts_total", "counter", "kie.generate calls refused: job_id already used with another input."),
    Metric("kie_continuations_redispatched_total", "counter",
           "Waiters' chains resumed again because the process resuming them died before marking them done "
           "(each may have been continued twice)."),
    Metric("kie_continuations_lease_lost_total", "counter",
           "Waiters marked done by a process whose resumption lease had been taken over meanwhile."),
    Metric("kie_replica_wait_short_total", "counter",
           "Durable job-store writes that fewer than KIE_REDIS_MIN_REPLICAS replicas acknowledged within 1 s."),
    Metric("kie_events_total", "counter", "Other counted events, by name.", ("event",), ()),
    # -- gauges --------------------------------------------------------------------------------
    Metric("kie_jobs", "gauge", "Unfinished jobs by state.", ("state",), _one(LIVE_STATES), live=True),
    Metric("kie_jobs_waiting_submit", "gauge", "Jobs waiting to be submitted (for a token, a pause or a retry).",
           live=True),
    Metric("kie_jobs_awaiting_outcome", "gauge", "Submitted jobs waiting for their outcome.", live=True),
    Metric("kie_jobs_resuming", "gauge", "Finished jobs whose waiters' chains are not all marked continued yet.",
           live=True),
    Metric("kie_in_flight", "gauge", "Upstream tasks submitted and not finished (in-flight slots held).", live=True),
    Metric("kie_in_flight_max", "gauge", "The in-flight cap (KIE_MAX_IN_FLIGHT).", live=True),
    Metric("kie_submissions_paused_seconds", "gauge",
           "Seconds left of the submission pause after a 402 (0 = not paused).", live=True),
    Metric("kie_creates_cooldown_seconds", "gauge", "Seconds left of the shared cool-down after a 429.", live=True),
    Metric("kie_account_waiting", "gauge", "Jobs waiting in the ready queues of one kie.ai account (a hash of "
           "its key), for a grant.", ("account",), (), live=True),
    Metric("kie_account_creates_in_window", "gauge", "Creates granted or sent in the current rate window, by account.",
           ("account",), (), live=True),
    Metric("kie_account_in_flight", "gauge", "In-flight slots held, by account.", ("account",), (), live=True),
    Metric("kie_tenant_waiting", "gauge", "Jobs waiting in a tenant's ready queue, by account and tenant.",
           ("account", "tenant"), (), live=True),
    Metric("kie_tenant_in_flight", "gauge", "In-flight slots a tenant holds, by account and tenant.",
           ("account", "tenant"), (), live=True),
    Metric("kie_tenant_creates_in_window", "gauge",
           "Creates granted or sent in the current rate window, by account and tenant.", ("account", "tenant"), (),
           live=True),
    Metric("kie_remaining_credits", "gauge",
           "The account's remaining kie.ai credits, as last reported (absent until known).", series=()),
    # -- histograms ----------------------------------------------------------------------------
    Metric("kie_limiter_wait_seconds", "histogram",
           "Seconds from a job's acceptance to its first createTask going out (rate limit, cap, pauses).",
           buckets=WAIT_BUCKETS),
    Metric("kie_submission_to_outcome_seconds", "histogram",
           "Seconds from a job's submission to kie.ai until its final state, by state.",
           ("state",), _one(FINISHED_STATES), OUTCOME_BUCKETS),
    Metric("kie_callback_delay_seconds", "histogram",
           "Seconds from kie.ai's completion of a task (its completeTime) to the webhook receiving the callback.",
           buckets=DELAY_BUCKETS),
    Metric("kie_callback_to_dispatch_seconds", "histogram",
           "Seconds from a callback's arrival to the next step of the waiting chain being dispatched.",
           buckets=DISPATCH_BUCKETS),
    Metric("kie_download_seconds", "histogram", "Seconds kie.download took to store a job's files, by outcome.",
           ("outcome",), _one(("ok", "error")), DOWNLOAD_BUCKETS),
)
BY_NAME = {m.name: m for m in CATALOGUE}

# event (store.incr name) → [(metric, label values)]
EVENTS: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "jobs_accepted": [("kie_jobs_accepted_total", ())],
    "jobs_rejected": [("kie_jobs_rejected_total", ())],
    **{f"jobs_{s}": [("kie_jobs_finished_total", (s,))] for s in FINISHED_STATES},
    "creates_sent": [("kie_creates_sent_total", ())],
    "creates_accepted": [("kie_creates_accepted_total", ())],
    "creates_unknown_outcome": [("kie_creates_unknown_outcome_total", ()), ("kie_retries_total", ("unknown_outcome",))],
    "upstream_429": [("kie_upstream_429_total", ()), ("kie_retries_total", ("rate_limited",))],
    "upstream_402": [("kie_upstream_402_total", ())],
    "upstream_retryable_errors": [("kie_retries_total", ("transient_error",))],
    **{f"waits_{r}": [("kie_waits_total", (r,))] for r in WAIT_REASONS},
    **{f"callbacks_{o}": [("kie_callbacks_total", (o,))] for o in CALLBACK_OUTCOMES},
    "callbacks_redelivered": [("kie_callbacks_total", ("redelivered",)), ("kie_duplicate_callbacks_total", ())],
    "callbacks_duplicate": [("kie_callbacks_total", ("duplicate",)), ("kie_duplicate_callbacks_total", ())],
    **{f"check_{c}": [("kie_callback_checks_failed_total", (c,))] for c in CALLBACK_CHECKS},
    "duplicate_tasks": [("kie_duplicate_tasks_total", ())],
    "resubmitted_after_unknown": [("kie_resubmitted_after_unknown_total", ())],
    "tasks_adopted_from_callback": [("kie_tasks_adopted_from_callback_total", ())],
    "credits_consumed": [("kie_credits_consumed_total", ())],
    "polls": [("kie_polls_total", ())],
    "poll_errors": [("kie_poll_errors_total", ())],
    "slots_reclaimed": [("kie_slots_reclaimed_total", ())],
    "regenerations": [("kie_regenerations_total", ())],
    "jobs_retried": [("kie_jobs_retried_total", ())],
    "job_id_conflicts": [("kie_job_id_conflicts_total", ())],
    "continuations_redispatched": [("kie_continuations_redispatched_total", ())],
    "continuations_lease_lost": [("kie_continuations_lease_lost_total", ())],
    "replica_wait_short": [("kie_replica_wait_short_total", ())],
    "credit_pauses": [("kie_credit_pauses_total", ())],
}
# the worker's callback checks were counted as callbacks_<reason> before; they are not webhook answers
_UPSTREAM_CODE = re.compile(r"^upstream_(\d{3})$")
_JOB_STATE = re.compile(r"^jobs_([a-z_]+)$")


def label_value(value) -> str:
    return _UNSAFE.sub("_", str(value))[:64] or "_"


def _field(kind: str, name: str, labels: tuple[str, ...], *rest: str) -> str:
    return "|".join((kind, name, *map(label_value, labels), *rest))


def _le(bound: float) -> str:
    return "+Inf" if bound == INF else repr(float(bound))


@dataclasses.dataclass
class Histogram:
    """One histogram series read back: cumulative ``buckets`` [(le, count)], ``sum`` and ``count``."""

    buckets: list[tuple[str, float]]
    sum: float
    count: float


@dataclasses.dataclass
class Snapshot:
    """What the hash holds, parsed: ``values[metric][label values]`` for counters and gauges,
    ``histograms[metric][label values]``.  Catalogued series not yet written are zero-valued."""

    values: dict[str, dict[tuple[str, ...], float]]
    histograms: dict[str, dict[tuple[str, ...], Histogram]]

    def value(self, name: str, *labels: str) -> float:
        return self.values.get(name, {}).get(tuple(labels), 0.0)

    def histogram(self, name: str, *labels: str) -> Histogram:
        return self.histograms[name][tuple(labels)]


class Metrics:
    """Records into the metrics hash ``key`` of ``redis`` (a ``redis.Redis``).

    Outside a batch (:func:`begin`) every observation is written at once, in one round trip.  Inside
    one, this thread's observations are summed in process and written by :func:`flush` (or when the
    batch holds ``MAX_FIELDS`` fields or is ``MAX_AGE_S`` old), all in one round trip.
    """

    def __init__(self, redis, key: str):
        self.redis = redis
        self.key = key
        self._script = None

    # -- recording ---------------------------------------------------------------------------
    def count(self, event: str, amount: float = 1) -> None:
        """Count an event of the job code (``EVENTS``); unknown names go to ``kie_events_total``."""
        targets = EVENTS.get(event)
        if targets is None:
            code, state = _UPSTREAM_CODE.match(event), _JOB_STATE.match(event)
            targets = ([("kie_upstream_refused_total", (code.group(1),))] if code
                       else [("kie_jobs_finished_total", (state.group(1),))] if state
                       else [("kie_events_total", (event,))])
        self._record([_increment(name, amount, labels) for name, labels in targets])

    def inc(self, name: str, amount: float = 1, *labels: str) -> None:
        """Add ``amount`` to counter ``name`` (catalogued) with these label values."""
        self._record([_increment(name, amount, labels)])

    def set(self, name: str, value: float, *labels: str) -> None:
        """Set stored gauge ``name``."""
        _check(name, "gauge", labels)
        self._record([(_field("g", name, labels), _SET, repr(float(value)))])

    def observe(self, name: str, seconds: float, *labels: str) -> None:
        """One observation of histogram ``name``: its bucket, sum and count."""
        metric = _check(name, "histogram", labels)
        seconds = max(0.0, float(seconds))
        bound = next((b for b in metric.buckets if seconds <= b), INF)
        self._record([(_field("h", name, labels, _le(bound)), _INT, 1),
                      (_field("h", name, labels, "sum"), _FLOAT, seconds),
                      (_field("h", name, labels, "count"), _INT, 1)])

    def since(self, name: str, start_ms, *labels: str) -> None:
        """Observe the seconds from ``start_ms`` (epoch ms, as job records keep times) until now;
        nothing when ``start_ms`` is unset."""
        if start_ms in (None, "", 0, "0"):
            return
        self.observe(name, time.time() - int(float(start_ms)) / 1000.0, *labels)

    def credits(self, consumed, remaining) -> None:
        """A succeeded job's credit figures as kie.ai reported them (either may be unknown)."""
        if consumed:
            self.count("credits_consumed", float(consumed))
        if remaining is not None:
            self.set("kie_remaining_credits", float(remaining))

    def _record(self, ops: list[tuple[str, str, object]]) -> None:
        batch = getattr(_batch, "pending", None)
        if batch is None:
            self._write(_merge({}, ops))
            return
        fields = batch.setdefault(self, {})
        _merge(fields, ops)
        max_fields, max_age_s = _batch.bounds
        if len(fields) >= max_fields or time.monotonic() - _batch.started >= max_age_s:
            _write_batch(batch)
            _batch.started = time.monotonic()

    def _write(self, fields: dict[str, tuple[str, object]]) -> None:
        """Apply ``{field: (op, value)}`` to the hash in one round trip (one script call)."""
        if not fields:
            return
        if self._script is None:
            self._script = self.redis.register_script(scripts.source("metrics_add"))
        args: list = []
        for field, (op, value) in fields.items():
            args += (op, field, value if op != _FLOAT else repr(float(value)))
        self._script(keys=[self.key], args=args)

    # -- reading -----------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """Every metric's stored values (one HGETALL), with the catalogued series zero-filled."""
        raw = self.redis.hgetall(self.key)
        values: dict[str, dict[tuple[str, ...], float]] = {}
        parts: dict[str, dict[tuple[str, ...], dict[str, float]]] = {}
        for k, v in raw.items():
            k = k.decode() if isinstance(k, bytes) else k
            kind, _, rest = k.partition("|")
            pieces = rest.split("|")
            metric = BY_NAME.get(pieces[0])
            if metric is None or kind not in ("c", "g", "h"):
                continue   # a field of an older version, or of a newer one: not exposed
            n = len(metric.labels)
            labels = tuple(pieces[1:1 + n])
            if len(labels) != n:
                continue
            if kind == "h":
                if len(pieces) != n + 2:
                    continue
                parts.setdefault(metric.name, {}).setdefault(labels, {})[pieces[-1]] = float(v)
            elif len(pieces) == n + 1:
                values.setdefault(metric.name, {})[labels] = float(v)
        histograms: dict[str, dict[tuple[str, ...], Histogram]] = {}
        for metric in CATALOGUE:
            if metric.kind == "histogram":
                stored = parts.get(metric.name, {})
                histograms[metric.name] = {labels: _cumulate(metric, stored.get(labels, {}))
                                           for labels in (*metric.series, *stored)}
            elif metric.kind == "counter" or not metric.live:
                series = values.setdefault(metric.name, {})
                for labels in metric.series:
                    series.setdefault(labels, 0.0)
        return Snapshot(values, histograms)


# -- batches: one thread's observations, written together ---------------------------------------------
MAX_FIELDS = 256        # a batch holding this many distinct fields is written at once,
MAX_AGE_S = 2.0         # and one older than this on its next observation (a long task's figures stay fresh)
_INT, _FLOAT, _SET = "i", "f", "s"
_batch = threading.local()
_fork_hook = []


def begin(*, max_fields: int = MAX_FIELDS, max_age_s: float = MAX_AGE_S) -> None:
    """From now until :func:`flush`, this thread's observations (of every ``Metrics``) are kept in
    process and summed; they are written early when a hash's batch holds ``max_fields`` fields, or on
    the first observation ``max_age_s`` seconds after the batch was last written.  A batch already
    open stays open (with its bounds)."""
    if not _fork_hook:      # a child forked inside a batch must not write the parent's observations again
        os.register_at_fork(after_in_child=_forget)
        _fork_hook.append(True)
    if getattr(_batch, "pending", None) is None:
        _batch.pending = {}
        _batch.started = time.monotonic()
        _batch.bounds = (max_fields, max_age_s)


def _forget() -> None:
    _batch.pending = None


def flush() -> None:
    """Write this thread's batch (one round trip per metrics hash) and close it.  Never raises: a batch
    Redis refused is logged and dropped (metrics are best-effort; the job store is not)."""
    batch = getattr(_batch, "pending", None)
    _batch.pending = None
    if batch:
        _write_batch(batch)


def _write_batch(batch: dict) -> None:
    for metrics, fields in list(batch.items()):
        try:
            metrics._write(fields)
        except Exception as exc:  # noqa: BLE001 - metrics must never fail the work they describe
            log.warning("metrics: %d buffered fields not written (%s)", len(fields), type(exc).__name__)
    batch.clear()


def _increment(name: str, amount: float, labels: tuple[str, ...]) -> tuple[str, str, object]:
    _check(name, "counter", labels)
    amount = float(amount)
    return (_field("c", name, labels), _INT if amount.is_integer() else _FLOAT, int(amount) if amount.is_integer()
            else amount)


def _merge(fields: dict[str, tuple[str, object]], ops) -> dict[str, tuple[str, object]]:
    """Fold ``ops`` into ``fields``: increments add up (an integer sum stays an HINCRBY), a gauge keeps its last value."""
    for field, op, value in ops:
        held = fields.get(field)
        if op == _SET or held is None:
            fields[field] = (op, value)
        else:
            total = held[1] + value
            fields[field] = (_INT if held[0] == _INT and op == _INT else _FLOAT, total)
    return fields


def _cumulate(metric: Metric, stored: dict[str, float]) -> Histogram:
    running, buckets = 0.0, []
    for bound in (*metric.buckets, INF):
        running += stored.get(_le(bound), 0.0)
        buckets.append((_le(bound), running))
    return Histogram(buckets, stored.get("sum", 0.0), stored.get("count", 0.0))


def _check(name: str, kind: str, labels: tuple) -> Metric:
    metric = BY_NAME.get(name)
    if metric is None or metric.kind != kind or metric.live:
        raise ValueError(f"metrics: {name!r} is not a stored {kind} of the catalogue")
    if len(labels) != len(metric.labels):
        raise ValueError(f"metrics: {name} takes labels {metric.labels}, got {labels!r}")
    return metric
