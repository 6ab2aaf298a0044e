"""Measure ``limiter``: accepted creates against the best schedule "20 in any 10 s" allows, and 429s.

Wraps ``bench/rate_limit.py`` (its scenarios, its analysis): kie-queue's shared limiter against
Celery's per-worker ``rate_limit``, nominal (the limit's rate on every worker) and tuned (divided by
the number of workers), on the same simulator settings and the same worker processes count.
Full: 4 workers, 120 jobs, all three scenarios.  Quick: 2 workers, 40 jobs, kie-queue and tuned.
"""

from __future__ import annotations

import argparse
import sys

from . import rate_limit
from .report import Row, Target
from .support import Context

NAME = "limiter"


def run(ctx: Context):
    rate = rate_limit.RateLimit.parse("20/10s", "--limit")
    args = argparse.Namespace(workers=2 if ctx.quick else 4, jobs=40 if ctx.quick else 120, baseline_429="retry",
                              tenants=1, tenant_weights="", priorities=False)   # rate_limit.py's defaults: one tenant
    nominal = rate.limit / rate.window
    runs = {"kie-queue": rate_limit.run_kie_queue(args, rate, ctx.workroot)}
    if not ctx.quick:
        runs["naive"] = rate_limit.run_baseline(args, rate, ctx.workroot, nominal,
                                                f"celery rate_limit {nominal:g}/s per worker")
    per = nominal / args.workers
    runs["tuned"] = rate_limit.run_baseline(args, rate, ctx.workroot, per, f"celery rate_limit {per:g}/s per worker")
    kq, tuned, naive = runs["kie-queue"], runs["tuned"], runs.get("naive")
    complete = kq["accepted"] == args.jobs and kq.get("complete", False)
    setting = f"{args.workers} workers x 1, {args.jobs} jobs, limit {rate}"
    details = {k: {key: v.get(key) for key in ("label", "setting", "efficiency95", "efficiency", "span95",
                                               "rejected_429", "create_posts", "accepted", "per_window",
                                               "outcomes", "project_counters")}
               for k, v in runs.items()}
    rows = [
        Row(NAME, "efficiency vs best schedule (first 95 %)", kq.get("efficiency95"), tuned.get("efficiency95"),
            f"celery rate_limit {per:g}/s per worker", Target("figure", ">=", 0.97),
            extra_ok=kq["rejected_429"] == 0 and complete, note=setting, details=details),
        Row(NAME, "429 responses", float(kq["rejected_429"]),
            float((naive or tuned)["rejected_429"]),
            f"celery rate_limit {(nominal if naive else per):g}/s per worker", Target("figure", "<=", 0)),
    ]
    if naive:
        rows.append(Row(NAME, "efficiency, celery nominal rate_limit (info)", naive.get("efficiency95"), None,
                        note=f"{naive['rejected_429']} 429s"))
    data = {"window": rate.window, "limit": rate.limit,
            "series": {v["label"]: v["accept_times"] for v in runs.values()}}
    return rows, data


def plot(data, plots_dir):
    from .plots import pyplot, save
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    longest = 0.0
    for label, times in data["series"].items():
        if not times:
            continue
        t0 = times[0]
        xs = [t - t0 for t in times]
        longest = max(longest, xs[-1])
        ax.step(xs, range(1, len(xs) + 1), where="post", label=label)
    w, limit = data["window"], data["limit"]
    k = int(longest // w) + 2
    ex, ey = [], []
    for i in range(k):
        ex += [i * w, (i + 1) * w]
        ey += [(i + 1) * limit, (i + 1) * limit]
    ax.plot(ex, ey, "k--", linewidth=1, label=f"envelope: {limit} in any {w:g} s (best schedule)")
    ax.set_xlabel("seconds since the first accepted create")
    ax.set_ylabel("accepted creates")
    ax.set_title("Creates over time against the limit's envelope")
    ax.legend(fontsize=8)
    return [save(fig, plots_dir / "limiter_creates.png")]


if __name__ == "__main__":
    from .runner import main
    sys.exit(main([NAME, *sys.argv[1:]]))
