"""The README's examples, as written, against a running system: the two Python examples, the shell block
of "From a shell", and the recipe of "Run the processes yourself" with ``deploy/local.env.example``.

Only configuration differs from a user's machine: ports (the test picks free ones), the Redis the
processes use (a private ``redis-server``, or the test database with its own key prefix and queue).
The commands and the code are run verbatim.
"""

import json
import os
import re
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import requests

from harness import REDIS_URL, ROOT, Deployment
from worker.cli.stack import free_port, wait_for

BIN = str(Path(sys.executable).parent)

MYAPP = '''
import json, os
from celery import Celery

app = Celery("myapp", broker=os.environ["CELERY_BROKER_URL"], backend=os.environ["CELERY_RESULT_BACKEND"])
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])


@app.task
def make_thumbnail(result):
    record = {"thumbnail_of": result["files"][0]["path"], "job_id": result["job_id"]}
    with open(os.environ["MYAPP_RECORD"], "a") as f:
        f.write(json.dumps(record) + "\\n")
    return record
'''


def readme_blocks(heading: str, lang: str) -> list[str]:
    """The ``lang`` code blocks of the README section that starts with ``heading`` (up to the next heading
    of the same or a higher level)."""
    text = (ROOT / "README.md").read_text()
    level = heading.split(" ", 1)[0]
    start = text.index(f"\n{heading}\n")
    rest = text[start + len(heading) + 2:]
    end = re.search(rf"^#{{1,{len(level)}}} ", rest, re.M)
    section = rest[:end.start()] if end else rest
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)


def _run(argv, env, cwd, timeout=240):
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    from secretscan import in_text
    assert in_text(done.stdout + done.stderr) == []
    return done


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    """A deployment on a private Redis with the default queue ``celery``, plus "myapp"'s own worker on
    queue ``thumbnails``."""
    work = tmp_path_factory.mktemp("readme")
    d = Deployment(work)
    url = d.stack.ensure_redis(f"redis://127.0.0.1:{free_port()}/0")
    d.stack.env.update({"REDIS_URL": url, "CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url,
                        "KIE_QUEUE": "celery", "PATH": BIN + os.pathsep + os.environ["PATH"]})
    d.broker_url, d.redis = url, redis.Redis.from_url(url)
    app_dir = work / "app"
    (app_dir / "myapp").mkdir(parents=True)
    (app_dir / "myapp" / "__init__.py").write_text("")
    (app_dir / "myapp" / "tasks.py").write_text(MYAPP)
    d.stack.env["PYTHONPATH"] = f"{app_dir}{os.pathsep}{ROOT}"
    d.stack.env["MYAPP_RECORD"] = str(work / "thumbnails.jsonl")
    try:
        d.start(user_worker=False)
        celery = str(Path(sys.executable).with_name("celery"))
        proc, log = d.stack.spawn("myapp", [celery, "-A", "myapp.tasks", "worker", "-Q", "thumbnails",
                                            "--concurrency", "1", "--loglevel", "INFO", "--without-gossip",
                                            "--without-mingle", "--hostname", f"myapp-{d.name}@%h"])
        wait_for(lambda: "ready." in log.read_text(errors="replace"), 60, "myapp worker", proc=proc, log_path=log)
        yield d, work
    finally:
        d.stack.stop()      # the private Redis goes with it: no keys to clean up


def test_the_first_python_example_runs_its_own_step_on_its_own_worker(system):
    d, work = system
    [code, _] = readme_blocks("## Using it", "python")
    assert '.set(queue="thumbnails")' in code
    done = _run([sys.executable, "-c", code], d.stack.env, work, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    [record] = [json.loads(x) for x in Path(d.stack.env["MYAPP_RECORD"]).read_text().splitlines()]
    assert record["job_id"] == "order-1234" and Path(record["thumbnail_of"]).is_file()
    assert "NotRegistered" not in d.stack.log_of("w1")


def test_the_second_python_example_needs_only_the_broker(system):
    d, work = system
    [_, code] = readme_blocks("## Using it", "python")
    assert "import worker" not in code and "from worker" not in code
    done = _run([sys.executable, "-c", code], d.stack.env, work, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "'path':" in done.stdout and "'sha256':" in done.stdout


def test_the_shell_examples_run_as_written(system):
    d, work = system
    [block] = readme_blocks("### From a shell", "sh")
    cwd = work / "shell"
    cwd.mkdir()
    lines = [ln for ln in block.splitlines() if ln.strip()]
    assert len(lines) >= 8
    outputs = {}
    for line in lines:
        if line.startswith("kie-queue sim "):
            _sim_answers(line, d.stack.env, cwd)
            continue
        done = _run(["bash", "-c", line], d.stack.env, cwd)
        assert done.returncode == 0, (line, done.stderr[-2000:])
        outputs[line.split("#")[0].strip()] = done.stdout
    result = json.loads(next(v for k, v in outputs.items() if k.startswith("kie-queue submit \"a bowl")))
    assert result["job_id"] == "ramen-1" and result["files"]
    status = json.loads(outputs["kie-queue status ramen-1"])
    assert status["state"] == "succeeded" and status["timeline"]
    assert len(list((cwd / "images").iterdir())) == 2
    assert json.loads(outputs["kie-queue credits"])["credits"] > 0


def _sim_answers(line: str, env: dict, cwd: Path) -> None:
    """Start the README's ``kie-queue sim --port 8080`` on a free port instead, see it answer, stop it."""
    port = free_port()
    command = re.sub(r"--port \d+", f"--port {port}", line.split("#")[0])
    proc = subprocess.Popen(["bash", "-c", f"exec {command}"], env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _ok(f"http://127.0.0.1:{port}/_sim/stats"), 20, "kie-queue sim", proc=proc)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def test_run_the_processes_yourself_works_when_pasted(tmp_path):
    [block] = readme_blocks("## Run the processes yourself", "sh")
    assert "deploy/local.env.example" in block
    name = secrets.token_hex(4)
    sim_port, web_port = free_port(), free_port()
    values = {"SIM_PORT": str(sim_port), "KIE_BASE_URL": f"http://127.0.0.1:{sim_port}", "PORT": str(web_port),
              "KIE_CALLBACK_URL": f"http://127.0.0.1:{web_port}", "REDIS_URL": REDIS_URL,
              "KIE_KEY_PREFIX": f"t-local-{name}"}
    env_file = (ROOT / "deploy" / "local.env.example").read_text()
    for key, value in values.items():
        env_file, n = re.subn(rf"^{key}=.*$", f"{key}={value}", env_file, flags=re.M)
        assert n == 1, key
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "local.env.example").write_text(env_file + f"KIE_QUEUE=q-local-{name}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIE_", "CELERY_"))}
    env["PATH"] = BIN + os.pathsep + env["PATH"]
    proc = subprocess.Popen(["bash", "-c", block], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=240)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        r = redis.Redis.from_url(REDIS_URL)
        for key in r.scan_iter(f"t-local-{name}:*"):
            r.delete(key)
    from secretscan import in_text
    assert in_text(out + err) == []
    assert proc.returncode == 0, err[-3000:]
    result, _ = json.JSONDecoder().raw_decode(out[out.index("{"):])     # the worker's shutdown line follows
    assert result["state"] == "success"
    [f] = result["files"]
    assert Path(f["path"]).is_file() and Path(f["path"]).is_relative_to(tmp_path / "kie-output")


def test_without_its_queue_the_users_step_goes_to_our_worker(system):
    """The control for the first example: without ``.set(queue=...)`` the step lands on our worker."""
    d, work = system
    [code, _] = readme_blocks("## Using it", "python")
    broken = code.replace('.set(queue="thumbnails")', "").replace('"order-1234"', '"order-unrouted"') \
                 .replace("res.get()", "res.get(timeout=60)")
    done = _run([sys.executable, "-c", broken], d.stack.env, work, timeout=120)
    assert done.returncode != 0
    assert "NotRegistered: 'myapp.tasks.make_thumbnail'" in done.stderr
