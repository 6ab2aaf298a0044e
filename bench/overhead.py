"""Measure ``overhead``: jobs/s through ``kie.generate | two no-op tasks`` against a plain Celery chain of three.

kie-queue: the real stack (webhook with callbacks on, one worker of 4 pool processes, beat)
against the simulator with no rate limit and instant completion (``--rate-limit off --duration
0``: the callback follows each create at once), ``KIE_RATE_LIMIT``/``KIE_MAX_IN_FLIGHT`` out of the
way.  ``N`` chains ``kie.generate | bench.noop | bench.mark`` are enqueued at once; jobs/s is N over
the time from the first enqueue to the last ``bench.mark``.  Baseline: ``bench.noop | bench.noop |
bench.mark`` chains on the same worker processes, the same way.  What the ratio shows is what one
job costs the deployment beyond Celery's own chain: validation, the job record, the limiter, the
createTask call, the webhook, ``kie.complete`` with its ``recordInfo`` confirmation, and the resume.
Full: 400 jobs.  Quick: 100.
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

NAME = "overhead"


def _batch(r, sigs, mark_key: str, what: str) -> tuple[float, list[float]]:
    r.delete(mark_key)
    t0 = time.time()
    for s in sigs:
        s.apply_async()
    support.wait_count(lambda: r.hlen(mark_key), len(sigs), 300, what, interval=0.1)
    done = sorted(json.loads(v) - t0 for v in r.hvals(mark_key))
    return (len(done) / done[-1] if done else 0.0), done


def run(ctx: Context):
    n = 100 if ctx.quick else 400
    prefix, queue = support.names("oh")
    workdir = ctx.workdir("overhead")
    port = free_port()
    mark_key, tt_key = f"{prefix}:bench:marks", f"{prefix}:bench:tasktime"
    env = support.kq_env(ctx.redis_url, prefix=prefix, queue=queue, workdir=workdir, callbacks_port=port,
                         BENCH_MARK_KEY=mark_key, BENCH_TASKTIME_KEY=tt_key, KIE_RATE_LIMIT="100000/1s",
                         KIE_MAX_IN_FLIGHT="100000")
    r = redis.Redis.from_url(ctx.redis_url)
    try:
        with Stack(workdir, env) as stack:
            sim = support.start_sim(stack, "--duration", "0", "--rate-limit", "off", "--small-images",
                                    "--hmac-key", support.HMAC_KEY)
            stack.env["KIE_BASE_URL"] = sim
            support.start_web(stack, "webhook:create_app()", port)
            support.start_kq_worker(stack, queue, concurrency=4)
            stack.start_beat()
            time.sleep(1.0)
            p = support.producer(ctx.redis_url, queue)
            noop, mark = p.signature("bench.noop", queue=queue), p.signature("bench.mark", queue=queue)
            # a warm-up job through each path, so neither pays for first connections
            _batch(r, [p.signature("kie.generate", kwargs={"input": {"prompt": f"warm {prefix}"}}, queue=queue)
                       | noop | mark], mark_key, "warm-up")
            r.delete(tt_key)
            kq_rate, kq_done = _batch(
                r, [p.signature("kie.generate", kwargs={"input": {"prompt": f"overhead {prefix} {i}"}}, queue=queue)
                    | noop | mark for i in range(n)], mark_key, "kie-queue")
            kq_times = read_task_times(r, tt_key)
            r.delete(tt_key)
            base_rate, base_done = _batch(r, [noop | noop | mark.clone(kwargs={"sent": f"b{i}"}) for i in range(n)],
                                          mark_key, "baseline")
            base_times = read_task_times(r, tt_key)
    finally:
        support.cleanup(ctx.redis_url, prefix, (queue,))
    ok = len(kq_done) == n and len(base_done) == n
    per_task = lambda t: {k: {"count": v["count"], "ms_each": round(1000 * v["seconds"] / max(v["count"], 1), 2),  # noqa: E731
                              "cpu_ms_each": round(1000 * v["cpu"] / max(v["count"], 1), 2)}
                          for k, v in sorted(t.items())}
    row = Row(NAME, "jobs/s, generate | 2 no-op tasks", kq_rate, base_rate, "Celery chain of 3 no-op tasks",
              Target("ratio", ">=", 0.4), extra_ok=ok, bound=Target("ratio", ">=", 0.25), note=f"{n} jobs at once, 1 worker x 4 processes",
              details={"jobs": n, "kie-queue tasks": per_task(kq_times), "baseline tasks": per_task(base_times)})
    return [row], {"kie-queue": kq_done, "baseline": base_done}


def plot(data, plots_dir):
    from .plots import pyplot, save
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, xs in (("generate | noop | noop (kie-queue)", data["kie-queue"]),
                      ("noop | noop | noop (plain Celery)", data["baseline"])):
        ax.step(xs, range(1, len(xs) + 1), where="post", label=label)
    ax.set_xlabel("seconds since the batch was enqueued")
    ax.set_ylabel("chains finished")
    ax.set_title("End-to-end overhead: chains finished over time")
    ax.legend(fontsize=8)
    return [save(fig, plots_dir / "overhead_finished.png")]


if __name__ == "__main__":
    from .runner import main
    sys.exit(main([NAME, *sys.argv[1:]]))
