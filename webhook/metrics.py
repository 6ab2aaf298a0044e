"""Prometheus text exposition of the job store's counters and queue gauges.

Counters live in one Redis hash (shared by every worker and web process), so any web process
answers for the whole deployment.  Nothing secret is ever a label or a value.
"""

from __future__ import annotations

import re

_SAFE = re.compile(r"[^a-zA-Z0-9_]")


def render(store, limiter) -> str:
    lines = []
    for name, value in sorted(store.counters().items()):
        metric = "kie_" + _SAFE.sub("_", name) + "_total"
        lines += [f"# TYPE {metric} counter", f"{metric} {value}"]
    r, k = store.redis, store.keys
    gauges = {
        "kie_jobs_waiting_submit": r.zcard(k.due_submit),
        "kie_jobs_awaiting_outcome": r.zcard(k.due_check),
        "kie_jobs_resuming": r.zcard(k.due_resume),
        "kie_in_flight": limiter.in_flight(),
        "kie_in_flight_max": limiter.max_in_flight,
        "kie_submissions_paused_seconds": limiter.paused_for(),
    }
    for metric, value in gauges.items():
        lines += [f"# TYPE {metric} gauge", f"{metric} {value}"]
    return "\n".join(lines) + "\n"
