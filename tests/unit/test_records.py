"""Tests of worker.store.records: which upstream tasks a job accepts, and the typed JobView."""

from __future__ import annotations

import json

from worker.store.records import ADOPTABLE, FOREIGN, KNOWN, JobView, iso_ms, task_relation
from worker.tokens import job_token

SECRET = "records-test-" + "secret-1234"


def test_iso_ms_is_utc_with_milliseconds():
    assert iso_ms(1796228361139) == "2026-12-02T16:19:21.139Z"
    assert iso_ms("1796228361005") == "2026-12-02T16:19:21.005Z"
    assert iso_ms(None) is None and iso_ms("") is None and iso_ms("0") is None


def test_tasks_of_earlier_generations_are_foreign():
    job = {"state": "submitted", "task_ids": "old1 old2 new", "retired_task_ids": "old1 old2", "task_id": "new"}
    assert task_relation(job, "new") == KNOWN
    assert task_relation(job, "old1") == FOREIGN and task_relation(job, "other") == FOREIGN
    rerun = {"state": "accepted", "task_ids": "old1", "retired_task_ids": "old1"}
    assert task_relation(rerun, "old1") == FOREIGN        # a late callback of the failed generation
    assert task_relation(rerun, "fresh") == ADOPTABLE


def record(**fields):
    base = {"job_id": "job/1", "state": "failed", "model": "google/nano-banana", "input": json.dumps({"prompt": "p"}),
            "timeout": "900.0", "created_at": "1796228361139", "updated_at": "1796228362000",
            "submitted_at": "1796228361500", "finished_at": "1796228362000", "deadline": "1796229261500",
            "attempts": "3", "errors": "1", "duplicates": "0", "callbacks": "2", "generation": "2",
            "task_id": "t2", "task_ids": "t1 t2", "retired_task_ids": "t1",
            "outcome": json.dumps({"error": "GenerationFailed", "fail_code": "422", "fail_msg": "policy",
                                   "task_id": "t2"}),
            "last_error": "[422] policy",
            "history": json.dumps([{"generation": 1, "state": "failed", "task_id": "t1", "error": "",
                                    "ended_at": 1796228361400, "outcome": {"fail_code": "500",
                                                                           "fail_msg": "internal error"}}])}
    base.update(fields)
    return base


def test_job_view_types_every_field():
    view = JobView.from_record(record(), timeline=[{"t": 1796228361139, "event": "accepted", "detail": ""}],
                               callers=2, callback_base="https://hooks.example/")
    out = view.to_json()
    assert (out["attempts"], out["errors"], out["callbacks"], out["generation"], out["callers"]) == (3, 1, 2, 2, 2)
    assert out["retryable"] is True and out["timeout_seconds"] == 900.0 and out["regenerations"] == 0
    assert out["created_at"] == "2026-12-02T16:19:21.139Z" and out["deadline"].endswith("Z")
    assert out["task_ids"] == ["t1", "t2"] and out["task_id"] == "t2"
    assert out["error"] == {"type": "GenerationFailed", "code": "422", "message": "policy"}
    assert out["credits_consumed"] == 0.0 and out["result_urls"] == []
    assert out["generations"] == [{"generation": 1, "state": "failed", "task_id": "t1",
                                   "ended_at": "2026-12-02T16:19:21.400Z",
                                   "error": {"code": "500", "message": "internal error"}}]
    assert out["timeline"] == [{"time": "2026-12-02T16:19:21.139Z", "event": "accepted", "detail": ""}]
    assert out["callback_url"] == "https://hooks.example/kie/callback/job%2F1?token=***"
    assert job_token("job/1", SECRET) not in json.dumps(out)
    assert json.loads(json.dumps(out)) == out                     # plain JSON


def test_job_view_of_a_success_has_credits_urls_and_files():
    outcome = {"job_id": "job/1", "task_id": "t1", "state": "success", "result_urls": ["https://x/1.png"],
               "credits": 4.0, "remained_credits": 96.0}
    files = [{"url": "https://x/1.png", "path": "/data/job/1.png", "sha256": "ab" * 32, "bytes": 1234,
              "content_type": "image/png"}]
    view = JobView.from_record(record(state="succeeded", outcome=json.dumps(outcome), files=json.dumps(files),
                                      generation="1", history="", retired_task_ids="", task_ids="t1",
                                      task_id="t1"))
    assert view.error is None and view.retryable is False and view.generations == []
    assert (view.credits_consumed, view.remained_credits, view.result_urls) == (4.0, 96.0, ["https://x/1.png"])
    assert view.files == files and view.callback_url is None


def test_job_view_of_a_bare_record():
    view = JobView.from_record({"job_id": "j", "state": "rejected", "last_error": "invalid input: prompt: missing"})
    assert view.generation == 1 and view.attempts == 0 and view.task_ids == [] and view.timeline == []
    assert view.error == {"type": None, "code": None, "message": "invalid input: prompt: missing"}
