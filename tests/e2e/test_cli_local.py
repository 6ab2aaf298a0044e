"""``kie-queue demo`` end to end (its own key prefix, its keys deleted afterwards; its dashboard, kept up with
``--keep``), ``kie-queue sim`` with the simulator's own options, and ``kie-queue dashboard``."""

import re
import signal
import subprocess

import redis
import requests

from cli_support import KIE, clean_env, kie
from harness import REDIS_URL
from worker.cli.stack import free_port, wait_for


def _demo_leftovers(stdout: str) -> tuple[str, list[str], list]:
    prefix = re.search(r"key prefix (kie-demo-[0-9a-f]+)", stdout).group(1)
    job_ids = re.findall(r"^(demo-[0-9a-f]+-\d{3})\s", stdout, re.M)
    r = redis.Redis.from_url(REDIS_URL)
    left = list(r.scan_iter(f"{prefix}*")) + list(r.scan_iter(f"_kombu.binding.{prefix}*"))
    for key in r.scan_iter("celery-task-meta-*"):
        value = r.get(key) or b""
        if any(j.encode() in value for j in job_ids):
            left.append(key)
    return prefix, job_ids, left


def test_demo_runs_a_batch_end_to_end_and_deletes_its_keys(tmp_path):
    out = tmp_path / "images"
    done = kie("demo", "--jobs", "6", "--concurrency", "2", "--workdir", tmp_path / "demo", "--redis-url", REDIS_URL,
               env=clean_env({"KIE_STORAGE_DIR": str(out)}), timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "all 6 jobs succeeded" in done.stdout
    assert len(list(out.rglob("*.png"))) == 6
    rows = [line for line in done.stdout.splitlines() if line.startswith("demo-")]
    assert len(rows) == 6 and all("succeeded" in line for line in rows)
    prefix, job_ids, left = _demo_leftovers(done.stdout)
    assert len(job_ids) == 6 and left == []
    assert f"removed the demo's" in done.stdout and prefix in done.stdout


def test_demo_stores_results_in_s3(tmp_path, moto_server):
    from s3support import aws_env
    bucket = moto_server.new_bucket()
    done = kie("demo", "--jobs", "3", "--concurrency", "2", "--workdir", tmp_path / "demo",
               "--storage", f"s3://{bucket}/demo", env=clean_env({"REDIS_URL": REDIS_URL,
                                                                 **aws_env(moto_server.endpoint)}),
               timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "all 3 jobs succeeded" in done.stdout and f"images in s3://{bucket}/demo" in done.stdout
    keys = [o["Key"] for o in moto_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert len(keys) == 3 and all(k.startswith("demo/demo-") and k.endswith("/0.png") for k in keys)
    assert sum(f"s3://{bucket}/{k}" in done.stdout for k in keys) == 3      # the table shows where each went


def test_demo_with_a_missing_bucket_says_so_before_starting_anything(tmp_path, moto_server):
    from s3support import aws_env
    done = kie("demo", "--jobs", "1", "--workdir", tmp_path / "demo", "--storage", "s3://kie-no-such-demo-bucket",
               env=clean_env({"REDIS_URL": REDIS_URL, **aws_env(moto_server.endpoint)}), timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    assert "--storage" in done.stderr and "'kie-no-such-demo-bucket' does not exist" in done.stderr
    assert "starting services" not in done.stdout


def test_demo_exits_non_zero_when_jobs_fail(tmp_path):
    done = kie("demo", "--jobs", "3", "--concurrency", "1", "--fail-rate", "1", "--workdir", tmp_path / "demo",
               env=clean_env({"REDIS_URL": REDIS_URL, "KIE_STORAGE_DIR": str(tmp_path / "o")}), timeout=240,
               cwd=tmp_path)
    assert done.returncode == 1
    assert "3 of 3 jobs did not succeed" in done.stderr
    assert _demo_leftovers(done.stdout)[2] == []


def test_demo_refuses_bad_options():
    done = kie("demo", "--jobs", "0", env=clean_env())
    assert done.returncode == 2 and "--jobs" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_sim_help_is_the_simulators_own():
    done = kie("sim", "--help", env=clean_env())
    assert done.returncode == 0
    for option in ("--port", "--host", "--api-key", "--fail-rate", "--duration", "--small-images"):
        assert option in done.stdout, option
    assert "kiesim-key" in re.sub(r"-\n\s+", "-", done.stdout)      # the default key a local setup uses


def test_sim_takes_its_options(tmp_path):
    port = free_port()
    proc = subprocess.Popen([KIE, "sim", "--port", str(port), "--api-key", "local-key", "--quiet", "--duration", "0.2"],
                            env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/_sim/stats"), 20, "kie-queue sim", proc=proc)
        config = requests.get(f"http://127.0.0.1:{port}/_sim/config", timeout=5).json()
        assert config["duration"] == 0.2
        ok = requests.get(f"http://127.0.0.1:{port}/api/v1/chat/credit",
                          headers={"Authorization": "Bearer local-key"}, timeout=5).json()
        assert ok["code"] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert f"kiesim listening on http://127.0.0.1:{port}" in proc.stdout.read()


def test_sim_refuses_an_unknown_option():
    done = kie("sim", "--bogus", env=clean_env())
    assert done.returncode == 2 and "--bogus" in done.stderr


def _answers(url):
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def test_group_help_lists_every_command():
    done = kie("--help", env=clean_env())
    assert done.returncode == 0
    for name in ("submit", "status", "jobs", "retry", "cancel", "limiter", "credits", "resume", "sim", "dashboard",
                 "demo"):
        assert re.search(rf"^\s+{name}\s", done.stdout, re.M), name
    version = kie("--version", env=clean_env())
    assert version.returncode == 0 and re.search(r"\d+\.\d+\.\d+", version.stdout)
    unknown = kie("frobnicate", env=clean_env())
    assert unknown.returncode == 2 and "frobnicate" in unknown.stderr


def test_demo_keep_serves_its_dashboard_until_stopped_then_cleans_up(tmp_path):
    proc = subprocess.Popen([KIE, "demo", "--jobs", "3", "--concurrency", "2", "--workdir", str(tmp_path / "demo"),
                             "--redis-url", REDIS_URL, "--keep"],
                            env=clean_env({"KIE_STORAGE_DIR": str(tmp_path / "images")}), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if "services stay up" in line:
                break
        text = "".join(seen)
        assert "all 3 jobs succeeded" in text, text[-2000:]
        url = re.search(r"dashboard\s+(http://127\.0\.0\.1:\d+)", text).group(1)
        page = requests.get(url + "/", timeout=10)
        job_ids = re.findall(r"^(demo-[0-9a-f]+-\d{3})\s", text, re.M)
        assert page.status_code == 200 and len(job_ids) == 3 and all(j in page.text for j in job_ids)
    finally:
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0
    assert "removed the demo's" in rest
    _, _, left = _demo_leftovers(text + rest)
    assert left == []


def test_dashboard_serves_on_loopback_and_refuses_a_public_bind_without_a_token(tmp_path):
    port = free_port()
    env = clean_env({"REDIS_URL": REDIS_URL, "KIE_KEY_PREFIX": "t-dash-cli"})
    proc = subprocess.Popen([KIE, "dashboard", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/"), 30, "kie-queue dashboard", proc=proc)
        assert "Jobs" in requests.get(f"http://127.0.0.1:{port}/", timeout=5).text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    refused = kie("dashboard", "--bind", "0.0.0.0", "--port", str(free_port()), env=env)
    assert refused.returncode == 2 and "KIE_DASHBOARD_TOKEN" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
