"""``kie-queue demo``: the whole system on embedded defaults, end to end, with a live progress line.

Starts (or reuses) Redis, the simulator, the webhook (gunicorn), a worker and beat as real
processes; sends a batch of ``generate | download`` chains; shows progress; prints a summary table
(job, state, seconds, file) and exits 0 only if every job succeeded.  With ``KIE_API_KEY`` and
``KIE_BASE_URL`` set it talks to that service instead of the simulator (callbacks only if
``KIE_CALLBACK_URL`` is set; otherwise polling).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import sys
import time
from pathlib import Path

from .stack import Stack, free_port

PROMPTS = ["a lighthouse at dawn, watercolour", "a red fox in fresh snow", "a tiny robot watering a fern",
           "a bowl of ramen, studio lighting", "an isometric city block at night"]
SIZES = ["1:1", "16:9", "9:16", "4:3", "3:2"]


def run_demo(*, jobs: int = 20, concurrency: int = 4, workdir: str = ".kie-demo", fail_rate: float = 0.0,
             timeout: float = 180.0, storage: str | None = None) -> int:
    real = bool(os.environ.get("KIE_API_KEY") and os.environ.get("KIE_BASE_URL"))
    workdir = Path(workdir).resolve()
    out = _storage(storage)
    env = {k: v for k, v in os.environ.items() if k != "KIE_STORAGE_DIR"}
    env.setdefault("PYTHONUNBUFFERED", "1")
    with Stack(workdir, env) as stack:
        print("kie-queue demo: starting services ...", flush=True)
        redis_url = stack.ensure_redis(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
        stack.env.update({
            "REDIS_URL": redis_url,
            "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL", redis_url),
            "CELERY_RESULT_BACKEND": os.environ.get("CELERY_RESULT_BACKEND", redis_url),
            "KIE_STORAGE_URL": out.url,
            "KIE_KEY_PREFIX": os.environ.get("KIE_KEY_PREFIX", f"kie-demo-{secrets.token_hex(3)}"),
            "KIE_QUEUE": os.environ.get("KIE_QUEUE", f"kie-demo-{secrets.token_hex(3)}"),
        })
        if not real:
            api_key, hmac_key = "demo-" + secrets.token_hex(8), secrets.token_hex(16)
            web_port = free_port()
            sim_url = stack.start_sim("--api-key", api_key, "--hmac-key", hmac_key, "--duration", "3",
                                      "--duration-jitter", "3", "--fail-rate", str(fail_rate))
            print(f"  simulator   {sim_url}  (stands in for kie.ai)", flush=True)
            stack.env.update({
                "KIE_API_KEY": api_key, "KIE_BASE_URL": sim_url,
                "KIE_CALLBACK_URL": f"http://127.0.0.1:{web_port}",
                "KIE_WEBHOOK_SECRET": secrets.token_hex(16), "KIE_WEBHOOK_HMAC_KEY": hmac_key,
                "KIE_DOWNLOAD_ALLOW_HOSTS": "127.0.0.1",
            })
            web_url = stack.start_webhook(port=web_port)
            print(f"  webhook     {web_url}", flush=True)
        elif os.environ.get("KIE_CALLBACK_URL"):
            web_url = stack.start_webhook()
            print(f"  webhook     {web_url} (public URL {os.environ['KIE_CALLBACK_URL']})", flush=True)
        stack.start_worker("worker", concurrency=concurrency)
        stack.start_beat()
        print(f"  worker ×{concurrency}, beat, redis {redis_url}", flush=True)
        os.environ.update(stack.env)
        os.environ.pop("KIE_STORAGE_DIR", None)   # KIE_STORAGE_URL says it now
        from ..runtime import reset
        reset()
        return _run_batch(jobs, timeout, out, workdir)


def _storage(option: str | None):
    """The demo's result storage: ``--storage``, else the environment's (``KIE_STORAGE_URL``/``_DIR``), else
    ``./kie-output``; checked before anything starts, so a missing bucket is one clear line, not a dead worker."""
    from ..results.storage.health import startup_problem
    from ..settings import Settings, StorageLocation

    env = dict(os.environ)
    if option:
        location = StorageLocation.parse(option, "--storage")
        env.pop("KIE_STORAGE_DIR", None)
        env["KIE_STORAGE_URL"] = location.url
    s = Settings.from_env(env)
    if option:
        s = dataclasses.replace(s, storage=location)
    problem = startup_problem(s)
    if problem is not None:
        raise problem
    return s.storage


def _run_batch(jobs: int, timeout: float, out, workdir: Path) -> int:
    from ..celery_app import app
    from ..runtime import runtime
    from ..tasks import download, generate

    app.conf.task_default_queue = os.environ["KIE_QUEUE"]
    store = runtime().store
    run = secrets.token_hex(3)
    started = time.time()
    sent = []
    for i in range(jobs):
        job_id = f"demo-{run}-{i:03d}"
        inp = {"prompt": f"{PROMPTS[i % len(PROMPTS)]} #{i}", "image_size": SIZES[i % len(SIZES)]}
        res = (generate.s(input=inp, job_id=job_id) | download.s()).apply_async()
        sent.append((job_id, res))
    print(f"sent {jobs} jobs (generate | download)", flush=True)
    deadline = started + timeout
    tty, last = sys.stdout.isatty(), None
    while time.time() < deadline:
        states = [(store.get(j) or {}).get("state", "queued") for j, _ in sent]
        ready = sum(1 for _, r in sent if r.ready())
        counts = {s: states.count(s) for s in sorted(set(states))}
        line = "  ".join(f"{k}={v}" for k, v in counts.items()) + f"  downloaded={ready}/{jobs}"
        if tty:
            sys.stdout.write(f"\r[{time.time() - started:5.1f}s] {line}   ")
        elif line != last:
            sys.stdout.write(f"[{time.time() - started:5.1f}s] {line}\n")
        last = line
        sys.stdout.flush()
        if ready == jobs:
            break
        time.sleep(0.5)
    print()
    rows, failed = [], 0
    for job_id, res in sent:
        job = store.get(job_id) or {}
        secs = ""
        if job.get("finished_at") and job.get("created_at"):
            secs = f"{(int(job['finished_at']) - int(job['created_at'])) / 1000:.1f}"
        path = ""
        if res.ready() and res.successful():
            files = res.result.get("files") or []
            path = (os.path.relpath(files[0]["path"]) if files[0]["path"] else files[0]["uri"]) if files else ""
            state = "succeeded"
        elif res.ready():
            state, failed = f"failed: {res.result}", failed + 1
        else:
            state, failed = f"unfinished ({job.get('state', 'queued')})", failed + 1
        rows.append((job_id, state, secs, path))
    w = max(len(r[0]) for r in rows)
    print(f"{'job':<{w}}  {'state':<10}  {'seconds':>7}  file")
    for job_id, state, secs, path in rows:
        print(f"{job_id:<{w}}  {state:<10}  {secs:>7}  {path}")
    total = time.time() - started
    if failed:
        print(f"\n{failed} of {jobs} jobs did not succeed ({total:.1f} s). Logs: {workdir}/*.log", file=sys.stderr)
        return 1
    print(f"\nall {jobs} jobs succeeded in {total:.1f} s; images in {out.path if out.scheme == 'file' else out.url}")
    return 0
