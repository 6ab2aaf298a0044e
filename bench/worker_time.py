"""Measure ``worker_time``: worker-seconds a job holds a worker process, with a long upstream generation.

kie-queue: ``kie.generate | bench.mark`` chains through the real stack (simulator taking
``GEN_S`` seconds per task, the webhook with callbacks on, one worker of 4 pool processes, beat).
Baseline: the way people write it without this project, ``bench.generate_and_poll`` (create, then
poll ``recordInfo`` every second) chained to the same ``bench.mark``, on one Celery worker of 4
pool processes.  Worker time is every task's wall-clock run time in the pool processes
(``bench.tasktime``), ``bench.mark`` excluded on both sides; kie-queue's includes beat's
``kie.sweep`` runs during the batch.  Jobs/min: the batch size over the time from enqueueing it to
its last ``bench.mark``.  Full: 30-s generation, 40 jobs (kie-queue) and 8 jobs (baseline: two
rounds of 4).  Quick: 5-s generation, 20 and 8 jobs.
"""

from __future__ import annotations

import json
import sys
import time

import redis

from . import support
from .report import Row, Target
from .support import Context, Stack, free_port
from .tasktime import read_task_times

NAME = "worker_time"


def _settings(ctx: Context) -> tuple[float, int, int]:
    return (5.0, 20, 8) if ctx.quick else (30.0, 40, 8)


def _batch(r, producer, sigs, mark_key, n, deadline_s, what) -> tuple[float, dict]:
    t0 = time.time()
    for s in sigs:
        s.apply_async()
    support.wait_count(lambda: r.hlen(mark_key), n, deadline_s, what, interval=0.25)
    marks = {k.decode(): json.loads(v) for k, v in r.hgetall(mark_key).items()}
    return t0, marks


def run_kie_queue(ctx: Context, gen_s: float, n: int) -> dict:
    prefix, queue = support.names("wt")
    workdir = ctx.workdir("worker-time-kq")
    port = free_port()
    tt_key, mark_key = f"{prefix}:bench:tasktime", f"{prefix}:bench:marks"
    env = support.kq_env(ctx.redis_url, prefix=prefix, queue=queue, workdir=workdir, callbacks_port=port,
                         BENCH_TASKTIME_KEY=tt_key, BENCH_MARK_KEY=mark_key)
    r = redis.Redis.from_url(ctx.redis_url)
    try:
        with Stack(workdir, env) as stack:
            sim = support.start_sim(stack, "--duration", str(gen_s), "--small-images", "--hmac-key", support.HMAC_KEY)
            stack.env["KIE_BASE_URL"] = sim
            support.start_web(stack, "webhook:create_app()", port)
            support.start_kq_worker(stack, queue, concurrency=4)
            stack.start_beat()
            time.sleep(1.0)
            r.delete(tt_key)
            p = support.producer(ctx.redis_url, queue)
            sigs = [p.signature("kie.generate", kwargs={"input": {"prompt": f"worker time {prefix} {i}"}},
                                queue=queue) | p.signature("bench.mark", queue=queue) for i in range(n)]
            t0, marks = _batch(r, p, sigs, mark_key, n, 3 * gen_s + n / 2 + 120, "kie-queue")
            times = read_task_times(r, tt_key)
    finally:
        support.cleanup(ctx.redis_url, prefix, (queue,))
    return _summary(times, marks, t0, n)


def run_baseline(ctx: Context, gen_s: float, n: int) -> dict:
    prefix, queue = support.names("wtb")
    workdir = ctx.workdir("worker-time-base")
    tt_key, mark_key = f"{prefix}:bench:tasktime", f"{prefix}:bench:marks"
    env = support.base_env()
    env.update({"BENCH_BROKER_URL": ctx.redis_url, "BENCH_QUEUE": queue, "BENCH_API_KEY": support.API_KEY,
                "BENCH_REDIS": ctx.redis_url, "BENCH_TASKTIME_KEY": tt_key, "BENCH_MARK_KEY": mark_key})
    r = redis.Redis.from_url(ctx.redis_url)
    try:
        with Stack(workdir, env) as stack:
            sim = support.start_sim(stack, "--duration", str(gen_s), "--small-images")
            stack.env["BENCH_SIM_URL"] = sim
            support.start_baseline_worker(stack, queue, concurrency=4)
            time.sleep(1.0)
            p = support.producer(ctx.redis_url, queue)
            sigs = [p.signature("bench.generate_and_poll", args=(f"worker time {prefix} {i}",), queue=queue)
                    | p.signature("bench.mark", queue=queue) for i in range(n)]
            t0, marks = _batch(r, p, sigs, mark_key, n, (n / 4 + 2) * (gen_s + 5) + 60, "baseline")
            times = read_task_times(r, tt_key)
    finally:
        support.cleanup(ctx.redis_url, prefix, (queue,), keys=(tt_key, mark_key))
    return _summary(times, marks, t0, n)


def _summary(times: dict, marks: dict, t0: float, n: int) -> dict:
    busy = sum(v["seconds"] for k, v in times.items() if k != "bench.mark")
    cpu = sum(v["cpu"] for k, v in times.items() if k != "bench.mark")
    done = len(marks)
    span = (max(marks.values()) - t0) if marks else float("nan")
    return {"jobs": n, "done": done, "worker_seconds": busy, "per_job": busy / max(done, 1),
            "cpu_per_job": cpu / max(done, 1),
            "span_s": span, "jobs_per_min": done / span * 60 if marks else 0.0,
            "tasks": {k: {"count": v["count"], "seconds": round(v["seconds"], 4), "cpu": round(v["cpu"], 4)}
                      for k, v in sorted(times.items())},
            "finish_times": sorted(t - t0 for t in marks.values())}


def run(ctx: Context):
    gen_s, n_kq, n_base = _settings(ctx)
    kq = run_kie_queue(ctx, gen_s, n_kq)
    base = run_baseline(ctx, gen_s, n_base)
    note = f"{gen_s:g} s generation" + (" (quick: shorter than the full run's 30 s)" if ctx.quick else "")
    ok = kq["done"] == n_kq and base["done"] == n_base
    # the target holds for 30-s generations; the baseline's time shrinks with a shorter one, so scale it
    limit = 0.01 * 30.0 / gen_s
    if gen_s != 30.0:
        note += f"; target scaled to 0.01 x 30/{gen_s:g}"
    rows = [
        Row(NAME, "worker-seconds per job", kq["per_job"], base["per_job"], "Celery task creating then polling",
            Target("ratio", "<=", round(limit, 4)), extra_ok=ok, note=note,
            details={"kie-queue": {k: v for k, v in kq.items() if k != "finish_times"},
                     "baseline": {k: v for k, v in base.items() if k != "finish_times"}}),
        Row(NAME, "worker CPU-seconds per job", kq["cpu_per_job"], base["cpu_per_job"],
            "Celery task creating then polling", None, note="CPU time of the pool processes (less sensitive to load)"),
        Row(NAME, "jobs/min, 4 worker processes", kq["jobs_per_min"], base["jobs_per_min"],
            "Celery task creating then polling", None,
            note=f"{note}; kie-queue {n_kq} jobs (bounded by the upstream's 20 per 10 s), baseline {n_base} jobs"),
    ]
    return rows, {"gen_s": gen_s, "kie-queue": kq["finish_times"], "baseline": base["finish_times"]}


def plot(data, plots_dir):
    from .plots import pyplot, save
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for label in ("kie-queue", "baseline"):
        xs = data[label]
        ax.step(xs, range(1, len(xs) + 1), where="post", label=label)
    ax.set_xlabel("seconds since the batch was enqueued")
    ax.set_ylabel("jobs finished")
    ax.set_title(f"Jobs finished over time, 4 worker processes, {data['gen_s']:g}-s generation")
    ax.legend()
    return [save(fig, plots_dir / "worker_time_finished.png")]


if __name__ == "__main__":
    from .runner import main
    sys.exit(main([NAME, *sys.argv[1:]]))
