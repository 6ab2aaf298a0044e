"""worker.store.metrics (recording into Redis) and webhook.metrics (the exposition of ``GET /metrics``).

Real Redis; the exposition is read through the real Flask app and validated with ``promtool check metrics``
(Debian package ``prometheus``, which ``scripts/test`` installs when missing).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

import webhook
from worker.settings import Settings
from worker.store.jobstore import JobStore
from worker.store.metrics import BY_NAME, CATALOGUE, EVENTS, Metrics

from conftest import UNIT_REDIS_URL


@pytest.fixture
def store(r, prefix):
    return JobStore(r, prefix)


@pytest.fixture
def app(prefix):
    s = Settings.from_env({"REDIS_URL": UNIT_REDIS_URL, "CELERY_BROKER_URL": UNIT_REDIS_URL,
                           "CELERY_RESULT_BACKEND": UNIT_REDIS_URL, "KIE_KEY_PREFIX": prefix,
                           "KIE_API_KEY": "sk-metrics-test-key"})
    return webhook.create_app(s)


def scrape(app) -> str:
    answer = app.test_client().get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return answer.get_data(as_text=True)


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of an exposition."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_every_metric_exists_from_the_first_scrape_with_help_and_zero_values(app):
    text = scrape(app)
    for metric in CATALOGUE:
        family = metric.name[:-len("_total")] if metric.kind == "counter" else metric.name
        assert f"# HELP {metric.name} " in text or f"# HELP {family} " in text, metric.name
        assert f"# TYPE {metric.name} {metric.kind}" in text or f"# TYPE {family} {metric.kind}" in text
    got = samples(text)
    # the counters operators alert on are there before anything happened, at 0
    for name in ("kie_upstream_429_total", "kie_duplicate_tasks_total", "kie_resubmitted_after_unknown_total",
                 "kie_jobs_accepted_total", "kie_duplicate_callbacks_total", "kie_credits_consumed_total"):
        assert got[(name, ())] == 0, name
    assert got[("kie_callbacks_total", (("outcome", "unauthorized"),))] == 0
    assert got[("kie_retries_total", (("reason", "rate_limited"),))] == 0
    assert got[("kie_submission_to_outcome_seconds_count", (("state", "succeeded"),))] == 0
    assert got[("kie_limiter_wait_seconds_bucket", (("le", "+Inf"),))] == 0
    assert got[("kie_jobs_waiting_submit", ())] == 0 and got[("kie_in_flight", ())] == 0
    assert got[("kie_in_flight_max", ())] == 100
    assert ("kie_remaining_credits", ()) not in got       # unknown until kie.ai reports it


def test_events_move_their_counters(store, app):
    store.incr("upstream_429")
    store.incr("callbacks_redelivered", 2)
    store.incr("upstream_422")
    store.incr("jobs_succeeded")
    store.incr("check_contradicted")
    store.incr("credits_consumed", 0.5)
    store.incr("something new")
    got = samples(scrape(app))
    assert got[("kie_upstream_429_total", ())] == 1
    assert got[("kie_retries_total", (("reason", "rate_limited"),))] == 1
    assert got[("kie_callbacks_total", (("outcome", "redelivered"),))] == 2
    assert got[("kie_duplicate_callbacks_total", ())] == 2
    assert got[("kie_upstream_refused_total", (("code", "422"),))] == 1
    assert got[("kie_jobs_finished_total", (("state", "succeeded"),))] == 1
    assert got[("kie_callback_checks_failed_total", (("reason", "contradicted"),))] == 1
    assert got[("kie_credits_consumed_total", ())] == 0.5
    assert got[("kie_events_total", (("event", "something_new"),))] == 1


def test_histogram_buckets_are_cumulative_with_sum_and_count(store, app):
    m = store.metrics
    for seconds in (0.01, 0.3, 0.3, 7, 5000):
        m.observe("kie_limiter_wait_seconds", seconds)
    got = samples(scrape(app))
    bucket = lambda le: got[("kie_limiter_wait_seconds_bucket", (("le", le),))]   # noqa: E731
    assert bucket("0.05") == 1 and bucket("0.25") == 1 and bucket("0.5") == 3 and bucket("10.0") == 4
    assert bucket("1800.0") == 4 and bucket("+Inf") == 5
    assert got[("kie_limiter_wait_seconds_count", ())] == 5
    assert got[("kie_limiter_wait_seconds_sum", ())] == pytest.approx(5007.61)


def test_since_observes_from_an_epoch_ms_field_and_skips_unset_ones(store):
    import time
    store.metrics.since("kie_submission_to_outcome_seconds", int((time.time() - 3) * 1000), "failed")
    store.metrics.since("kie_submission_to_outcome_seconds", None, "failed")
    store.metrics.since("kie_submission_to_outcome_seconds", "", "failed")
    h = store.metrics.snapshot().histogram("kie_submission_to_outcome_seconds", "failed")
    assert h.count == 1 and 2.5 < h.sum < 10


def test_stored_gauge_and_credits(store, app):
    store.metrics.credits(1.5, 98.5)
    store.metrics.credits(None, 97)
    got = samples(scrape(app))
    assert got[("kie_remaining_credits", ())] == 97
    assert got[("kie_credits_consumed_total", ())] == 1.5


def test_live_gauges_read_the_job_store(store, app):
    store.accept("job-a", model="m", input={"prompt": "x"}, timeout=60, waiter_id="w", waiter={}, first_claim_ms=0)
    store.accept("job-b", model="m", input={"prompt": "y"}, timeout=60, waiter_id="w", waiter={}, first_claim_ms=0)
    got = samples(scrape(app))
    assert got[("kie_jobs_waiting_submit", ())] == 2
    assert got[("kie_jobs", (("state", "accepted"),))] == 2
    assert got[("kie_jobs", (("state", "submitted"),))] == 0


def test_label_values_are_sanitised_and_wrong_use_is_refused(store):
    m: Metrics = store.metrics
    m.inc("kie_events_total", 1, 'a"b\nc|d')
    assert store.metrics.snapshot().value("kie_events_total", "a_b_c_d") == 1
    with pytest.raises(ValueError, match="kie_nope"):
        m.inc("kie_nope")
    with pytest.raises(ValueError, match="takes labels"):
        m.inc("kie_callbacks_total", 1)
    with pytest.raises(ValueError, match="stored gauge"):
        m.set("kie_in_flight", 3)      # live: computed at scrape time, never stored


def test_every_event_names_catalogued_counters():
    for event, targets in EVENTS.items():
        for name, labels in targets:
            assert BY_NAME[name].kind == "counter", event
            assert len(labels) == len(BY_NAME[name].labels), event


def test_counter_names_follow_prometheus_conventions():
    for metric in CATALOGUE:
        assert metric.name.startswith("kie_")
        assert metric.name.endswith("_total") == (metric.kind == "counter"), metric.name
        if metric.kind == "histogram":
            assert metric.name.endswith("_seconds"), metric.name


def test_promtool_accepts_the_exposition(store, app):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed and scripts/test could not install it "
                    "(Debian package 'prometheus' via apt-get)")
    store.incr("upstream_429")
    store.incr("upstream_500")
    store.metrics.observe("kie_download_seconds", 0.2, "ok")
    store.metrics.credits(2, 10)
    text = scrape(app)
    run = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_event_the_code_counts_is_catalogued():
    """Each ``incr("...")`` of the product, the webhook's ``_count("...")`` outcomes and the limiter's wait
    reasons map to catalogued counters (not to the catch-all ``kie_events_total``)."""
    import re
    from pathlib import Path

    from worker.store.metrics import CALLBACK_OUTCOMES, WAIT_REASONS

    root = Path(__file__).resolve().parents[2]
    source = {p: p.read_text() for top in ("worker", "webhook") for p in (root / top).rglob("*.py")}
    literal = {m for text in source.values() for m in re.findall(r'\bincr\("([a-z0-9_]+)"', text)}
    assert literal and literal <= set(EVENTS), sorted(literal - set(EVENTS))
    outcomes = set(re.findall(r'_count\("([a-z_]+)"\)', source[root / "webhook" / "routes.py"]))
    assert outcomes and outcomes <= set(CALLBACK_OUTCOMES), sorted(outcomes - set(CALLBACK_OUTCOMES))
    reasons = set(re.findall(r"return \{0, [^}]*'([a-z_]+)'\}", (root / "worker/store/lua/acquire.lua").read_text()))
    assert reasons and reasons <= set(WAIT_REASONS), sorted(reasons - set(WAIT_REASONS))
