"""Fairness benchmark: a small tenant beside a big backlog on one account, fair scheduling against FIFO.

    .venv/bin/python -m bench.fairness [--a-jobs 300] [--b-jobs 20] [--delay 5] [--limit 20/10s]
                                       [--workers 2] [--json PATH] [--workdir DIR]

Tenant A enqueues ``--a-jobs`` jobs; ``--delay`` seconds later tenant B enqueues ``--b-jobs``.  Three
scenarios in the same run, each on its own simulator (enforcing ``--limit`` per key, tasks finishing
in 1 s), key prefix and queue in Redis database 4 (``BENCH_REDIS_URL``), with ``--workers`` worker
processes of concurrency 2 and beat (polling-only):

* ``FIFO (one tenant)``: every job of A and B under one tenant, so the scheduler serves them in
  arrival order: the behaviour before tenants existed, measured as the baseline.
* ``fair, equal weights``: A and B as two tenants of weight 1.
* ``fair, B=3``: ``KIE_TENANT_WEIGHTS=B=3``.

A job's create time is its record's ``submitted_at`` (the Redis server's clock, on this host).  Per
tenant it prints the creates per 10-s window (counted from A's enqueue), the time from its enqueue
to its last create, and the share of the creates while both tenants had jobs ready (from B's
enqueue to B's last create; creates granted in one burst go out in whatever order the workers take
them, so the last burst blurs this figure) and in the windows in which both were ready throughout
(B had creates in the window and jobs left after it), beside the ideal share (its weight over the
sum of the weights); plus
the simulator's 429 count and the most creates in any window, and the efficiency of the whole run
against the best schedule the limit allows.  Only 127.0.0.1 is contacted; every process started is
stopped on exit, and the bench's Redis keys are deleted.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import requests  # noqa: E402

from bench.rate_limit import API_KEY, REDIS_URL, base_env, cleanup_redis, sim_stats  # noqa: E402
from bench.report import aligned, fixed  # noqa: E402
from bench.schedule import max_in_window, shortest_span  # noqa: E402
from bench.support import producer as send_only  # noqa: E402
from worker.cli.stack import Stack  # noqa: E402
from worker.settings import RateLimit  # noqa: E402
from worker.store.keys import Keys  # noqa: E402

SCENARIOS = (("FIFO (one tenant)", None), ("fair, equal weights", ""), ("fair, B=3", "B=3"))


def run(args, rate: RateLimit, label: str, weights: str | None, workroot: Path) -> dict:
    """One scenario; ``weights`` None = both tenants' jobs under one tenant (FIFO)."""
    name = secrets.token_hex(4)
    prefix, queue = f"bench-{name}", f"bench-q-{name}"
    workdir = workroot / f"fair-{name}"
    env = base_env(workdir)
    env.update({"REDIS_URL": REDIS_URL, "CELERY_BROKER_URL": REDIS_URL, "CELERY_RESULT_BACKEND": REDIS_URL,
                "KIE_API_KEY": API_KEY, "KIE_KEY_PREFIX": prefix, "KIE_QUEUE": queue, "KIE_RATE_LIMIT": str(rate),
                "KIE_STORAGE_DIR": str(workdir / "output")})
    if weights:
        env["KIE_TENANT_WEIGHTS"] = weights
    r = redis.Redis.from_url(REDIS_URL)
    keys = Keys(prefix)
    tag = secrets.token_hex(3)
    a_ids = [f"{tag}-a{i:04d}" for i in range(args.a_jobs)]
    b_ids = [f"{tag}-b{i:04d}" for i in range(args.b_jobs)]
    task_ids: list[str] = []
    with Stack(workdir, env) as stack:
        try:
            sim = stack.start_sim("--api-key", API_KEY, "--duration", "1", "--rate-limit", str(rate), "--quiet",
                                  "--small-images")
            stack.env["KIE_BASE_URL"] = sim
            for i in range(args.workers):
                stack.start_worker(f"w{i + 1}", concurrency=2)
            stack.start_beat()
            producer = send_only(REDIS_URL, queue)
            time.sleep(1.5)
            requests.post(sim + "/_sim/reset", timeout=10).raise_for_status()

            def send(job_ids, tenant):
                for job_id in job_ids:
                    kwargs = {"input": {"prompt": f"bench {job_id}"}, "job_id": job_id}
                    if weights is not None:
                        kwargs["tenant"] = tenant
                    task_ids.append(producer.send_task("kie.generate", kwargs=kwargs, queue=queue).id)

            t_a = time.time()
            send(a_ids, "A")
            time.sleep(max(0.0, t_a + args.delay - time.time()))
            t_b = time.time()
            send(b_ids, "B")
            deadline = time.monotonic() + 3 * shortest_span(rate.limit, rate.window, args.a_jobs + args.b_jobs) + 90
            last_print = 0.0
            while time.monotonic() < deadline:
                created = created_at(r, keys, a_ids + b_ids)
                if len(created) == len(a_ids) + len(b_ids):
                    break
                if time.monotonic() - last_print > 15:
                    print(f"  [{label}] {sum(1 for j in b_ids if j in created)}/{len(b_ids)} of B, "
                          f"{sum(1 for j in a_ids if j in created)}/{len(a_ids)} of A created", flush=True)
                    last_print = time.monotonic()
                time.sleep(0.5)
            created = created_at(r, keys, a_ids + b_ids)
            stats = sim_stats(sim)
        finally:
            stack.stop()
            cleanup_redis(r, prefix, [queue], task_ids)
    return analyse(label, weights, rate, created, a_ids, b_ids, t_a, t_b, stats)


def created_at(r, keys: Keys, job_ids: list[str]) -> dict[str, float]:
    pipe = r.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hget(keys.job(job_id), "submitted_at")
    return {j: int(v) / 1000.0 for j, v in zip(job_ids, pipe.execute()) if v}


def analyse(label, weights, rate, created, a_ids, b_ids, t_a, t_b, stats) -> dict:
    a = sorted(created[j] for j in a_ids if j in created)
    b = sorted(created[j] for j in b_ids if j in created)
    w_b = float(weights.split("=")[1]) if weights else 1.0
    both_until = b[-1] if b else t_b
    in_both = [t for t in a if t_b <= t <= both_until]
    contended = len(in_both) + len(b)
    everything = sorted(a + b)
    n = len(everything)
    span = everything[-1] - everything[0] if n > 1 else 0.0
    best = shortest_span(rate.limit, rate.window, n)

    def per_window(times):
        end = max(everything) if everything else t_a
        return [sum(1 for t in times if t_a + k * rate.window <= t < t_a + (k + 1) * rate.window)
                for k in range(int((end - t_a) // rate.window) + 1)]

    # the windows in which both tenants were ready throughout: B had creates in it and jobs left after it
    a_pw, b_pw = per_window(a), per_window(b)
    full = [k for k in range(len(b_pw)) if b_pw[k] > 0 and sum(b_pw[:k + 1]) < len(b)]
    full_a, full_b = sum(a_pw[k] for k in full), sum(b_pw[k] for k in full)
    full_n = full_a + full_b
    return {
        "label": label, "weights": weights, "full_windows": len(full),
        "A": {"created": len(a), "per_window": a_pw, "enqueue_to_last": (a[-1] - t_a) if a else None,
              "share_both_ready": (len(in_both) / contended) if contended else None,
              "share_full_windows": (full_a / full_n) if full_n else None,
              "ideal_share": None if weights is None else 1.0 / (1.0 + w_b)},
        "B": {"created": len(b), "per_window": b_pw, "enqueue_to_last": (b[-1] - t_b) if b else None,
              "enqueue_to_first": (b[0] - t_b) if b else None,
              "share_both_ready": (len(b) / contended) if contended else None,
              "share_full_windows": (full_b / full_n) if full_n else None,
              "ideal_share": None if weights is None else w_b / (1.0 + w_b)},
        "contended_creates": contended,
        "rejected_429": int(stats.get("creates_rejected", {}).get("429", 0)),
        "max_in_window": max_in_window(stats.get("create_accept_times", []), rate.window),
        "efficiency": (best / span) if span > 0 else None,
    }




def table(runs: list[dict], rate: RateLimit) -> str:
    rows = []
    for tenant in ("A", "B"):
        rows += [
            (f"{tenant}: creates", lambda r, t=tenant: r[t]["created"]),
            (f"{tenant}: creates per {rate.window:g}-s window",
             lambda r, t=tenant: ",".join(map(str, r[t]["per_window"]))),
            (f"{tenant}: enqueue -> last create (s)", lambda r, t=tenant: fixed(r[t]["enqueue_to_last"], 1)),
            (f"{tenant}: share while both ready", lambda r, t=tenant: fixed(r[t]["share_both_ready"], 3)),
            (f"{tenant}: share in windows both were ready throughout",
             lambda r, t=tenant: fixed(r[t]["share_full_windows"], 3)),
            (f"{tenant}: ideal share", lambda r, t=tenant: fixed(r[t]["ideal_share"], 3)),
        ]
    rows += [
        ("B: enqueue -> first create (s)", lambda r: fixed(r["B"]["enqueue_to_first"], 1)),
        ("creates while both ready", lambda r: r["contended_creates"]),
        ("windows both were ready throughout", lambda r: r["full_windows"]),
        ("429 responses", lambda r: r["rejected_429"]),
        (f"max creates in any {rate.window:g} s (<= {rate.limit})", lambda r: r["max_in_window"]),
        ("efficiency of the whole run (best / actual span)", lambda r: fixed(r["efficiency"], 3)),
    ]
    headers = ["metric"] + [r["label"] for r in runs]
    cells = [[name] + [str(get(r)) for r in runs] for name, get in rows]
    return aligned(headers, cells)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--a-jobs", type=int, default=300, help="tenant A's jobs, enqueued first")
    p.add_argument("--b-jobs", type=int, default=20, help="tenant B's jobs, enqueued --delay s later")
    p.add_argument("--delay", type=float, default=5.0, help="seconds from A's enqueue to B's")
    p.add_argument("--limit", default="20/10s", help="limit the simulator enforces and kie-queue is told")
    p.add_argument("--workers", type=int, default=2, help="worker processes per scenario (concurrency 2 each)")
    p.add_argument("--scenarios", default="fifo,equal,b3", help="comma-separated subset of fifo,equal,b3")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--workdir", type=Path, help="keep the processes' logs here")
    args = p.parse_args(argv)
    rate = RateLimit.parse(args.limit, "--limit")
    if args.a_jobs < 1 or args.b_jobs < 1 or args.workers < 1:
        p.error("--a-jobs, --b-jobs and --workers must be positive")
    chosen = {x.strip() for x in args.scenarios.split(",") if x.strip()}
    if not chosen or chosen - {"fifo", "equal", "b3"}:
        p.error("--scenarios: a comma-separated subset of fifo,equal,b3")
    print(f"fairness bench: A {args.a_jobs} jobs, B {args.b_jobs} jobs {args.delay:g} s later, limit {rate}, "
          f"{args.workers} workers x 2, redis {REDIS_URL}, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", flush=True)
    runs = []
    with tempfile.TemporaryDirectory(prefix="kie-bench-") as tmp:
        workroot = args.workdir or Path(tmp)
        for (label, weights), key in zip(SCENARIOS, ("fifo", "equal", "b3")):
            if key in chosen:
                print(f"scenario: {label}", flush=True)
                runs.append(run(args, rate, label, weights, workroot))
    print()
    print(table(runs, rate))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
