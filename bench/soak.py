"""Soak: ``python -m bench.soak --jobs 5000`` pushes many chains through a deployment whose simulator
completes every task at once and has no rate limit, then waits out a short ``KIE_JOB_RETENTION``.

It prints a table: worker and web RSS at the start (after a warm-up batch) and at the end, the Redis
memory at the baseline (after the warm-up's retention passed), after the batch and after its
retention, and for every key pattern (ids replaced by ``*``) the count at baseline, after the batch,
after retention, and how many of those keys have no TTL.  The job store is database 0, the broker
database 1, Celery's result backend database 2 (its ``result_expires`` is Celery's business, so its
keys are listed apart).  The checking task's own arrival lists are deleted by the bench before the
retention wait: they are the bench's, not the product's.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from worker.cli.stack import Stack, wait_for

from .chaos.deployment import ChaosDeployment
from .chaos.servers import RedisServer, rss_kib

HEXRUN = re.compile(r"[0-9a-f]{6,}(?:-[0-9a-f]{4,})*")


def pattern(key: str) -> str:
    """``chaos-1a2b3c:job:1a2b3c-soak-00042:done`` -> ``chaos-*:job:*-soak-*:done``."""
    return ":".join(re.sub(r"\d+", "*", HEXRUN.sub("*", seg)) for seg in key.split(":"))


def key_census(client) -> dict[str, list[int]]:
    """pattern -> [count, count without TTL, bytes (MEMORY USAGE)]."""
    out: dict[str, list[int]] = {}
    keys = list(client.scan_iter(count=2000))
    pipe = client.pipeline(transaction=False)
    for k in keys:
        pipe.ttl(k)
        pipe.memory_usage(k)
    answers = pipe.execute()
    for i, k in enumerate(keys):
        ttl, size = answers[2 * i], answers[2 * i + 1] or 0
        entry = out.setdefault(pattern(k.decode()), [0, 0, 0])
        entry[0] += 1
        entry[1] += ttl == -1
        entry[2] += size
    return out


def db_bytes(snap: dict, db: int) -> int:
    return sum(v[2] for v in snap["keys"][db].values())


def _rss(dep, name: str) -> int:
    proc = dep.stack.running(name)
    return rss_kib(proc.pid) if proc else 0


def _send(dep, n: int, tag: str) -> list[str]:
    ids = [f"{dep.name}-{tag}-{i:05d}" for i in range(n)]
    for i, job_id in enumerate(ids):
        dep.chain(job_id, f"soak {dep.name} {tag} {i}", link_error=False).apply_async()
    return ids


def _wait_arrived(client, dep, ids: list[str], timeout: float) -> float:
    t0 = time.time()

    def arrived():
        pipe = client.pipeline(transaction=False)
        for j in ids:
            pipe.exists(f"{dep.prefix}:arrivals:{j}")
        return sum(pipe.execute()) == len(ids)

    wait_for(arrived, timeout, f"{len(ids)} chains done", interval=1.0)
    return time.time() - t0


def _drop_arrivals(client, dep) -> None:
    for k in client.scan_iter(f"{dep.prefix}:arrivals:*", count=2000):
        client.delete(k)


def soak(jobs: int, *, retention: float, workers: int, concurrency: int, warmup: int = 50) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="kq-soak-"))
    servers = Stack(workdir / "servers")
    dep = None
    try:
        redis = RedisServer(servers)
        url = redis.start()
        dep = ChaosDeployment(workdir / "deploy", redis_url=url, broker_url=url[:-1] + "1",
                              sim_args=("--duration", "0", "--small-images", "--rate-limit", "off"),
                              extra_env={"KIE_JOB_RETENTION": str(retention), "KIE_RATE_LIMIT": "100000/1s",
                                         "KIE_MAX_IN_FLIGHT": "100000", "CELERY_RESULT_BACKEND": url[:-1] + "2"})
        dep.start(workers=workers, concurrency=concurrency)
        store = redis.client(0)
        dbs = {0: store, 1: redis.client(1), 2: redis.client(2)}
        _wait_arrived(store, dep, _send(dep, warmup, "warm"), 300)
        _drop_arrivals(store, dep)
        time.sleep(retention + 5)
        base = {"mem": redis.used_memory(), "keys": {d: key_census(c) for d, c in dbs.items()},
                "rss": {w: _rss(dep, w) for w in [*dep.workers, "web"]}}
        t0 = time.time()
        ids = _send(dep, jobs, "soak")
        took = _wait_arrived(store, dep, ids, max(600, jobs / 5))
        sent_s = time.time() - t0
        after = {"mem": redis.used_memory(), "keys": {d: key_census(c) for d, c in dbs.items()}}
        _drop_arrivals(store, dep)
        time.sleep(retention + 5)
        end = {"mem": redis.used_memory(), "keys": {d: key_census(c) for d, c in dbs.items()},
               "rss": {w: _rss(dep, w) for w in [*dep.workers, "web"]}}
        return {"jobs": jobs, "retention_s": retention, "seconds": round(took, 1), "jobs_per_s": round(jobs / sent_s, 1),
                "baseline": base, "after_batch": after, "after_retention": end}
    finally:
        if dep is not None:
            dep.stop()
        servers.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def table(r: dict) -> str:
    b, a, e = r["baseline"], r["after_batch"], r["after_retention"]
    lines = [f"{r['jobs']} jobs in {r['seconds']} s ({r['jobs_per_s']}/s), KIE_JOB_RETENTION={r['retention_s']:g} s", "",
             "| process | RSS at start (MiB) | RSS at end (MiB) |", "| --- | --- | --- |"]
    for name, kib in b["rss"].items():
        lines.append(f"| {name} | {kib / 1024:.1f} | {e['rss'].get(name, 0) / 1024:.1f} |")
    lines += ["", "| Redis used_memory | baseline | after batch | after retention |", "| --- | --- | --- | --- |",
              f"| whole server, MiB | {b['mem'] / 2**20:.2f} | {a['mem'] / 2**20:.2f} | {e['mem'] / 2**20:.2f} |",
              *(f"| db {db} keys ({name}), KiB | {db_bytes(b, db) / 1024:.1f} | {db_bytes(a, db) / 1024:.1f} | "
                f"{db_bytes(e, db) / 1024:.1f} |" for db, name in ((0, "job store"), (1, "broker"), (2, "results"))),
              "",
              "| db | key pattern | baseline | after batch | after retention | no TTL (after retention) |",
              "| --- | --- | --- | --- | --- | --- |"]
    for db in (0, 1, 2):
        pats = sorted(set(b["keys"][db]) | set(a["keys"][db]) | set(e["keys"][db]))
        for p in pats:
            get = lambda snap: snap["keys"][db].get(p, [0, 0, 0])  # noqa: E731
            lines.append(f"| {db} | `{p}` | {get(b)[0]} | {get(a)[0]} | {get(e)[0]} | {get(e)[1]} |")
    return "\n".join(lines)


def growing(r: dict) -> list[str]:
    """Job-store patterns (db 0) with more keys after retention than at baseline."""
    b, e = r["baseline"]["keys"][0], r["after_retention"]["keys"][0]
    return [p for p, (n, _, _) in e.items() if n > b.get(p, [0, 0, 0])[0]]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=5000)
    p.add_argument("--retention", type=float, default=20.0, help="KIE_JOB_RETENTION, seconds")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    r = soak(a.jobs, retention=a.retention, workers=a.workers, concurrency=a.concurrency)
    if a.json:
        print(json.dumps(r, indent=1))
    else:
        print(table(r))
        out = Path(__file__).resolve().parent / "results"
        out.mkdir(exist_ok=True)
        path = out / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps(r, indent=1) + "\n")
        print(f"written to {path}")
    grow = growing(r)
    if grow:
        print("job-store key sets that grew: " + ", ".join(grow), file=sys.stderr)
    return 1 if grow else 0


if __name__ == "__main__":
    raise SystemExit(main())
