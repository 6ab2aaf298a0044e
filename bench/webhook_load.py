"""Measure ``webhook``: callbacks per second the webhook accepts under gunicorn, against a bare Flask route.

Real jobs first: ``JOBS`` job records are put in ``submitted`` state through the job store's own
transitions (accept, claim, mark sending, record the upstream taskId), each with a callback body
in kie.ai's shape (a success with one result URL), signed the way the simulator signs
(``kiesim.callbacks.callback_headers``), on its job's URL with its own token.  The webhook
(``webhook:create_app()``) then runs with HMAC checking on, under gunicorn with the settings the
stack uses (2 workers x 4 threads), and ``wrk`` (or the Python generator when wrk cannot be had)
POSTs those callbacks, in two halves alternating with the baseline (so that the machine's
load, which changes by the second on a shared host, hits both alike).  The first delivery of a job takes the full path (every
check, the record in Redis, ``kie.complete`` sent to the broker: 202); when the load runs past the
pool of jobs, repeats are redeliveries of an unfinished job's recorded outcome (every check, then
200 without writing).  The split is read from the webhook's own counters.  Then every job is
finished and the same callbacks are sent again: kie.ai's redeliveries of finished jobs, the cheap
path (every check, one read, 200), reported beside.  The baseline is
``bench.bare_app`` (a route that answers 200 and reads nothing) on the same gunicorn settings,
the same requests.  Full: 10 s each, 12,000 jobs.  Quick: 4 s, 3,000 jobs.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import redis
import requests

from kiesim.callbacks import callback_headers
from worker.store.jobstore import JobStore
from worker.tokens import callback_path, job_token

from . import loadgen, support
from .report import Row, Target
from .support import Context, Stack, free_port

NAME = "webhook"
WARM = 40           # callbacks sent one by one before the load (first connections, script loading)


def _warm(url: str, lines: list[str]) -> None:
    for line in lines:
        path, ts, sig, body = line.split("\t", 3)
        requests.post(url + path, data=body.encode(), timeout=30, headers={
            "Content-Type": "application/json", "X-Webhook-Timestamp": ts, "X-Webhook-Signature": sig})


def make_jobs(store: JobStore, n: int, tag: str, sim_base: str = "http://127.0.0.1:9") -> list[str]:
    """``n`` submitted jobs through the store's transitions; the request file's lines for their callbacks."""
    lines = []
    now_ms = int(time.time() * 1000)
    for i in range(n):
        job_id, task_id = f"{tag}-{i}", f"task{tag}{i:07d}"
        store.accept(job_id, model="google/nano-banana", input={"prompt": f"webhook bench {i}"}, timeout=900,
                     waiter_id=f"w-{job_id}", waiter={}, first_claim_ms=0)
        verdict, _, token = store.claim_submit(job_id, lease_ms=60000, unknown_grace_ms=120000)
        store.mark_sending(job_id, token, send_lease_ms=60000)
        store.record_task(job_id, task_id, first_check_ms=600000, timeout_ms=900000, source="create")
        body = {"code": 200, "msg": "Playground task completed successfully.", "data": {
            "completeTime": now_ms, "consumeCredits": 4, "costTime": 8, "createTime": now_ms - 8000,
            "model": "google/nano-banana", "param": json.dumps({"model": "google/nano-banana",
                                                                "input": {"prompt": f"webhook bench {i}"}}),
            "remainedCredits": 1000, "resultJson": json.dumps({"resultUrls": [f"{sim_base}/files/{task_id}/0.png"]}),
            "state": "success", "taskId": task_id, "updateTime": now_ms}}
        headers = callback_headers(task_id, support.HMAC_KEY)
        path = f"{callback_path(job_id)}?token={job_token(job_id, support.WEBHOOK_SECRET)}"
        lines.append("\t".join([path, headers["X-Webhook-Timestamp"], headers["X-Webhook-Signature"],
                                json.dumps(body, separators=(",", ":"))]))
    return lines


def _answers(store: JobStore) -> dict[str, int]:
    """The webhook's own count of its answers, by outcome (``kie_callbacks_total``)."""
    return {labels[0]: int(v) for labels, v in store.metrics.snapshot().values.get("kie_callbacks_total", {}).items()}


def _combine(runs: list[dict]) -> dict:
    out = dict(runs[0])
    out["requests"] = sum(r["requests"] for r in runs)
    out["non_2xx"] = sum(r["non_2xx"] for r in runs)
    out["requests_per_s"] = sum(r["requests_per_s"] for r in runs) / len(runs)
    out["rounds"] = [r["requests_per_s"] for r in runs]
    return out


def _load(url: str, request_file: Path, seconds: float) -> dict:
    wrk = loadgen.ensure_wrk()
    if wrk:
        return loadgen.wrk_load(wrk, url, request_file, seconds=seconds)
    return loadgen.python_load(url, request_file, seconds=seconds)


def run(ctx: Context):
    seconds, n = (4.0, 3000) if ctx.quick else (10.0, 12000)
    prefix, queue = support.names("wh")
    workdir = ctx.workdir("webhook")
    r = redis.Redis.from_url(ctx.redis_url)
    store = JobStore(r, prefix)
    try:
        t0 = time.monotonic()
        tag = prefix.rsplit("-", 1)[1]
        lines = make_jobs(store, n + WARM, tag)
        warm, lines = lines[:WARM], lines[WARM:]
        setup_s = time.monotonic() - t0
        request_file = workdir / "callbacks.tsv"
        request_file.write_text("\n".join(lines) + "\n")
        halves = [workdir / "callbacks-1.tsv", workdir / "callbacks-2.tsv"]
        for k, half in enumerate(halves):
            half.write_text("\n".join(lines[k::2]) + "\n")
        port = free_port()
        env = support.kq_env(ctx.redis_url, prefix=prefix, queue=queue, workdir=workdir, callbacks_port=port)
        with Stack(workdir, env) as stack:
            web = support.start_web(stack, "webhook:create_app()", port)
            bare = support.start_web(stack, "bench.bare_app:create_app()", free_port(), name="bare")
            _warm(web, warm)
            _warm(bare, warm)
            # alternating halves, so a change in the machine's load hits both alike
            reals, bases = [], []
            for half in halves:
                reals.append(_load(web, half, seconds / 2))
                bases.append(_load(bare, half, seconds / 2))
            real, base = _combine(reals), _combine(bases)
            counters = _answers(store)
            # the same callbacks once every job has finished: kie.ai's redeliveries, the cheap path
            for i in range(WARM, WARM + n):
                store.finish(f"{tag}-{i}", "succeeded", {"state": "success"})
            dup = _load(web, request_file, seconds / 2)
            dup_base = _load(bare, request_file, seconds / 2)
            dup_counters = _answers(store)
    finally:
        support.cleanup(ctx.redis_url, prefix, (queue,))
    split = {k: v for k, v in counters.items() if v}
    dups = dup_counters.get("duplicate", 0) - counters.get("duplicate", 0)
    ok = real["non_2xx"] == 0 and base["non_2xx"] == 0 and dup["non_2xx"] == 0
    note = (f"{real['tool']}, {seconds:g} s each, gunicorn 2 workers x 4 threads; {split.get('accepted', 0)} "
            f"first deliveries (202), {split.get('redelivered', 0)} redeliveries (200)")
    row = Row(NAME, "callbacks/s accepted", real["requests_per_s"], base["requests_per_s"], "bare Flask route, same gunicorn",
              Target("ratio", ">=", 0.5), extra_ok=ok, note=note, bound=Target("ratio", ">=", 0.06),
              details={"webhook": real, "bare": base, "answers": split, "jobs": n, "job_setup_s": round(setup_s, 1)})
    dup_row = Row(NAME, "callbacks/s, redeliveries of finished jobs", dup["requests_per_s"], dup_base["requests_per_s"],
                  "bare Flask route, same gunicorn", None, note=f"{dups} answered 200 'already finished' (every "
                  "check, one HGETALL, no write)", details={"webhook": dup})
    return [row, dup_row], None


def plot(data, plots_dir):
    return []


if __name__ == "__main__":
    from .runner import main
    sys.exit(main([NAME, *sys.argv[1:]]))
