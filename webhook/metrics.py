"""Prometheus text exposition of the job store's counters and queue gauges.

Counters live in one Redis hash (shared by every worker and web process), so any web process
answers for the whole deployment.  Nothing secret is ever a label or a value.
"""

from __future__ import annotations

import re

_SAFE = re.compile(r"[^a-zA-Z0-9_]")


def render(store, limiter, limiters=()) -> str:
    """The text exposition; ``limiters`` (one per account) add per-account and per-tenant gauges
    (labels: ``account``, a hash of the key, and ``tenant``)."""
    lines = []
    for name, value in sorted(store.counters().items()):
        metric = "kie_" + _SAFE.sub("_", name) + "_total"
        lines += [f"# TYPE {metric} counter", f"{metric} {value}"]
    r, k = store.redis, store.keys
    gauges = {
        "kie_jobs_waiting_submit": r.zcard(k.due_submit),
        "kie_jobs_awaiting_outcome": r.zcard(k.due_check),
        "kie_in_flight": limiter.in_flight(),
        "kie_in_flight_max": limiter.max_in_flight,
        "kie_submissions_paused_seconds": limiter.paused_for(),
    }
    for metric, value in gauges.items():
        lines += [f"# TYPE {metric} gauge", f"{metric} {value}"]
    lines += _per_tenant([lim.status() for lim in limiters])
    return "\n".join(lines) + "\n"


def _per_tenant(statuses: list[dict]) -> list[str]:
    if not statuses:
        return []
    series = {"kie_account_creates_in_window": [], "kie_account_waiting": [], "kie_account_in_flight": [],
              "kie_tenant_waiting": [], "kie_tenant_in_flight": [], "kie_tenant_creates_in_window": [],
              "kie_tenant_granted": []}
    for st in statuses:
        a = st["account"]
        series["kie_account_creates_in_window"].append((f'account="{a}"', st["creates_in_window"]))
        series["kie_account_waiting"].append((f'account="{a}"', st["waiting"]))
        series["kie_account_in_flight"].append((f'account="{a}"', st["in_flight"]))
        for t in st["tenants"]:
            labels = f'account="{a}",tenant="{t["tenant"]}"'
            series["kie_tenant_waiting"].append((labels, t["waiting"]))
            series["kie_tenant_in_flight"].append((labels, t["in_flight"]))
            series["kie_tenant_creates_in_window"].append((labels, t["creates_in_window"]))
            series["kie_tenant_granted"].append((labels, t["granted_total"]))
    out = []
    for metric, rows in series.items():
        name, kind = (metric + "_total", "counter") if metric == "kie_tenant_granted" else (metric, "gauge")
        out.append(f"# TYPE {name} {kind}")
        out += [f"{name}{{{labels}}} {value}" for labels, value in rows]
    return out
