"""The ``kie-queue`` command line: demo end to end, submit --wait, status, and clear errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import REDIS_URL, ROOT, unique

KIE = str(Path(sys.executable).with_name("kie-queue"))


def _env(extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIE_", "CELERY_"))}
    env.update({"PYTHONPATH": str(ROOT), **(extra or {})})
    return env


def test_demo_runs_a_batch_end_to_end(tmp_path):
    out = tmp_path / "images"
    done = subprocess.run([KIE, "demo", "--jobs", "6", "--concurrency", "2", "--workdir", str(tmp_path / "demo")],
                          env=_env({"REDIS_URL": REDIS_URL, "KIE_STORAGE_DIR": str(out)}), capture_output=True,
                          text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "all 6 jobs succeeded" in done.stdout
    assert len(list(out.rglob("*.png"))) == 6
    for line in done.stdout.splitlines():
        if line.startswith("demo-"):
            assert "succeeded" in line


def test_demo_stores_results_in_s3(tmp_path, moto_server):
    from s3support import aws_env
    bucket = moto_server.new_bucket()
    done = subprocess.run([KIE, "demo", "--jobs", "3", "--concurrency", "2", "--workdir", str(tmp_path / "demo"),
                           "--storage", f"s3://{bucket}/demo"],
                          env=_env({"REDIS_URL": REDIS_URL, **aws_env(moto_server.endpoint)}), capture_output=True,
                          text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "all 3 jobs succeeded" in done.stdout and f"images in s3://{bucket}/demo" in done.stdout
    keys = [o["Key"] for o in moto_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert len(keys) == 3 and all(k.startswith("demo/demo-") and k.endswith("/0.png") for k in keys)
    assert sum(f"s3://{bucket}/{k}" in done.stdout for k in keys) == 3      # the table shows where each went


def test_demo_with_a_missing_bucket_says_so_before_starting_anything(tmp_path, moto_server):
    from s3support import aws_env
    done = subprocess.run([KIE, "demo", "--jobs", "1", "--workdir", str(tmp_path / "demo"),
                           "--storage", "s3://kie-no-such-demo-bucket"],
                          env=_env({"REDIS_URL": REDIS_URL, **aws_env(moto_server.endpoint)}), capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    assert "--storage" in done.stderr and "'kie-no-such-demo-bucket' does not exist" in done.stderr
    assert "starting services" not in done.stdout


def test_demo_exits_non_zero_when_jobs_fail(tmp_path):
    done = subprocess.run([KIE, "demo", "--jobs", "3", "--concurrency", "1", "--fail-rate", "1",
                           "--workdir", str(tmp_path / "demo")],
                          env=_env({"REDIS_URL": REDIS_URL, "KIE_STORAGE_DIR": str(tmp_path / "o")}),
                          capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 1
    assert "3 of 3 jobs did not succeed" in done.stderr


DEPLOYMENT = dict(callbacks=False, hmac=False, start=dict(concurrency=2, user_worker=False))


def test_submit_wait_prints_the_result_and_status_shows_the_record(dep):
    job_id = unique("cli").replace(" ", "-")
    done = subprocess.run([KIE, "submit", "a kettle on a stove", "--image-size", "4:3", "--job-id", job_id, "--wait"],
                          env=dep.stack.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout[done.stdout.index("{"):])
    assert result["job_id"] == job_id and result["files"][0]["bytes"] > 0
    status = subprocess.run([KIE, "status", job_id], env=dep.stack.env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0
    assert json.loads(status.stdout)["state"] == "succeeded"
    by_task = subprocess.run([KIE, "status", result["task_id"]], env=dep.stack.env, capture_output=True, text=True,
                             timeout=60)
    assert by_task.returncode == 0 and json.loads(by_task.stdout)["job_id"] == job_id


def test_submit_refuses_bad_input_before_enqueueing(dep):
    done = subprocess.run([KIE, "submit", "x", "--image-size", "7:5"], env=dep.stack.env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert "image_size" in done.stderr and "enqueued" not in done.stdout


def test_bad_configuration_is_a_one_line_error(dep):
    env = {**dep.stack.env, "KIE_RATE_LIMIT": "twenty per ten"}
    done = subprocess.run([KIE, "status", "x"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "KIE_RATE_LIMIT" in done.stderr and "'twenty per ten'" in done.stderr
    assert "Traceback" not in done.stderr
