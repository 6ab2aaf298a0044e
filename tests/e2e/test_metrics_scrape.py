"""End to end: ``GET /metrics`` of the real webhook after a real batch (simulator, gunicorn, worker, beat).

The counters and histogram counts must be exact: N jobs give N acceptances, N creates, N
submission→outcome observations, and so on, whichever of the processes recorded them.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

import worker.errors as errors
from harness import unique
from worker.cli.stack import free_port, wait_for

OK, BAD = 6, 2


# two Celery workers (two processes each) and two gunicorn workers record into the same numbers
DEPLOYMENT = {"callbacks": True, "hmac": True, "start": {"workers": 2, "concurrency": 2, "user_worker": False}}


def scrape(dep, url: str | None = None) -> tuple[str, dict]:
    text = requests.get(url or dep.web_url + "/metrics", timeout=10).text
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for family in text_string_to_metric_families(text) for s in family.samples}
    return text, got


def test_a_batch_shows_exact_counters_and_histogram_counts(dep):
    _, before = scrape(dep)
    assert before[("kie_jobs_accepted_total", ())] == 0 and before[("kie_upstream_429_total", ())] == 0

    good = [(dep.generate(unique(f"metrics ok {i}")) | dep.download()).apply_async() for i in range(OK)]
    bad = [dep.generate(unique("metrics [sim:fail=501:content policy]")).apply_async() for _ in range(BAD)]
    results = [r.get(timeout=90) for r in good]
    for r in bad:
        with pytest.raises(errors.GenerationFailed):
            r.get(timeout=90)
    n = OK + BAD

    # the last steps (download, the failed chain's errback path) have run; wait for the slots to be given back
    # and for the last tasks' batches of observations (each task writes its own when it ends, just after
    # its result is stored): then every count must be exact
    def settled():
        got = scrape(dep)[1]
        return (got[("kie_in_flight", ())] == 0
                and got[("kie_download_seconds_count", (("outcome", "ok"),))] >= OK
                and got[("kie_callback_to_dispatch_seconds_count", ())] >= n
                and sum(got[("kie_jobs_finished_total", (("state", s),))] for s in ("succeeded", "failed")) >= n)
    wait_for(settled, 30, "in-flight slots released and every task's metrics written")
    text, got = scrape(dep)

    def v(name, **labels):
        return got[(name, tuple(sorted(labels.items())))]

    assert v("kie_jobs_accepted_total") == n
    assert v("kie_creates_sent_total") == n and v("kie_creates_accepted_total") == n
    assert v("kie_jobs_finished_total", state="succeeded") == OK
    assert v("kie_jobs_finished_total", state="failed") == BAD
    assert v("kie_submission_to_outcome_seconds_count", state="succeeded") == OK
    assert v("kie_submission_to_outcome_seconds_count", state="failed") == BAD
    assert v("kie_submission_to_outcome_seconds_bucket", state="succeeded", le="+Inf") == OK
    assert v("kie_limiter_wait_seconds_count") == n
    assert v("kie_download_seconds_count", outcome="ok") == OK
    assert v("kie_download_seconds_count", outcome="error") == 0
    assert v("kie_callbacks_total", outcome="accepted") == n
    assert v("kie_callback_delay_seconds_count") == n
    assert v("kie_callback_to_dispatch_seconds_count") == n        # one waiter per job
    assert v("kie_credits_consumed_total") == pytest.approx(sum(r["credits"] or 0 for r in results))
    assert v("kie_upstream_429_total") == 0 and v("kie_duplicate_tasks_total") == 0
    assert v("kie_jobs_waiting_submit") == 0 and v("kie_jobs", state="submitted") == 0
    if any(r["remained_credits"] is not None for r in results):
        assert ("kie_remaining_credits", ()) in got

    # the numbers above were recorded by several processes: both workers ran tasks of the batch
    assert all("Task kie.complete[" in dep.stack.log_of(w) for w in ("w1", "w2"))

    promtool = shutil.which("promtool")
    if promtool:
        run = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        assert run.returncode == 0, run.stdout + run.stderr


def test_a_worker_on_kie_metrics_port_serves_the_same_deployment_wide_numbers(dep):
    port = free_port()
    dep.stack.start_worker("w3", concurrency=1, env={"KIE_METRICS_PORT": str(port)})
    dep.stack.start_worker("w4", concurrency=1, env={"KIE_METRICS_PORT": str(port)})   # same host, same port
    url = f"http://127.0.0.1:{port}/metrics"
    dep.generate(unique("metrics on a worker's port")).apply_async().get(timeout=90)
    wait_for(lambda: scrape(dep)[1][("kie_in_flight", ())] == 0, 30, "in-flight slots released")

    def counters(at=None):
        return {k: v for k, v in scrape(dep, at)[1].items() if k[0].endswith(("_total", "_count"))}

    def agreeing():
        web = counters()
        return web if web and web == counters(url) else None
    # the same numbers from both (polled: a task that just ended, or a sweep, may write between two scrapes)
    wait_for(agreeing, 30, "the worker's endpoint and the webhook's serve the same counters")
    _, from_worker = scrape(dep, url)
    assert from_worker[("kie_jobs_accepted_total", ())] >= 1
    # the second worker could not bind the port: it says so and works on
    assert "metrics endpoint not started on port" in dep.stack.log_of("w4")
    assert "ready." in dep.stack.log_of("w4")
