"""worker.store.metrics (recording into Redis) and webhook.metrics (the exposition of ``GET /metrics``).

Real Redis; the exposition is read through the real Flask app and validated with ``promtool check metrics``
(Debian package ``prometheus``, which ``scripts/test`` installs when missing).
"""

from __future__ import annotations

import shutil
import subprocess
import threading

import pytest
import redis as redis_lib
from prometheus_client.parser import text_string_to_metric_families

import webhook
from worker.settings import Settings
from worker.store.jobstore import JobStore
from worker.store import metrics
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


# -- batches: a task's (a request's) observations summed in process, written in one round trip --------------

class _CountingConnection(redis_lib.Connection):
    """A Redis connection that counts what it sends: one send is one round trip (a pipeline or a script is one)."""

    sends = 0

    def send_packed_command(self, command, check_health=True):
        type(self).sends += 1
        return super().send_packed_command(command, check_health)


@pytest.fixture
def counted(prefix):
    """A job store on a client whose round trips are counted (``counted.sends()``)."""
    client = redis_lib.Redis(connection_pool=redis_lib.ConnectionPool.from_url(
        UNIT_REDIS_URL, connection_class=_CountingConnection))
    store = JobStore(client, prefix)
    store.sends = lambda: _CountingConnection.sends
    yield store
    metrics.flush()
    client.close()


def _a_tasks_worth(m: Metrics) -> None:
    m.count("jobs_accepted")
    m.count("upstream_429")              # two counters
    m.count("callbacks_duplicate", 2)
    m.count("credits_consumed", 0.25)
    m.count("credits_consumed", 1)       # a float and an integer into one field
    for seconds in (0.01, 0.3, 7):
        m.observe("kie_limiter_wait_seconds", seconds)
    m.set("kie_remaining_credits", 10)
    m.set("kie_remaining_credits", 9)    # the last value set wins


def _figures(snap) -> dict:
    h = snap.histogram("kie_limiter_wait_seconds")
    return {"accepted": snap.value("kie_jobs_accepted_total"), "429": snap.value("kie_upstream_429_total"),
            "retries": snap.value("kie_retries_total", "rate_limited"),
            "dup": snap.value("kie_duplicate_callbacks_total"), "credits": snap.value("kie_credits_consumed_total"),
            "remaining": snap.value("kie_remaining_credits"), "buckets": h.buckets, "sum": round(h.sum, 9),
            "count": h.count}


def test_a_batch_is_written_once_at_flush_with_the_same_figures_as_one_write_each(counted, r, prefix):
    unbatched = JobStore(r, prefix + "-plain").metrics
    _a_tasks_worth(unbatched)
    counted.metrics.inc("kie_polls_total")        # loads the script: the batch below is its one EVALSHA
    before = counted.sends()
    metrics.begin()
    _a_tasks_worth(counted.metrics)
    assert counted.sends() == before                                      # nothing sent yet
    assert counted.metrics.snapshot().value("kie_jobs_accepted_total") == 0
    metrics.flush()
    assert counted.sends() == before + 2          # the snapshot above, and the batch's one round trip
    assert _figures(counted.metrics.snapshot()) == _figures(unbatched.snapshot())
    assert _figures(unbatched.snapshot())["credits"] == 1.25 and _figures(unbatched.snapshot())["count"] == 3
    for key in r.scan_iter(f"{prefix}-plain:*"):
        r.delete(key)


def test_outside_a_batch_each_observation_is_one_round_trip(counted):
    counted.metrics.inc("kie_polls_total")
    before = counted.sends()
    counted.metrics.observe("kie_download_seconds", 0.5, "ok")            # bucket, sum and count
    counted.incr("upstream_429")                                          # two counters
    assert counted.sends() == before + 2
    snap = counted.metrics.snapshot()
    assert snap.histogram("kie_download_seconds", "ok").count == 1 and snap.value("kie_retries_total", "rate_limited") == 1


def test_a_batch_is_this_threads_only(counted):
    metrics.begin()
    counted.incr("polls")
    seen = []
    other = threading.Thread(target=lambda: (counted.incr("polls"),
                                             seen.append(counted.metrics.snapshot().value("kie_polls_total"))))
    other.start()
    other.join()
    assert seen == [1]                    # the other thread's own count, written at once; ours still held
    metrics.flush()
    assert counted.metrics.snapshot().value("kie_polls_total") == 2


def test_a_batch_is_written_early_when_it_grows_or_ages(counted):
    metrics.begin(max_fields=3)
    counted.incr("polls")
    counted.incr("poll_errors")
    assert counted.metrics.snapshot().value("kie_polls_total") == 0
    counted.incr("slots_reclaimed")                                       # the third field: written
    assert counted.metrics.snapshot().value("kie_slots_reclaimed_total") == 1
    metrics.flush()
    metrics.begin(max_age_s=0)
    counted.incr("polls")                                                 # already old enough: written
    assert counted.metrics.snapshot().value("kie_polls_total") == 2
    metrics.flush()


def test_a_batch_redis_refuses_is_logged_and_dropped_never_raised(caplog):
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from worker.cli.stack import free_port

    dead = JobStore(redis_lib.Redis(port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)),
                    "t-dead")
    metrics.begin()
    dead.incr("polls")
    metrics.flush()                                                       # no exception
    assert "buffered fields not written" in caplog.text
    with pytest.raises(redis_lib.ConnectionError):
        dead.incr("polls")                                                # outside a batch the caller sees it


def test_a_process_forked_inside_a_batch_does_not_write_the_parents_observations(counted):
    import os

    metrics.begin()
    counted.incr("polls")
    pid = os.fork()
    if pid == 0:                                  # the child: its batch starts empty
        counted.incr("poll_errors")
        metrics.flush()
        os._exit(0)
    os.waitpid(pid, 0)
    metrics.flush()
    snap = counted.metrics.snapshot()
    assert snap.value("kie_polls_total") == 1 and snap.value("kie_poll_errors_total") == 1
