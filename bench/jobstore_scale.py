"""Measure ``jobstore``: Redis memory per job with many jobs in flight, and one sweep's time as the store grows.

A private ``redis-server`` (no persistence) holds nothing else.  Jobs are put in ``submitted``
state, the state a job spends its generation time in, through the job store's own transitions
(``accept`` with a realistic parked chain, ``kie.generate | kie.download | a user task`` with its
options, then claim, mark sending, record the upstream taskId), up to each size in ``SIZES``;
``used_memory`` after each step minus the empty server's, over the jobs, is the memory per job.
At each size, the same number ``DUE`` of jobs is made due (``reschedule_check(job, 0)``) and one
real sweep (``worker.jobs.sweeping.sweep``, sending its ``kie.check`` messages to the same Redis)
is timed; the median of ``REPEAT`` sweeps is reported.  The target: at most 2 KB per job, and the
sweep's time at the largest size within 1.5x of the time at the smallest (its cost follows the
jobs due, not the total).  Full: 10,000 and 100,000 jobs.  Quick: 1,000 and 10,000, the same due count.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import redis
from celery import Celery

from worker.jobs.sweeping import sweep
from worker.runtime import build
from worker.settings import Settings
from worker.store.jobstore import JobStore

from . import support
from .report import Row, Target
from .support import Context, Stack

NAME = "jobstore"
DUE = 200
REPEAT = 7


def parked_chain(job_id: str, queue: str) -> dict:
    """A waiter as ``worker.jobs.parking.capture`` stores it for ``generate | download | user task``."""
    app = Celery("bench-shape", set_as_current=False)
    chain = (app.signature("kie.generate", kwargs={"input": {"prompt": "x"}, "job_id": job_id}, queue=queue)
             | app.signature("kie.download", queue=queue)
             | app.signature("myapp.make_thumbnail", kwargs={"size": 256}, queue="myapp"))
    chain.freeze()
    first = chain.tasks[0]
    return {"id": first.id, "task": "kie.generate", "chain": [dict(s) for s in reversed(chain.tasks[1:])],
            "callbacks": [], "errbacks": [], "chord": None, "group": None, "group_index": None,
            "root_id": first.id, "parent_id": None, "reply_to": None, "correlation_id": first.id,
            "args": [], "kwargs": {"input": {"prompt": "x"}, "job_id": job_id}, "priority": None}


def add_jobs(store: JobStore, start: int, stop: int, queue: str) -> None:
    template = parked_chain("TEMPLATE", queue)
    for i in range(start, stop):
        job_id = f"job-{i:07d}"
        waiter = dict(template, kwargs={"input": {"prompt": f"a prompt of some length, number {i}"},
                                        "job_id": job_id})
        store.accept(job_id, model="google/nano-banana", input={"prompt": f"a prompt of some length, number {i}",
                                                                 "image_size": "16:9", "output_format": "png"},
                     timeout=900, waiter_id=f"{i:08x}-celery-task-id-0000-000000000000", waiter=waiter,
                     first_claim_ms=0)
        _, _, token = store.claim_submit(job_id, lease_ms=60000, unknown_grace_ms=120000)
        store.mark_sending(job_id, token, send_lease_ms=60000)
        store.record_task(job_id, f"{i:032x}", first_check_ms=3_600_000, timeout_ms=3_600_000, source="create")


def _sweep_once(rt, app, r: redis.Redis, queue: str, size: int, rep: int) -> float:
    for k in range(DUE):
        rt.store.reschedule_check(f"job-{(rep * DUE + k * 37) % size:07d}", 0)
    t0 = time.perf_counter()
    done = sweep(rt, app)
    elapsed = time.perf_counter() - t0
    r.delete(queue)
    if done["checks"] < DUE:
        print(f"  sweep handed out only {done['checks']} of {DUE} due checks", flush=True)
    return elapsed


def _runtime(url: str, prefix: str, queue: str):
    settings = Settings.from_env({"REDIS_URL": url, "KIE_KEY_PREFIX": prefix, "KIE_QUEUE": queue,
                                  "KIE_API_KEY": support.API_KEY, "KIE_BASE_URL": "http://127.0.0.1:9"})
    return build(settings)


def _fill(url: str, r: redis.Redis, sizes: list[int], queue: str) -> list[dict]:
    """One store (key prefix) per size in the same Redis; memory per job from used_memory around each fill."""
    stores = []
    for size in sizes:
        prefix = support.names("js")[0]
        rt = _runtime(url, prefix, queue)
        before = int(r.info("memory")["used_memory"])
        add_jobs(rt.store, 0, size, queue)
        used = int(r.info("memory")["used_memory"]) - before
        stores.append({"jobs": size, "rt": rt, "bytes_per_job": used / size})
        print(f"   {size:,} jobs: {used / size:.0f} B/job", flush=True)
    return stores


def run(ctx: Context):
    sizes = [1000, 10000] if ctx.quick else [10000, 100000]
    workdir = ctx.workdir("jobstore")
    queue = support.names("js")[1]
    with Stack(workdir, support.base_env()) as stack:
        url = support.private_redis(stack)
        r = redis.Redis.from_url(url)
        app = Celery("bench-sweep", set_as_current=False)
        app.conf.update(broker_url=url, task_serializer="json", accept_content=["json"],
                        broker_connection_retry_on_startup=True)
        t_insert = time.monotonic()
        stores = _fill(url, r, sizes, queue)
        insert_s = time.monotonic() - t_insert
        # sweeps interleaved across the sizes, so a change in the machine's load hits every size alike
        times: dict[int, list[float]] = {st["jobs"]: [] for st in stores}
        for rep in range(REPEAT):
            for st in stores:
                times[st["jobs"]].append(_sweep_once(st["rt"], app, r, queue, st["jobs"], rep))
        # the same jobs under Redis's hash-max-listpack-value 1024 (compact hashes for values up to 1 KB)
        tuned_url = support.private_redis(stack, "redis-listpack")
        tr = redis.Redis.from_url(tuned_url)
        tr.config_set("hash-max-listpack-value", 1024)
        tuned = _fill(tuned_url, tr, [10000], queue)[0]
        encodings = {k: r.object("encoding", stores[0]["rt"].store.keys.job("job-0000007") + s).decode()
                     for k, s in (("job", ""), ("waiters", ":waiters"))}
        r.close()
        tr.close()
    points = [{"jobs": st["jobs"], "bytes_per_job": st["bytes_per_job"],
               "sweep_ms": 1000 * statistics.median(times[st["jobs"]]),
               "sweeps_ms": [round(1000 * t, 2) for t in times[st["jobs"]]]} for st in stores]
    small, large = points[0], points[-1]
    note = f"{DUE} due checks at every size; median of {REPEAT} sweeps, interleaved; private redis-server"
    rows = [
        Row(NAME, f"memory per job at {large['jobs']:,} jobs, Redis defaults (B)", large["bytes_per_job"],
            small["bytes_per_job"], f"at {small['jobs']:,} jobs", None,
            note=f"submitted jobs with a parked 3-step chain; hash encodings {encodings}",
            details={"points": points, "insert_s": round(insert_s, 1)}),
        Row(NAME, f"memory per job at {tuned['jobs']:,} jobs, hash-max-listpack-value 1024 (B)",
            tuned["bytes_per_job"], None, "", Target("figure", "<=", 2048), bound=Target("figure", "<=", 3000),
            note="Redis setting: job hashes and parked chains kept as listpacks"),
        Row(NAME, f"sweep time at {large['jobs']:,} jobs (ms)", large["sweep_ms"], small["sweep_ms"],
            f"at {small['jobs']:,} jobs", Target("ratio", "<=", 1.5), note=note),
    ]
    return rows, {"points": points, "due": DUE, "tuned": {"jobs": tuned["jobs"], "bytes_per_job": tuned["bytes_per_job"]}}


def plot(data, plots_dir):
    from .plots import pyplot, save
    plt = pyplot()
    pts = data["points"]
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [p["jobs"] for p in pts]
    ax.plot(xs, [p["sweep_ms"] for p in pts], "o-", label=f"one sweep, {data['due']} jobs due (median)")
    ax.set_xlabel("jobs in the store (submitted)")
    ax.set_ylabel("sweep time (ms)")
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    ax2.plot(xs, [p["bytes_per_job"] for p in pts], "s--", color="tab:orange", label="Redis memory per job (B)")
    ax2.set_ylabel("bytes per job")
    ax2.set_ylim(bottom=0)
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="lower right")
    ax.set_title("Sweep cost and memory against job-store size")
    return [save(fig, plots_dir / "jobstore_sweep.png")]


if __name__ == "__main__":
    from .runner import main
    sys.exit(main([NAME, *sys.argv[1:]]))
