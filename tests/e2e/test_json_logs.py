"""JSON logs of a real worker: every line it writes is one JSON object, and a job's lines carry its job id
(plus the Celery task id, and the upstream taskId once known)."""

from __future__ import annotations

import json

from harness import unique

DEPLOYMENT = {"callbacks": True, "hmac": True, "extra_env": {"KIE_LOG_FORMAT": "json"},
              "start": {"concurrency": 2, "user_worker": False}}


def lines_of(dep, name: str) -> list[dict]:
    text = dep.stack.log_of(name)
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"{name}.log line {number} is not JSON: {line[:200]!r}") from None
        assert isinstance(record, dict), line
        records.append(record)
    return records


def test_every_worker_line_is_json_and_a_jobs_lines_carry_its_ids(dep):
    ok_id, bad_id = unique("json-ok").replace(" ", "-"), unique("json-bad").replace(" ", "-")
    result = (dep.generate(unique("json logs"), job_id=ok_id) | dep.download()).apply_async().get(timeout=90)
    bad = dep.generate(unique("json logs [sim:fail=501:content policy]"), job_id=bad_id).apply_async()
    try:
        bad.get(timeout=90)
    except Exception:  # noqa: BLE001 - GenerationFailed, as expected
        pass

    records = lines_of(dep, "w1")
    assert len(records) > 10
    for r in records:
        assert {"time", "level", "logger", "event", "message"} <= set(r), r
        assert r["level"] in ("debug", "info", "warning", "error", "critical"), r
    mine = [r for r in records if r.get("job_id") == ok_id]
    tasks = {r.get("celery_task") for r in mine}
    assert {"kie.generate", "kie.complete", "kie.download"} <= tasks, tasks
    assert all(r.get("celery_task_id") for r in mine)
    assert any(r.get("upstream_task_id") == result["task_id"] for r in mine), mine
    # Celery's own records of a task ("Task kie.download[...] succeeded") carry the job too
    assert any(r["logger"].startswith("celery") and r.get("celery_task") == "kie.download" for r in mine)
    failed = [r for r in records if r.get("job_id") == bad_id]
    assert any("failed" in r["message"] for r in failed), failed
    # the worker's ready line is there, as JSON (the harness waits for it)
    assert any(r["message"].endswith("ready.") for r in records)
    # the webhook's records of this run are JSON too (its lines from the app's processes)
    # the webhook's records are JSON too (the app's processes; gunicorn's master keeps its own text format)
    web = [json.loads(line) for line in dep.stack.log_of("web").splitlines() if line.startswith("{")]
    assert any(r["event"] == "callback_recorded" and r["job_id"] == ok_id
               and r["upstream_task_id"] == result["task_id"] for r in web), web
