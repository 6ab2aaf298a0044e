"""Rate-limit benchmark: kie-queue's shared limiter against Celery's per-worker ``rate_limit``.

    .venv/bin/python bench/rate_limit.py [--workers 4] [--seconds 60] [--jobs N] [--limit 20/10s]
                                         [--baseline-429 retry|none] [--no-tuned] [--json PATH]
                                         [--tenants N] [--tenant-weights t0=3] [--priorities]

Each scenario gets its own simulator (``python -m kiesim`` enforcing ``--limit``, tasks finishing in
1 s), its own Redis key prefix and queue in Redis database 4 (``BENCH_REDIS_URL``), and ``--workers``
separate ``celery worker`` processes of concurrency 1 each.  A batch of jobs (by default as many as
the limit admits in ``--seconds``: 120 for 20/10 s and 60 s) is enqueued at once, after every worker
is ready, and the scenario ends when every job has an outcome (or a deadline passes).

Scenarios, all in the same run:

* ``kie-queue``: ``kie.generate`` through the real stack (simulator, workers, beat; polling-only,
  ``KIE_RATE_LIMIT`` = ``--limit``); with ``--tenants N`` the jobs belong to N tenants in turn
  (``--tenant-weights``, ``--priorities`` put weights and priorities in play too).
* ``celery rate_limit (naive)``: ``bench/celery_baseline.py``, whose task POSTs createTask with
  ``rate_limit`` = the limit's nominal rate (20/10 s → ``2/s``) on every worker, as people do.
* ``celery rate_limit (tuned)``: the same with the nominal rate divided by the number of workers.

Everything is measured from the simulator's own record (``GET /_sim/stats``): the server time of
each accepted create and the count of rejected ones.  See ``bench/README.md`` for the metrics.
Only 127.0.0.1 is contacted; every process started is stopped on exit (``worker.stack.Stack``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import requests  # noqa: E402

from bench.report import aligned, fixed  # noqa: E402
from bench.schedule import max_in_window, shortest_span  # noqa: E402
from bench.support import producer as send_only  # noqa: E402
from worker.cli.stack import Stack, wait_for  # noqa: E402
from worker.settings import RateLimit  # noqa: E402
from worker.store.keys import Keys  # noqa: E402
from worker.store.metrics import Metrics  # noqa: E402

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/4")
API_KEY = "sk-bench-" + secrets.token_hex(8)
SIM_DURATION = "1"          # seconds each simulated task takes


# ---------------------------------------------------------------------------------------- metrics
def analyse(stats: dict, rate: RateLimit, t_enqueue: float) -> dict:
    times = sorted(stats["create_accept_times"])
    n = len(times)
    rejected = {str(k): int(v) for k, v in stats.get("creates_rejected", {}).items()}
    out = {
        "create_posts": int(stats.get("creates_total", 0)),
        "accepted": n,
        "rejected_429": rejected.get("429", 0),
        "rejected_other": sum(v for k, v in rejected.items() if k != "429"),
        "max_in_window": max_in_window(times, rate.window),
        "accept_times": times,
    }
    if n == 0:
        return out
    k95 = math.ceil(0.95 * n)
    span = times[-1] - times[0]
    span95 = times[k95 - 1] - times[0]
    best, best95 = shortest_span(rate.limit, rate.window, n), shortest_span(rate.limit, rate.window, k95)
    out.update({
        "enqueue_to_first": times[0] - t_enqueue,
        "enqueue_to_last": times[-1] - t_enqueue,
        "span": span,
        "shortest_span": best,
        "efficiency": (best / span) if span > 0 else (1.0 if best == 0 else 0.0),
        "k95": k95,
        "span95": span95,
        "shortest_span95": best95,
        "efficiency95": (best95 / span95) if span95 > 0 else (1.0 if best95 == 0 else 0.0),
        "creates_per_s": (n / span) if span > 0 else float("nan"),
        "creates_per_s_from_enqueue": n / (times[-1] - t_enqueue),
        # creates in consecutive W-second buckets counted from the first create
        "per_window": [sum(1 for t in times if t0 <= t - times[0] < t0 + rate.window)
                       for t0 in [i * rate.window for i in range(int(span // rate.window) + 1)]],
    })
    return out


# -------------------------------------------------------------------------------------- scenarios
def base_env(workdir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIE_", "CELERY_", "BENCH_"))}
    env.update({"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
    return env


def sim_stats(url: str) -> dict:
    r = requests.get(url + "/_sim/stats", timeout=10)
    r.raise_for_status()
    return r.json()


def wait_outcomes(results: list, deadline: float, sim_url: str, label: str) -> tuple[dict, bool]:
    """Poll until every AsyncResult is ready or ``deadline`` (monotonic) passes; print progress."""
    last_print = 0.0
    while True:
        ready = sum(1 for r in results if r.ready())
        if ready == len(results):
            break
        now = time.monotonic()
        if now > deadline:
            break
        if now - last_print > 10:
            st = sim_stats(sim_url)
            print(f"  [{label}] {ready}/{len(results)} jobs done, creates accepted {st['creates_accepted']}, "
                  f"429s {st['creates_rejected'].get('429', 0)}", flush=True)
            last_print = now
        time.sleep(0.25)
    outcomes: dict[str, int] = {}
    for r in results:
        if not r.ready():
            key = "no outcome by deadline"
        elif r.successful():
            value = r.result
            key = (value.get("outcome") or value.get("state") or "ok") if isinstance(value, dict) else "ok"
        else:
            key = f"error: {type(r.result).__name__}"
        outcomes[key] = outcomes.get(key, 0) + 1
    return outcomes, all(r.ready() for r in results)


def cleanup_redis(r: redis.Redis, prefix: str | None, queues: list[str], task_ids: list[str]) -> None:
    if prefix:
        for key in r.scan_iter(f"{prefix}:*", count=1000):
            r.delete(key)
    for q in queues:
        r.delete(q, *[f"{q}\x06\x16{p}" for p in range(10)], f"_kombu.binding_permanent.{q}",
                 f"_kombu.binding.{q}")
        for binding in r.scan_iter("_kombu.binding.*", count=1000):
            for member in r.smembers(binding):
                if member.decode(errors="replace").endswith("\x06\x16" + q):
                    r.srem(binding, member)
    # results of the project's internal tasks (kie.submit, kie.check): result_extended stores the queue
    needles = [f'"queue": "{q}"'.encode() for q in queues]
    for key in r.scan_iter("celery-task-meta-*", count=1000):
        value = r.get(key) or b""
        if any(n in value for n in needles):
            r.delete(key)
    for i in range(0, len(task_ids), 500):
        chunk = task_ids[i:i + 500]
        if chunk:
            r.delete(*[f"celery-task-meta-{t}" for t in chunk])


def run_kie_queue(args, rate: RateLimit, workroot: Path) -> dict:
    name = secrets.token_hex(4)
    prefix, queue = f"bench-{name}", f"bench-q-{name}"
    workdir = workroot / f"kie-queue-{name}"
    env = base_env(workdir)
    env.update({
        "REDIS_URL": REDIS_URL,
        "CELERY_BROKER_URL": REDIS_URL,
        "CELERY_RESULT_BACKEND": REDIS_URL,
        "KIE_API_KEY": API_KEY,
        "KIE_KEY_PREFIX": prefix,
        "KIE_QUEUE": queue,
        "KIE_RATE_LIMIT": str(rate),
        "KIE_STORAGE_DIR": str(workdir / "output"),
    })
    if args.tenant_weights:
        env["KIE_TENANT_WEIGHTS"] = args.tenant_weights
    r = redis.Redis.from_url(REDIS_URL)
    task_ids: list[str] = []
    with Stack(workdir, env) as stack:
        try:
            sim = stack.start_sim("--api-key", API_KEY, "--duration", SIM_DURATION, "--rate-limit", str(rate),
                                  "--quiet")
            stack.env["KIE_BASE_URL"] = sim
            for i in range(args.workers):
                stack.start_worker(f"w{i + 1}", concurrency=1)
            stack.start_beat()
            producer = send_only(REDIS_URL, queue)
            time.sleep(1.5)         # let beat's first sweeps through, so every worker is idle and polling
            requests.post(sim + "/_sim/reset", timeout=10).raise_for_status()
            tag = secrets.token_hex(3)
            t_enqueue = time.time()
            results = [producer.send_task("kie.generate", kwargs=job_kwargs(args, tag, i), queue=queue)
                       for i in range(args.jobs)]
            task_ids = [res.id for res in results]
            outcomes, complete = wait_outcomes(results, time.monotonic() + deadline_s(args, rate), sim,
                                               "kie-queue")
            stats = sim_stats(sim)
            snap = Metrics(r, Keys(prefix).metrics).snapshot().values
            counters = {f"{name.removeprefix('kie_').removesuffix('_total')}"
                        + (f"_{labels[0]}" if labels else ""): int(v)
                        for name in ("kie_creates_sent_total", "kie_waits_total", "kie_upstream_429_total")
                        for labels, v in snap.get(name, {}).items() if v}
        finally:
            stack.stop()
            cleanup_redis(r, prefix, [queue], task_ids)
    out = analyse(stats, rate, t_enqueue)
    setting = f"KIE_RATE_LIMIT={rate}" + (f", {args.tenants} tenants" if args.tenants > 1 else "") + \
        (f", weights {args.tenant_weights}" if args.tenant_weights else "")
    out.update({"label": "kie-queue limiter", "setting": setting, "outcomes": outcomes,
                "complete": complete,
                "project_counters": {k: v for k, v in sorted(counters.items())
                                     if k.startswith(("kie_waits_total", "kie_upstream_", "kie_creates_"))}})
    return out


def job_kwargs(args, tag: str, i: int) -> dict:
    """One job's ``kie.generate`` arguments: with ``--tenants N``, job i belongs to tenant ``t{i % N}``
    and (``--priorities``) has priority ``i % 10``."""
    kwargs = {"input": {"prompt": f"bench {tag} {i}"}}
    if args.tenants > 1:
        kwargs["tenant"] = f"t{i % args.tenants}"
    if args.priorities:
        kwargs["priority"] = i % 10
    return kwargs


def run_baseline(args, rate: RateLimit, workroot: Path, per_worker_rate: float, label: str) -> dict:
    name = secrets.token_hex(4)
    queue = f"bench-base-{name}"
    workdir = workroot / f"baseline-{name}"
    env = base_env(workdir)
    celery_rate = f"{per_worker_rate:g}/s"
    env.update({
        "BENCH_BROKER_URL": REDIS_URL,
        "BENCH_QUEUE": queue,
        "BENCH_API_KEY": API_KEY,
        "BENCH_RATE_LIMIT": celery_rate,
        "BENCH_ON_429": args.baseline_429,
    })
    r = redis.Redis.from_url(REDIS_URL)
    task_ids: list[str] = []
    celery_bin = str(Path(sys.executable).with_name("celery"))
    with Stack(workdir, env) as stack:
        try:
            sim = stack.start_sim("--api-key", API_KEY, "--duration", SIM_DURATION, "--rate-limit", str(rate),
                                  "--quiet")
            stack.env["BENCH_SIM_URL"] = sim
            for i in range(args.workers):
                proc, log = stack.spawn(f"b{i + 1}", [
                    celery_bin, "-A", "bench.celery_baseline", "worker", "--loglevel", "INFO", "--concurrency", "1",
                    "-Q", queue, "--hostname", f"b{i + 1}-{name}@{socket.gethostname()}", "--without-gossip",
                    "--without-mingle"])
                wait_for(lambda log=log: "ready." in log.read_text(errors="replace"), 60, f"baseline worker b{i + 1}",
                         interval=0.1, proc=proc, log_path=log)
            producer = send_only(REDIS_URL, queue)
            time.sleep(1.5)
            requests.post(sim + "/_sim/reset", timeout=10).raise_for_status()
            tag = secrets.token_hex(3)
            t_enqueue = time.time()
            results = [producer.send_task("bench.create", args=(f"bench {tag} {i}",), queue=queue)
                       for i in range(args.jobs)]
            task_ids = [res.id for res in results]
            outcomes, complete = wait_outcomes(results, time.monotonic() + deadline_s(args, rate), sim, label)
            stats = sim_stats(sim)
        finally:
            stack.stop()
            cleanup_redis(r, None, [queue], task_ids)
    out = analyse(stats, rate, t_enqueue)
    out.update({"label": label, "setting": f'rate_limit="{celery_rate}" per worker', "outcomes": outcomes,
                "complete": complete})
    return out


def deadline_s(args, rate: RateLimit) -> float:
    """A bound on one scenario: 3× the shortest span of the batch plus a minute."""
    return 3 * shortest_span(rate.limit, rate.window, args.jobs) + 60


# ------------------------------------------------------------------------------------------ table


def table(runs: list[dict], args, rate: RateLimit) -> str:
    rows = [
        ("setting", lambda r: r["setting"]),
        ("workers (processes x concurrency)", lambda r: f"{args.workers} x 1"),
        ("jobs enqueued", lambda r: args.jobs),
        ("job outcomes", lambda r: ", ".join(f"{k} {v}" for k, v in sorted(r["outcomes"].items()))),
        ("createTask POSTs received", lambda r: r["create_posts"]),
        ("creates accepted", lambda r: r["accepted"]),
        ("429 responses", lambda r: r["rejected_429"]),
        ("other rejections", lambda r: r["rejected_other"]),
        ("enqueue -> first create (s)", lambda r: fixed(r.get("enqueue_to_first"))),
        ("enqueue -> last create (s)", lambda r: fixed(r.get("enqueue_to_last"))),
        ("submission span, all (s)", lambda r: fixed(r.get("span"))),
        ("shortest span allowed, all (s)", lambda r: fixed(r.get("shortest_span"), 1)),
        ("efficiency, all", lambda r: fixed(r.get("efficiency"), 3)),
        ("first 95 %: k creates", lambda r: r.get("k95", "-")),
        ("first 95 %: span (s)", lambda r: fixed(r.get("span95"))),
        ("first 95 %: shortest span (s)", lambda r: fixed(r.get("shortest_span95"), 1)),
        ("efficiency, first 95 % (target >= 0.97)", lambda r: fixed(r.get("efficiency95"), 3)),
        (f"creates per {rate.window:g}-s bucket from the first", lambda r: ",".join(map(str, r.get("per_window", [])))),
        ("creates/s (accepted / span)", lambda r: fixed(r.get("creates_per_s"))),
        ("creates/s (accepted / enqueue->last)", lambda r: fixed(r.get("creates_per_s_from_enqueue"))),
        (f"max accepted in any {rate.window:g} s (<= {rate.limit})", lambda r: r["max_in_window"]),
        ("target met (>= 0.97, zero 429s)", lambda r: "yes" if (r.get("efficiency95") or 0) >= 0.97
         and r["rejected_429"] == 0 and r["accepted"] == args.jobs else "no"),
    ]
    headers = ["metric"] + [r["label"] for r in runs]
    cells = [[name] + [str(get(r)) for r in runs] for name, get in rows]
    return aligned(headers, cells)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=4, help="worker processes per scenario (concurrency 1 each)")
    p.add_argument("--seconds", type=float, default=60.0, help="size the batch so it takes about this long")
    p.add_argument("--jobs", type=int, default=None, help="batch size (default: limit x seconds / window)")
    p.add_argument("--limit", default="20/10s", help="limit the simulator enforces and kie-queue is told")
    p.add_argument("--baseline-429", choices=("retry", "none"), default="retry",
                   help="baseline on 429: retry after 1 s (default) or give the job up")
    p.add_argument("--no-tuned", action="store_true", help="skip the baseline with rate_limit divided by workers")
    p.add_argument("--json", type=Path, help="also write the figures (and every accept time) here")
    p.add_argument("--tenants", type=int, default=1, help="spread the kie-queue jobs over this many tenants")
    p.add_argument("--tenant-weights", default="", help="KIE_TENANT_WEIGHTS for the kie-queue scenario")
    p.add_argument("--priorities", action="store_true", help="give the kie-queue jobs priorities 0-9")
    p.add_argument("--scenarios", default="kie-queue,naive,tuned",
                   help="comma-separated subset of kie-queue,naive,tuned (default: all three)")
    p.add_argument("--workdir", type=Path, help="keep the processes' logs here (default: a temporary "
                   "directory, removed at the end)")
    args = p.parse_args(argv)
    rate = RateLimit.parse(args.limit, "--limit")
    if args.jobs is None:
        args.jobs = max(1, round(rate.limit * args.seconds / rate.window))
    if args.workers < 1 or args.jobs < 1:
        p.error("--workers and --jobs must be positive")
    nominal = rate.limit / rate.window
    host = socket.gethostname()
    print(f"rate-limit bench: {args.jobs} jobs, {args.workers} worker processes, limit {rate} "
          f"(nominal {nominal:g}/s), redis {REDIS_URL}, {host}, {os.cpu_count()} cpus, "
          f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}", flush=True)
    scenarios = {x.strip() for x in args.scenarios.split(",") if x.strip()}
    if not scenarios or scenarios - {"kie-queue", "naive", "tuned"}:
        p.error("--scenarios: a comma-separated subset of kie-queue,naive,tuned")
    if args.no_tuned or args.workers == 1:
        scenarios.discard("tuned")
    runs = []
    with tempfile.TemporaryDirectory(prefix="kie-bench-") as tmp:
        workroot = args.workdir or Path(tmp)
        if args.workdir:
            print(f"logs kept in {workroot}", flush=True)
        if "kie-queue" in scenarios:
            print("scenario 1: kie-queue limiter", flush=True)
            runs.append(run_kie_queue(args, rate, workroot))
        if "naive" in scenarios:
            print(f"scenario 2: celery rate_limit {nominal:g}/s on each worker", flush=True)
            runs.append(run_baseline(args, rate, workroot, nominal, f"celery rate_limit ({nominal:g}/s per worker)"))
        if "tuned" in scenarios:
            per = nominal / args.workers
            print(f"scenario 3: celery rate_limit {per:g}/s on each worker ({nominal:g}/s / {args.workers})",
                  flush=True)
            runs.append(run_baseline(args, rate, workroot, per, f"celery rate_limit ({per:g}/s per worker)"))
    print()
    print(table(runs, args, rate))
    print()
    if scenarios & {"naive", "tuned"}:
        how = ("retry after 1 s (self.retry(countdown=1), at most 100 times)" if args.baseline_429 == "retry"
               else "no retry: the job is given up")
        print(f"baseline on 429: {how}")
    for run in runs:
        if run.get("project_counters"):
            print("kie-queue counters:", ", ".join(f"{k}={v}" for k, v in run["project_counters"].items()))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: (str(v) if isinstance(v, Path) else v)
                                                  for k, v in vars(args).items()},
                                         "host": host, "cpus": os.cpu_count(), "time": time.time(),
                                         "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
