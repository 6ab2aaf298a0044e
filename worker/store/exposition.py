"""The deployment's metrics from Redis as Prometheus text: a prometheus_client Collector.

Every process records into one Redis hash (``worker.store.metrics``); this collector reads it at
scrape time (one HGETALL, plus a few cheap reads for the live gauges: queue lengths, in-flight
slots, pauses), so whoever serves it (the webhook's ``GET /metrics``; a worker on
``KIE_METRICS_PORT``) answers for the whole deployment.  Every catalogued metric is exposed from
the first scrape with its ``# HELP`` line, zero-valued where it has series.  No HTTP server here.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from .metrics import CATALOGUE, LIVE_STATES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class DeploymentCollector(Collector):
    """Builds every metric family of ``CATALOGUE`` from the job store and the limiter."""

    def __init__(self, store, limiter, limiters=()):
        self.store = store
        self.limiter = limiter
        self.limiters = tuple(limiters) or (limiter,)

    def collect(self):
        snap = self.store.metrics.snapshot()
        live = self._live()
        for metric in CATALOGUE:
            labels = list(metric.labels)
            if metric.kind == "counter":
                family = CounterMetricFamily(metric.name[: -len("_total")], metric.help, labels=labels)
                series = live.get(metric.name, {}) if metric.live else snap.values.get(metric.name, {})
                for values, value in sorted(series.items()):
                    family.add_metric(list(values), value)
            elif metric.kind == "gauge":
                family = GaugeMetricFamily(metric.name, metric.help, labels=labels)
                series = live.get(metric.name, {}) if metric.live else snap.values.get(metric.name, {})
                for values, value in sorted(series.items()):
                    family.add_metric(list(values), value)
            else:
                family = HistogramMetricFamily(metric.name, metric.help, labels=labels)
                for values, h in sorted(snap.histograms[metric.name].items()):
                    family.add_metric(list(values), h.buckets, h.sum)
            yield family

    def _live(self) -> dict[str, dict[tuple, float]]:
        """The gauges read off the job store now: queue lengths, jobs by state, slots, pauses, and each
        account's and tenant's figures (``Limiter.status``)."""
        r, k, lim = self.store.redis, self.store.keys, self.limiter
        waiting, awaiting = r.zcard(k.due_submit), r.zcard(k.due_check)
        by_state = {s: 0 for s in LIVE_STATES}
        by_state["submitted"] = awaiting
        accounts = _per_account([limiter.status() for limiter in self.limiters])
        queued = sum(accounts["kie_account_waiting"].values())
        by_state["accepted"] += queued      # jobs in the ready queues are accepted and not in due_submit
        pipe = r.pipeline(transaction=False)
        for job_id in r.zrange(k.due_submit, 0, -1):
            pipe.hget(k.job(job_id.decode() if isinstance(job_id, bytes) else job_id), "state")
        for state in pipe.execute():
            state = state.decode() if isinstance(state, bytes) else state
            if state in by_state and state != "submitted":
                by_state[state] += 1
        return {
            "kie_jobs": {(s,): float(n) for s, n in by_state.items()},
            "kie_jobs_waiting_submit": {(): float(waiting + queued)},
            "kie_jobs_awaiting_outcome": {(): float(awaiting)},
            "kie_jobs_resuming": {(): float(r.zcard(k.due_resume))},
            "kie_in_flight": {(): float(lim.in_flight())},
            "kie_in_flight_max": {(): float(lim.max_in_flight)},
            "kie_submissions_paused_seconds": {(): float(lim.paused_for())},
            "kie_creates_cooldown_seconds": {(): float(_cooldown(lim))},
            **accounts,
        }


def _per_account(statuses: list[dict]) -> dict[str, dict[tuple, float]]:
    out: dict[str, dict[tuple, float]] = {name: {} for name in (
        "kie_account_waiting", "kie_account_creates_in_window", "kie_account_in_flight", "kie_tenant_waiting",
        "kie_tenant_in_flight", "kie_tenant_creates_in_window", "kie_tenant_granted_total")}
    for st in statuses:
        a = st["account"]
        out["kie_account_waiting"][(a,)] = float(st["waiting"])
        out["kie_account_creates_in_window"][(a,)] = float(st["creates_in_window"])
        out["kie_account_in_flight"][(a,)] = float(st["in_flight"])
        for t in st["tenants"]:
            key = (a, t["tenant"])
            out["kie_tenant_waiting"][key] = float(t["waiting"])
            out["kie_tenant_in_flight"][key] = float(t["in_flight"])
            out["kie_tenant_creates_in_window"][key] = float(t["creates_in_window"])
            out["kie_tenant_granted_total"][key] = float(t["granted_total"])
    return out


def _cooldown(limiter) -> float:
    return max(0, int(limiter.redis.pttl(limiter.cooldown_key))) / 1000.0


def registry(store, limiter, limiters=()) -> CollectorRegistry:
    """A registry holding only the deployment's collector (no per-process metrics: they would describe
    whichever process happened to answer).  ``limiters``: one per account (default: ``limiter`` alone)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(DeploymentCollector(store, limiter, limiters))
    return reg


def render(store, limiter, limiters=()) -> bytes:
    """The exposition text of the whole deployment."""
    return generate_latest(registry(store, limiter, limiters))
