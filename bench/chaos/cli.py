"""The command line of the chaos suite: runs, prints one row per run, writes the rows as JSON, and
exits 1 if any run lost a job, continued one twice, or has an unexplained duplicate upstream task."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .report import format_rows
from .run import Options, chaos_run, sentinel_supported

RESULTS = Path(__file__).resolve().parents[1] / "results"


def parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    p.add_argument("--jobs", type=int, default=300)
    p.add_argument("--broker", choices=("redis", "amqp"), default="redis")
    p.add_argument("--hosts", choices=("netns",), default=None, help="workers in network namespaces (root)")
    p.add_argument("--failover", action="store_true",
                   help="Sentinel topology, primary SIGKILLed; runs without and with KIE_REDIS_MIN_REPLICAS=1")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="short faults (webhook down 5-10 s), short graces")
    p.add_argument("--deadline", type=float, default=None, help="seconds after the first job (default: "
                   "the fault window plus the Redis broker's visibility timeout and a margin)")
    p.add_argument("--appendfsync", choices=("always", "everysec", "no"), default="everysec")
    p.add_argument("--rate", default="20/10s", help="createTask limit of the simulator and the workers")
    p.add_argument("--kill", choices=("worker", "child"), default="worker",
                   help="SIGKILL whole workers (default) or one pool process of a worker")
    p.add_argument("--keep", action="store_true", help="keep the work directory with every process's log")
    p.add_argument("--json", action="store_true", help="print the rows as JSON on stdout instead of a file")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse(sys.argv[1:] if argv is None else argv)
    base = Options(jobs=a.jobs, broker=a.broker, hosts=a.hosts, seed=a.seed, workers=a.workers,
                   concurrency=a.concurrency, quick=a.quick, deadline=a.deadline, appendfsync=a.appendfsync,
                   rate=a.rate, keep=a.keep, kill=a.kill)
    runs = [base]
    if a.failover:
        runs = [Options(**{**vars(base), "failover": True, "min_replicas": n}) for n in (0, 1)]
        if not sentinel_supported():
            print("note: the product does not accept sentinel:// URLs yet (KIE_SENTINEL_MASTER); "
                  "the failover run needs it", file=sys.stderr)
            return 2
    rows = [chaos_run(o) for o in runs]
    if a.json:
        print(json.dumps(rows, indent=1))
    else:
        print(format_rows(rows))
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"chaos-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps(rows, indent=1) + "\n")
        print(f"rows written to {out}")
    return 0 if all(r["ok"] for r in rows) else 1
