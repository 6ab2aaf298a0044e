"""Measure ``chain_latency``: from the webhook receiving a callback to the first post-processing task starting.

kie-queue: ``kie.generate | bench.mark`` chains enqueued at a steady ``RATE`` per second through the
real stack (simulator with no rate limit, tasks taking 1 ± 0.5 s, signed callbacks; the webhook,
one worker of 4 pool processes, beat).  The webhook's probe (``bench.webapp``) notes when each
job's first callback came in; ``bench.mark`` notes when it started.  The path between them is the
product's: verify and record the callback, send ``kie.complete``, confirm with ``recordInfo``,
finish the job, resume the parked chain.

Baseline: ``bench.mark.apply_async()`` on the same workers, sent at the same moments (the offsets
of the callbacks just received, replayed), from sending to its start.  Full: 1,000 jobs.  Quick:
120.  Reported: p50, p95, p99 of both; the target is on the p50 ratio.
"""

from __future__ import annotations

import json
import sys
import time

import redis

from . import support
from .report import Row, Target
from .support import Context, Stack, free_port, percentile
from .tasktime import read_task_times

NAME = "chain_latency"
RATE = 12.0          # jobs enqueued per second: well within what the worker keeps up with


def run(ctx: Context):
    n = 120 if ctx.quick else 1000
    prefix, queue = support.names("cl")
    workdir = ctx.workdir("chain-latency")
    port = free_port()
    mark_key, tt_key = f"{prefix}:bench:marks", f"{prefix}:bench:tasktime"
    env = support.kq_env(ctx.redis_url, prefix=prefix, queue=queue, workdir=workdir, callbacks_port=port,
                         BENCH_MARK_KEY=mark_key, BENCH_TASKTIME_KEY=tt_key, KIE_RATE_LIMIT="100000/1s", KIE_MAX_IN_FLIGHT="100000")
    r = redis.Redis.from_url(ctx.redis_url)
    try:
        with Stack(workdir, env) as stack:
            sim = support.start_sim(stack, "--duration", "1", "--duration-jitter", "0.5", "--rate-limit", "off",
                                    "--small-images", "--hmac-key", support.HMAC_KEY)
            stack.env["KIE_BASE_URL"] = sim
            support.start_web(stack, "bench.webapp:create_app()", port)
            support.start_kq_worker(stack, queue, concurrency=4)
            stack.start_beat()
            time.sleep(1.0)
            p = support.producer(ctx.redis_url, queue)
            t_start = time.monotonic()
            for i in range(n):
                _pace(t_start, i)
                (p.signature("kie.generate", kwargs={"input": {"prompt": f"chain {prefix} {i}"}}, queue=queue)
                 | p.signature("bench.mark", queue=queue)).apply_async()
            support.wait_count(lambda: r.hlen(mark_key), n, 120, "kie-queue chains", interval=0.25)
            recv = {k.decode(): float(v) for k, v in r.hgetall(mark_key + ":recv").items()}
            marks = {k.decode(): json.loads(v) for k, v in r.hgetall(mark_key).items()}
            kq = [marks[j] - t for j, t in recv.items() if j in marks]
            times = read_task_times(r, tt_key)

            # baseline: the same task, sent at the same offsets the callbacks arrived at
            r.delete(mark_key)
            arrivals = sorted(recv.values())
            sent: dict[str, float] = {}
            t0 = time.time()
            for i, t in enumerate(arrivals):
                delay = (t - arrivals[0]) - (time.time() - t0)
                if delay > 0:
                    time.sleep(delay)
                tag = f"b{i}"
                sent[tag] = time.time()
                p.signature("bench.mark", kwargs={"sent": tag}, queue=queue).apply_async()
            support.wait_count(lambda: r.hlen(mark_key), len(sent), 60, "baseline marks", interval=0.25)
            marks = {k.decode(): json.loads(v) for k, v in r.hgetall(mark_key).items()}
            base = [marks[t] - s for t, s in sent.items() if t in marks]
    finally:
        support.cleanup(ctx.redis_url, prefix, (queue,))
    ms = lambda xs: [1000 * x for x in xs]  # noqa: E731
    kq, base = ms(kq), ms(base)
    ok = len(kq) == n and len(base) == len(recv)
    details = {"jobs": n, "measured": len(kq), "baseline_measured": len(base), "rate_per_s": RATE,
               "task ms each (wall, cpu)": {k: [round(1000 * v["seconds"] / max(v["count"], 1), 2),
                                                round(1000 * v["cpu"] / max(v["count"], 1), 2)]
                                            for k, v in sorted(times.items())}}
    rows = []
    for q, label in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        rows.append(Row(NAME, f"callback -> chain {label} (ms)", percentile(kq, q), percentile(base, q),
                        "apply_async -> start", Target("ratio", "<=", 1.5) if q == 0.5 else None,
                        bound=Target("ratio", "<=", 25) if q == 0.5 else None,
                        extra_ok=ok, note=f"{n} jobs at {RATE:g}/s", details=details if q == 0.5 else {}))
    return rows, {"kie-queue": kq, "baseline": base}


def _pace(t_start: float, i: int) -> None:
    delay = t_start + i / RATE - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def plot(data, plots_dir):
    from .plots import cdf, pyplot, save
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    cdf(ax, data["kie-queue"], "callback received -> first chain task starts (kie-queue)")
    cdf(ax, data["baseline"], "apply_async -> the same task starts (baseline)")
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of jobs")
    ax.set_title("Callback -> chain latency CDF")
    ax.legend(fontsize=8)
    return [save(fig, plots_dir / "chain_latency_cdf.png")]


if __name__ == "__main__":
    from .runner import main
    sys.exit(main([NAME, *sys.argv[1:]]))
