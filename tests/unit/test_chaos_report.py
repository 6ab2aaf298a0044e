"""The chaos suite's verdict and plan (bench/chaos/report.py, schedule.py): pure functions, no processes."""

from collections import Counter

from bench.chaos import report, schedule


def _job(i, state="succeeded", arrivals=1, errbacks=0, link_error=False, upstream=1, resubmitted=0):
    v = report.JobView(f"j{i}", f"p{i}", link_error, state != "succeeded")
    v.record = {"state": state, "resubmitted_after_unknown": str(resubmitted), "finished_at": "1000",
                "outcome": '{"error": "GenerationFailed", "fail_code": "500"}' if state == "failed" else "{}"}
    v.arrivals = [{"at": 1.0 + k, "task_id": "t", "redelivered": k > 0} for k in range(arrivals)]
    v.errbacks = [{"at": 2.0}] * errbacks
    v.upstream = upstream
    return v


def test_a_clean_run_is_ok_and_counts_each_kind():
    jobs = [_job(0), _job(1, "failed", arrivals=0, errbacks=1, link_error=True), _job(2, "failed", arrivals=0)]
    r = report.row("x", jobs, started=0.0, faults=Counter({"worker SIGKILL": 2}))
    assert r["ok"] and r["succeeded"] == 1 and r["failed"] == 2 and r["lost"] == 0
    assert r["failed_reasons"] == {"fail_code 500 (expected)": 2}
    assert r["errbacks_per_failed_job_with_link_error"] == {1: 1}


def test_lost_double_missing_errback_and_unexplained_duplicate_each_fail_the_run():
    cases = [[_job(0, "submitted", arrivals=0)], [_job(0, arrivals=2)],
             [_job(0, "failed", arrivals=0, errbacks=2, link_error=True)], [_job(0, upstream=2)]]
    for jobs in cases:
        assert not report.row("x", jobs, started=0.0, faults=Counter())["ok"], jobs[0]
    # an extra upstream task after a resubmission the job's record shows is explained
    r = report.row("x", [_job(0, upstream=2, resubmitted=1)], started=0.0, faults=Counter())
    assert r["ok"] and r["extra_upstream_explained"] == 1
    regenerated = _job(1, "failed", arrivals=0, upstream=3)
    regenerated.record["regenerations"] = "2"
    assert report.row("x", [regenerated], started=0.0, faults=Counter())["extra_upstream_unexplained"] == []


def test_a_double_continuation_is_traced_to_a_redelivered_download_in_the_logs():
    line = "Task kie.download[ab12cd34-0000] succeeded in 0.1s: {'job_id': 'j0', 'state': 'success'}"
    logs = {"w1": "Task kie.download[ab12cd34-0000] received\n",
            "w2": "Task kie.download[ab12cd34-0000] received\n" + line}
    job = _job(0, arrivals=2)
    job.arrivals[1]["redelivered"] = False
    assert "w1 SIGKILLed" in report.explain_doubles([job], logs, {"w1"})["j0"]
    assert report.explain_doubles([job], logs, set()) == {}


def test_the_fault_plan_is_fixed_by_its_seed_and_has_every_fault():
    a = schedule.plan(3, window=100, kill_every=4, webhook_down=(20, 60), partition=30)
    assert a == schedule.plan(3, window=100, kill_every=4, webhook_down=(20, 60), partition=30)
    kinds = Counter(f.kind for f in a)
    assert kinds["kill_worker"] >= 15 and kinds["redis_restart"] == 2 and kinds["burst"] == 2
    assert kinds["webhook_down"] == kinds["webhook_up"] == kinds["partition"] == kinds["heal"] == 1
    assert [f.at for f in a] == sorted(f.at for f in a)
    assert "redis_restart" not in {f.kind for f in schedule.plan(3, window=100, kill_every=4, webhook_down=(5, 9),
                                                                  failover=True)}
