"""``kie-queue status / jobs / limiter / credits / retry / cancel / resume`` against a running deployment
(callbacks on, a user worker for the post-processing): output, ``--json`` shapes and exit codes."""

import json

import pytest

from cli_support import kie, one_line_error
from harness import API_KEY, unique
from worker.cli.stack import wait_for


DEPLOYMENT = dict(start=dict(concurrency=2))


def _job_id(text):
    return unique(text).replace(" ", "-")


@pytest.fixture(scope="module")
def finished(dep):
    """A job that ran through ``kie-queue submit --wait``: (job id, its result)."""
    job_id = _job_id("done")
    done = kie("submit", "a kettle on a stove", "--image-size", "4:3", "--job-id", job_id, "--wait",
               env=dep.stack.env)
    assert done.returncode == 0, done.stderr
    return job_id, json.loads(done.stdout)


def test_status_shows_the_record_by_job_id_and_by_task_id(dep, finished):
    job_id, result = finished
    status = kie("status", job_id, env=dep.stack.env)
    assert status.returncode == 0, status.stderr
    record = json.loads(status.stdout)
    assert record["state"] == "succeeded" and record["job_id"] == job_id
    assert record["task_id"] == result["task_id"] and isinstance(record["attempts"], int)
    events = [e["event"] for e in record["timeline"]]
    assert events[0] == "accepted" and "callback_received" in events and events[-1] == "finished"
    assert all(set(e) >= {"time", "event", "detail"} for e in record["timeline"])
    by_task = kie("status", result["task_id"], "--json", env=dep.stack.env)
    assert by_task.returncode == 0 and json.loads(by_task.stdout)["job_id"] == job_id


def test_status_of_an_unknown_job_is_exit_1(dep):
    done = kie("status", "no-such-job", env=dep.stack.env)
    assert done.returncode == 1
    assert "no job 'no-such-job'" in one_line_error(done) and done.stdout == ""


def test_status_needs_a_job(dep):
    done = kie("status", env=dep.stack.env)
    assert done.returncode == 2 and "JOB" in one_line_error(done)


def test_jobs_lists_newest_first_with_filters(dep, finished):
    job_id, _ = finished
    failed_id = _job_id("failing")
    done = kie("submit", f"a broken vase {failed_id} [sim:fail=422:nsfw]", "--job-id", failed_id, "--wait",
               "--no-download", env=dep.stack.env)
    assert done.returncode == 1
    listed = json.loads(kie("jobs", "--json", env=dep.stack.env).stdout)
    ids = [j["job_id"] for j in listed]
    assert ids.index(failed_id) < ids.index(job_id)           # newest first
    assert all(set(j) >= {"job_id", "state", "created_at", "timeline"} for j in listed)
    failed = json.loads(kie("jobs", "--state", "failed", "--since", "1h", env=dep.stack.env).stdout)
    assert failed_id in [j["job_id"] for j in failed] and {j["state"] for j in failed} == {"failed"}
    one = json.loads(kie("jobs", "--limit", "1", env=dep.stack.env).stdout)
    assert [j["job_id"] for j in one] == [failed_id]


@pytest.mark.parametrize("args, words", [
    (["--since", "yesterday"], ["--since", "'yesterday'"]),
    (["--since", "-1h"], ["--since"]),
    (["--limit", "0"], ["--limit"]),
    (["--state", "done"], ["--state", "'done'", "succeeded"]),
])
def test_jobs_refuses_bad_options(dep, args, words):
    done = kie("jobs", *args, env=dep.stack.env)
    assert done.returncode == 2
    line = one_line_error(done)
    assert all(w in line for w in words), line


def test_limiter_shows_the_window_the_cap_and_no_pause(dep):
    done = kie("limiter", "--json", env=dep.stack.env)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert (shown["limit"], shown["window_seconds"], shown["cap"]) == (20, 10.0, 100)
    assert shown["pause"] is None and shown["cooldown"] is None
    assert isinstance(shown["creates_in_window"], int) and isinstance(shown["waiting"], int)


def test_credits_reads_the_account_balance(dep):
    dep.sim("/_sim/accounts", "POST", json={"api_key": API_KEY, "credits": 1234.5})
    done = kie("credits", env=dep.stack.env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"credits": 1234.5}


def test_credits_with_a_wrong_key_is_a_failure(dep):
    done = kie("credits", env={**dep.stack.env, "KIE_API_KEY": "sk-wrong-0000"})
    assert done.returncode == 1
    assert "401" in one_line_error(done)


def test_retry_reruns_a_failed_job_and_its_post_processing_once(dep):
    job_id, tag = _job_id("retry"), unique("retry-tag")
    prompt = f"a cracked mug {job_id} [sim:fail=422:flaky*1]"
    res = (dep.generate(prompt, job_id=job_id) | dep.download() | dep.user_task(tag)).apply_async()
    dep.wait_job_state(job_id, "failed")
    with pytest.raises(Exception):
        res.get(timeout=30)
    done = kie("retry", job_id, "--json", env=dep.stack.env)
    assert done.returncode == 0, done.stderr
    [outcome] = json.loads(done.stdout)
    assert outcome["job_id"] == job_id and outcome["outcome"] == "retried" and outcome["generation"] == 2
    [run] = outcome["runs"]
    assert len(run["chain_task_ids"]) == 2
    dep.wait_recorded(tag, 1)
    dep.wait_job_state(job_id, "succeeded")
    assert len(dep.recorded(tag)) == 1
    assert res.state == "FAILURE"                        # the original AsyncResult stays failed
    again = kie("retry", job_id, env=dep.stack.env)
    assert again.returncode == 1 and "not_retryable: succeeded" in again.stderr


def test_retry_by_state_and_its_usage_errors(dep):
    failed_id = _job_id("bystate")
    done = kie("submit", f"a torn map {failed_id} [sim:fail=422:nope*1]", "--job-id", failed_id, "--wait",
               "--no-download", env=dep.stack.env)
    assert done.returncode == 1
    rerun = kie("retry", "--state", "failed", "--since", "1h", env=dep.stack.env)
    assert rerun.returncode in (0, 1), rerun.stderr
    assert failed_id in [o["job_id"] for o in json.loads(rerun.stdout) if o["outcome"] == "retried"]
    dep.wait_job_state(failed_id, "succeeded")
    for args in (["x", "--state", "failed"], [], ["--since", "1h", "x"], ["--state", "succeeded"]):
        bad = kie("retry", *args, env=dep.stack.env)
        assert bad.returncode == 2, (args, bad.stderr)
        one_line_error(bad)


def test_retry_help_says_the_old_results_stay_failed():
    from cli_support import clean_env
    done = kie("retry", "--help", env=clean_env())
    assert done.returncode == 0
    assert "stay FAILURE" in done.stdout and "new Celery task ids" in done.stdout


def test_cancel_fails_the_chain_once_and_says_credits_may_be_spent(dep):
    job_id, tag = _job_id("cancel"), unique("cancel-tag")
    res = (dep.generate(f"a slow painting {job_id} [sim:duration=60]", job_id=job_id) | dep.user_task(tag)) \
        .apply_async(link_error=dep.user_errback(tag))
    dep.wait_job_state(job_id, "submitted")
    done = kie("cancel", job_id, "--json", env=dep.stack.env)
    assert done.returncode == 0, done.stderr
    [outcome] = json.loads(done.stdout)
    assert outcome["outcome"] == "cancelled" and outcome["submitted"] is True
    errbacks = dep.wait_recorded(tag, 1)
    with pytest.raises(Exception) as info:
        res.get(timeout=30)
    assert type(info.value).__name__ == "GenerationCancelled"
    assert len(dep.recorded(tag)) == len(errbacks) == 1
    assert dep.job(job_id)["state"] == "cancelled"
    again = kie("cancel", job_id, "no-such-job", env=dep.stack.env)
    assert again.returncode == 1
    assert "not_cancellable: cancelled" in again.stderr and "no-such-job: not_found" in again.stderr
    help_text = kie("cancel", "--help", env=dep.stack.env).stdout
    assert "no cancel call" in help_text and "credits may be" in help_text.replace("\n", " ").replace("  ", " ")


def test_limiter_shows_a_pause_and_resume_lifts_it(dep):
    from worker.settings import Settings
    from worker.store.limiter import Limiter

    Limiter.for_settings(dep.redis, Settings.from_env(dep.stack.env)).pause(120)
    paused = json.loads(kie("limiter", env=dep.stack.env).stdout)["pause"]
    assert "402" in paused["reason"] and 100 < paused["seconds_left"] <= 120
    done = kie("resume", "--json", env=dep.stack.env)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["resumed"] is True and isinstance(shown["woken"], int)
    assert json.loads(kie("limiter", env=dep.stack.env).stdout)["pause"] is None


def test_bad_configuration_is_a_one_line_error(dep):
    env = {**dep.stack.env, "KIE_RATE_LIMIT": "twenty per ten"}
    done = kie("status", "x", env=env)
    assert done.returncode == 2
    line = one_line_error(done)
    assert "KIE_RATE_LIMIT" in line and "'twenty per ten'" in line


def test_on_a_terminal_status_and_jobs_are_tables(dep, finished):
    from cli_support import kie_tty

    job_id, _ = finished
    code, out = kie_tty("status", job_id, env=dep.stack.env)
    assert code == 0, out
    assert f"job {job_id}" in out and "timeline" in out and "callback_received" in out and "\x1b[" in out
    assert '"timeline"' not in out
    code, out = kie_tty("jobs", "--limit", "3", env=dep.stack.env)
    assert code == 0 and "job_id" in out and "created_at" in out and "[" not in out.replace("\x1b[", "")
    code, out = kie_tty("limiter", "--json", env=dep.stack.env)
    assert code == 0 and json.loads(out)["limit"] == 20                # --json on a terminal: plain JSON
    code, out = kie_tty("limiter", env=dep.stack.env)
    assert code == 0 and "creates in window" in out and "per 10 s" in out and "{" not in out
    assert "tenants" in out and "default" in out                      # the finished jobs' tenant
