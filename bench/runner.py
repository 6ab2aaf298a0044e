"""``python -m bench [--quick] [--out DIR] [measure ...]``: run the measures, print one table, write the results.

Each measure is a module of this package with ``NAME``, ``run(ctx) -> (rows, data)`` and
``plot(data, plots_dir) -> [paths]``.  The results go to ``<out>/results.json`` and the plots to
``<out>/plots/`` (``--out`` defaults to this folder).  A measure that raises is reported as a
failed row with its error, and the others still run.  The exit status is 0 when every measure ran
(whether or not a target was met: the table and ``pass`` say that); 1 if one crashed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import rate_limit, support
from .report import Row, table, write_results
from .support import Context, Stack

HERE = Path(__file__).resolve().parent
MEASURES = ["limiter", "worker_time", "chain_latency", "webhook_load", "overhead", "jobstore_scale", "roundtrips",
            "download"]
ALIASES = {"worker-time": "worker_time", "chain": "chain_latency", "chain-latency": "chain_latency",
           "webhook": "webhook_load", "webhook-throughput": "webhook_load", "jobstore": "jobstore_scale", "job-store": "jobstore_scale", "round-trips": "roundtrips"}


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("measures", nargs="*", metavar="measure",
                   help=f"any of {', '.join(MEASURES)} (default: all, in this order)")
    p.add_argument("--quick", action="store_true", help="a CI-sized run (under 3 minutes): smaller batches")
    p.add_argument("--out", type=Path, default=HERE, help="where results.json and plots/ go (default: bench/)")
    p.add_argument("--workdir", type=Path, help="keep the processes' logs here (default: a temporary folder)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    args = p.parse_args(argv)
    chosen = [ALIASES.get(m, m) for m in args.measures] or list(MEASURES)
    unknown = [m for m in chosen if m not in MEASURES]
    if unknown:
        p.error(f"unknown measure(s) {', '.join(unknown)}: choose from {', '.join(MEASURES)}")
    args.measures = chosen
    return args


def main(argv=None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    started, load = time.time(), [round(x, 2) for x in os.getloadavg()]
    print(f"bench: {', '.join(args.measures)}{' (quick)' if args.quick else ''}; {os.cpu_count()} cpus, "
          f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
          flush=True)
    rows: list[Row] = []
    plots: list[str] = []
    timings: dict[str, float] = {}
    crashed = False
    with tempfile.TemporaryDirectory(prefix="kie-bench-") as tmp:
        workroot = args.workdir or Path(tmp)
        workroot.mkdir(parents=True, exist_ok=True)
        redis_stack = Stack(workroot / "redis", support.base_env())
        ctx = Context(quick=args.quick, workroot=workroot)
        if not os.environ.get("BENCH_REDIS_URL"):
            # a private redis-server for the whole run: other users of the machine's Redis do not slow it
            ctx.redis_url = rate_limit.REDIS_URL = support.private_redis(redis_stack, "redis-bench")
        print(f"redis: {ctx.redis_url}", flush=True)
        plots_dir = args.out / "plots"
        try:
            crashed = _run_all(args, ctx, rows, plots, timings, plots_dir)
        finally:
            redis_stack.stop()
    print()
    print(table(rows))
    args.out.mkdir(parents=True, exist_ok=True)
    write_results(args.out / "results.json", rows, quick=args.quick, started=started, load=load,
                  extra={"measure_seconds": timings, "plots": [os.path.relpath(p, args.out) for p in plots]})
    print(f"\nresults: {args.out / 'results.json'}; plots: {len(plots)} in {args.out / 'plots'}; "
          f"{time.time() - started:.0f} s", flush=True)
    return 1 if crashed else 0


def _run_all(args, ctx, rows, plots, timings, plots_dir) -> bool:
    crashed = False
    for name in args.measures:
        module = importlib.import_module(f"bench.{name}")
        t0 = time.monotonic()
        print(f"== {name}", flush=True)
        try:
            got, data = module.run(ctx)
        except Exception as exc:  # noqa: BLE001 - one broken measure must not hide the others
            traceback.print_exc()
            got, data = [Row(name, f"crashed: {type(exc).__name__}: {exc}"[:200], None)], None
            crashed = True
        timings[name] = round(time.monotonic() - t0, 1)
        for row in got:
            print(f"   {row.name}: {row.figure!r} (baseline {row.baseline!r})", flush=True)
        rows.extend(got)
        if data is not None and not args.no_plots:
            try:
                plots_dir.mkdir(parents=True, exist_ok=True)
                plots.extend(str(p) for p in module.plot(data, plots_dir))
            except Exception:  # noqa: BLE001
                traceback.print_exc()
        print(f"   ({timings[name]:.0f} s)", flush=True)
    return crashed
