"""``kie-queue submit`` against a running deployment: one prompt, files of rows, --wait, --out, and the
checks that refuse bad values and bad rows before anything is enqueued."""

import json
import re
import time

import pytest

from cli_support import clean_env, idle_env, kie, one_line_error, queued_messages
from harness import unique


DEPLOYMENT = dict(callbacks=False, hmac=False, start=dict(concurrency=2, user_worker=False))


def _job_id(text="cli"):
    return unique(text).replace(" ", "-")


def test_submit_wait_prints_only_the_result_json_when_piped(dep):
    job_id = _job_id()
    done = kie("submit", "a kettle on a stove", "--image-size", "4:3", "--job-id", job_id, "--wait", env=dep.stack.env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout[done.stdout.index("{"):])
    assert result["job_id"] == job_id and result["files"][0]["bytes"] > 0
    assert json.loads(done.stdout) == result          # nothing but the JSON on stdout
    assert "\x1b[" not in done.stdout
    assert dep.job(job_id)["state"] == "succeeded"


def test_submit_wait_out_copies_the_file_named_after_the_job(dep, tmp_path):
    job_id = _job_id("out")
    done = kie("submit", "a copper kettle", "--job-id", job_id, "--wait", "--out", tmp_path / "here", "--json",
               env=dep.stack.env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["copied"] == [str(tmp_path / "here" / f"{job_id}.png")]
    assert (tmp_path / "here" / f"{job_id}.png").read_bytes() == open(result["files"][0]["path"], "rb").read()


def test_submit_without_wait_reports_the_ids_it_enqueued(dep):
    env, queue = idle_env(dep)
    job_id = _job_id()
    done = kie("submit", "a quiet harbour", "--job-id", job_id, "--output-format", "jpeg", "--timeout", "60",
               "--no-download", env=env)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["job_id"] == job_id and shown["celery_task_id"]
    [msg] = queued_messages(dep, queue)
    assert msg["task"] == "kie.generate"
    assert msg["kwargs"] == {"input": {"prompt": "a quiet harbour", "output_format": "jpeg"},
                             "model": "google/nano-banana", "job_id": job_id, "timeout": 60.0}


@pytest.mark.parametrize("args, field", [
    (["--image-size", "7:5"], "image_size"),
    (["--timeout", "-5"], "timeout"),
    (["--job-id", "orders/1234"], "job_id"),
    (["--output-format", "gif"], "output_format"),
    (["--model", "acme/unknown"], "model"),
])
def test_a_value_the_worker_would_refuse_is_exit_2_naming_the_field_and_enqueues_nothing(dep, args, field):
    env, queue = idle_env(dep)
    done = kie("submit", "x", *args, env=env)
    assert done.returncode == 2, done.stderr
    line = one_line_error(done)
    assert field in line and "enqueued" not in done.stdout and done.stdout == ""
    assert queued_messages(dep, queue) == []


def test_unknown_model_error_names_the_option_and_the_option_sends_it_unchecked(dep):
    env, queue = idle_env(dep)
    refused = kie("submit", "x", "--model", "acme/painter-2", env=env)
    assert refused.returncode == 2 and "--allow-unknown-model" in one_line_error(refused)
    done = kie("submit", "x", "--model", "acme/painter-2", "--allow-unknown-model", env=env)
    assert done.returncode == 0, done.stderr
    [msg] = queued_messages(dep, queue)
    assert msg["kwargs"]["allow_unknown_model"] is True and msg["kwargs"]["model"] == "acme/painter-2"


@pytest.mark.parametrize("args, words", [
    ([], ["PROMPT", "--file"]),
    (["x", "--out", "d"], ["--out", "--wait"]),
    (["x", "--wait", "--out", "d", "--no-download"], ["--out", "--no-download"]),
    (["x", "--timeout", "soon"], ["--timeout", "soon"]),
    (["x", "--bogus"], ["--bogus"]),
    (["x", "--wait-timeout", "0"], ["--wait-timeout"]),
])
def test_usage_errors_are_one_line_and_exit_2(dep, args, words):
    env, queue = idle_env(dep)
    done = kie("submit", *args, env=env)
    assert done.returncode == 2
    line = one_line_error(done)
    assert all(w in line for w in words), line
    assert queued_messages(dep, queue) == []


def test_a_file_of_jsonl_rows_runs_as_a_batch_and_out_gets_the_files(dep, tmp_path):
    tag = _job_id("batch")
    rows = [{"prompt": f"a paper boat {tag} #{i}", "image_size": "1:1", "job_id": f"{tag}-{i}"} for i in range(3)]
    rows.append({"prompt": f"no id {tag}"})
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n\n" + "\n".join(json.dumps(r) for r in rows[2:]))
    out = tmp_path / "out"
    done = kie("submit", "--file", path, "--wait", "--out", out, "--output-format", "jpeg", env=dep.stack.env,
               timeout=180)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["succeeded"], report["failed"], report["waiting"]) == (4, 0, 0)
    assert [j["line"] for j in report["jobs"]] == [1, 2, 4, 5]
    assert [j["job_id"] for j in report["jobs"][:3]] == [f"{tag}-{i}" for i in range(3)]
    assert all(j["state"] == "succeeded" for j in report["jobs"])
    copied = sorted(p.name for p in out.iterdir())
    assert copied == sorted(f"{j['job_id']}.jpg" for j in report["jobs"]) or \
        copied == sorted(f"{j['job_id']}.jpeg" for j in report["jobs"])
    assert all((out / n).stat().st_size > 0 for n in copied)
    job = dep.job(f"{tag}-0")
    assert json.loads(job["input"])["output_format"] == "jpeg"     # the option fills rows that leave it out


def test_a_csv_batch_with_a_failure_reports_each_outcome_and_exits_1(dep, tmp_path):
    tag = _job_id("csv")
    path = tmp_path / "rows.csv"
    path.write_text("prompt,image_size,job_id\n"
                    f"a green kite {tag},16:9,{tag}-ok\n"
                    f"\"a broken kite, {tag} [sim:fail=422:nsfw]\",,{tag}-bad\n")
    done = kie("submit", "--file", path, "--wait", "--no-download", env=dep.stack.env, timeout=180)
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert (report["succeeded"], report["failed"]) == (1, 1)
    by_id = {j["job_id"]: j for j in report["jobs"]}
    assert by_id[f"{tag}-ok"]["line"] == 2 and by_id[f"{tag}-ok"]["result"]["state"] == "success"
    assert by_id[f"{tag}-bad"]["error"]["type"] == "GenerationFailed"
    assert "nsfw" in by_id[f"{tag}-bad"]["error"]["message"]
    assert "1 of 2 jobs failed" in done.stderr


@pytest.mark.parametrize("name, text, expected", [
    ("rows.csv", "prompt,image_size\nfine,1:1\nfine too,1:1\nbad,7:5\n", ["rows.csv line 4:", "image_size"]),
    ("rows.csv", "prompt,job_id\na,same\nb,same\n", ["line 3:", "job_id", "line 2"]),
    ("rows.csv", "text,image_size\nx,1:1\n", ["line 1:", "'prompt' column"]),
    ("rows.csv", "prompt\n\"a multi\nline prompt\"\nb\n,\n", ["line 5:", "more cells"]),
    ("rows.jsonl", '{"prompt": "a"}\n{"prompt": "b", "image_size": "1:1"\n', ["rows.jsonl line 2:", "not JSON"]),
    ("rows.jsonl", '{"prompt": "a"}\n\n["prompt"]\n', ["line 3:", "JSON object"]),
    ("rows.jsonl", '{"prompt": "a", "job_id": "x/y"}\n', ["line 1:", "job_id"]),
    ("rows.jsonl", '{"prompt": "a", "seed": 3}\n', ["line 1:", "seed"]),
    ("rows.jsonl", "\n\n", ["no rows"]),
])
def test_a_bad_row_is_reported_with_its_line_and_nothing_of_the_file_is_enqueued(dep, tmp_path, name, text,
                                                                                  expected):
    env, queue = idle_env(dep)
    path = tmp_path / name
    path.write_text(text)
    done = kie("submit", "--file", path, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert all(e in done.stderr for e in expected), done.stderr
    assert "nothing was enqueued" in done.stderr.splitlines()[-1]
    assert queued_messages(dep, queue) == []


def test_every_bad_row_is_listed(dep, tmp_path):
    env, queue = idle_env(dep)
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": "p", "image_size": s}) for s in ["1:1", "x", "1:1", "y"]))
    done = kie("submit", "--file", path, env=env)
    assert done.returncode == 2
    assert re.findall(r"line (\d+):", done.stderr) == ["2", "4"]
    assert "2 bad row(s)" in done.stderr
    assert queued_messages(dep, queue) == []


def test_wait_with_no_worker_on_the_queue_says_so_and_gives_up(dep):
    env, queue = idle_env(dep)
    started = time.monotonic()
    done = kie("submit", "nobody listens", "--wait", "--wait-timeout", "8", env=env, timeout=60)
    assert done.returncode == 1
    assert f"no worker is consuming queue '{queue}'" in done.stderr
    assert "gave up waiting after 8 s" in done.stderr and "queued" in done.stderr
    assert time.monotonic() - started < 40
    assert done.stdout == ""


def test_wait_has_a_default_timeout_from_the_job_timeout(dep):
    env, queue = idle_env(dep)
    env["KIE_JOB_TIMEOUT"] = "1"
    started = time.monotonic()
    done = kie("submit", "nobody listens either", "--wait", env=env, timeout=120)
    took = time.monotonic() - started
    assert done.returncode == 1
    # 1 s job timeout + one create at 20/10s (0.5 s) + 30 s margin
    assert "gave up waiting after 32 s" in done.stderr, done.stderr
    assert 31 <= took < 90
    assert len(queued_messages(dep, queue)) == 1


def test_bad_configuration_is_a_one_line_error(dep):
    env = {**dep.stack.env, "KIE_RATE_LIMIT": "twenty per ten"}
    done = kie("submit", "x", env=env)
    assert done.returncode == 2
    line = one_line_error(done)
    assert "KIE_RATE_LIMIT" in line and "'twenty per ten'" in line


def test_redis_down_is_a_one_line_failure():
    env = clean_env({"REDIS_URL": "redis://127.0.0.1:1/0", "KIE_API_KEY": "k"})
    done = kie("submit", "x", env=env, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "cannot reach Redis or the broker" in one_line_error(done)


def test_on_a_terminal_a_batch_shows_a_progress_bar_and_a_table(dep, tmp_path):
    from cli_support import kie_tty

    tag = _job_id("tty")
    path = tmp_path / "rows.csv"
    path.write_text("prompt,job_id\n" + "".join(f"a tin robot {tag} #{i},{tag}-{i}\n" for i in range(2)))
    code, out = kie_tty("submit", "--file", path, "--wait", "--no-download", env=dep.stack.env)
    assert code == 0, out
    assert "━" in out and "2/2" in out and "2 succeeded" in out       # the bar, its count and its summary
    assert "\x1b[" in out                                             # colours
    assert f"{tag}-0" in out and f"{tag}-1" in out and "file / error" in out
    assert '"jobs"' not in out                                        # a table, not JSON
