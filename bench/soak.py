"""Soak: ``python -m bench.soak --jobs 5000`` pushes many chains through a deployment whose simulator
completes every task at once and has no rate limit, then waits out a short ``KIE_JOB_RETENTION``.

It prints a table: the memory of the workers and the web process (RSS of main process + children, their
PSS, the main process's own RSS) at the start (after a warm-up batch), after each batch (``--batches N``
sends ``--jobs`` N times, to tell bounded growth from a leak) and after the retention; the Redis memory at the
baseline (after the warm-up's retention passed), after the last batch and after its retention; and for every key
pattern (ids replaced by ``*``) the count at baseline, after the batch, after retention, and how many of those
keys have no TTL.  The job store is database 0, the broker database 1, Celery's result backend database 2;
its ``celery-task-meta-*`` keys are listed by the task that stored them (``?``: a result stored without
``result_extended``, here the checking task's, whose app keeps Celery's default ``result_expires`` of a day).
kie-queue's own (``kie.generate``, ``kie.download``) expire with ``KIE_JOB_RETENTION``.  The checking task's own
arrival lists are deleted by the bench before the retention wait: they are the bench's, not the product's.
Exit 1 if a job-store key pattern, or kie-queue's result keys, has more keys after the retention than at baseline.
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

from . import support
from .chaos.deployment import ChaosDeployment
from .chaos.servers import RedisServer, children, rss_kib

HEXRUN = re.compile(r"[0-9a-f]{6,}(?:-[0-9a-f]{4,})*")


def pattern(key: str) -> str:
    """``chaos-1a2b3c:job:1a2b3c-soak-00042:done`` -> ``chaos-*:job:*-soak-*:done``."""
    return ":".join(re.sub(r"\d+", "*", HEXRUN.sub("*", seg)) for seg in key.split(":"))


def key_census(client, names: bool = False) -> dict[str, list[int]]:
    """pattern -> [count, count without TTL, bytes (MEMORY USAGE)].  ``names`` (the result backend): a
    ``celery-task-meta-*`` key's pattern also names the task that stored it (``result_extended`` puts the name
    in the result; a result stored without it shows ``?``)."""
    out: dict[str, list[int]] = {}
    keys = list(client.scan_iter(count=2000))
    pipe = client.pipeline(transaction=False)
    for k in keys:
        pipe.ttl(k)
        pipe.memory_usage(k)
        if names and k.startswith(b"celery-task-meta-"):
            pipe.get(k)
        elif names:
            pipe.echo(b"")
    step = 3 if names else 2
    answers = pipe.execute()
    for i, k in enumerate(keys):
        ttl, size = answers[step * i], answers[step * i + 1] or 0
        key = pattern(k.decode())
        if names and k.startswith(b"celery-task-meta-"):
            key += f" ({_task_name(answers[step * i + 2])})"
        entry = out.setdefault(key, [0, 0, 0])
        entry[0] += 1
        entry[1] += ttl == -1
        entry[2] += size
    return out


def _task_name(raw) -> str:
    try:
        return json.loads(raw).get("name") or "?"
    except (TypeError, ValueError, AttributeError):
        return "?"


def db_bytes(snap: dict, db: int) -> int:
    return sum(v[2] for v in snap["keys"][db].values())


def _kib(pid: int, path: str, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _memory(dep, names: list[str]) -> dict:
    """Per process name: ``rss`` (main + children, KiB: what ``ps`` adds up, pages shared after the fork
    counted in each), ``pss`` (the same processes' proportional set size, shared pages divided among them,
    so it adds up) and ``main`` (the main process's own RSS: a worker's consumer and pump, gunicorn's master)."""
    out = {"rss": {}, "pss": {}, "main": {}}
    for name in names:
        proc = dep.stack.running(name)
        pids = [proc.pid, *children(proc.pid)] if proc else []
        out["rss"][name] = rss_kib(proc.pid) if proc else 0
        out["pss"][name] = sum(_kib(p, "smaps_rollup", "Pss") for p in pids)
        out["main"][name] = _kib(proc.pid, "status", "VmRSS") if proc else 0
    return out


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


def soak(jobs: int, *, retention: float, workers: int, concurrency: int, batches: int = 1, warmup: int = 50) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="kq-soak-"))
    servers = Stack(workdir / "servers")
    dep = None
    try:
        redis = RedisServer(servers)
        url = redis.start()
        dep = ChaosDeployment(workdir / "deploy", redis_url=url, broker_url=url[:-1] + "1",
                              sim_args=("--duration", "0", "--small-images", "--rate-limit", "off"),
                              extra_env={"KIE_JOB_RETENTION": str(retention), **support.NO_LIMITS,
                                         "CELERY_RESULT_BACKEND": url[:-1] + "2"})
        dep.start(workers=workers, concurrency=concurrency)
        store = redis.client(0)
        dbs = {0: store, 1: redis.client(1), 2: redis.client(2)}
        procs = [*dep.workers, "web"]

        def census() -> dict:
            return {d: key_census(c, names=d == 2) for d, c in dbs.items()}

        _wait_arrived(store, dep, _send(dep, warmup, "warm"), 300)
        _drop_arrivals(store, dep)
        time.sleep(retention + 5)
        base = {"mem": redis.used_memory(), "keys": census(), **_memory(dep, procs)}
        t0, took, done = time.time(), 0.0, []
        for n in range(batches):
            ids = _send(dep, jobs, f"soak{n}" if batches > 1 else "soak")
            took += _wait_arrived(store, dep, ids, max(600, jobs / 5))
            # RSS right after each batch; the key census only after the last (the earlier batches' jobs have
            # expired by then, or are about to: it would count a moving target)
            done.append({"jobs": jobs * (n + 1), "mem": redis.used_memory(), **_memory(dep, procs)})
            if n < batches - 1:
                _drop_arrivals(store, dep)
        sent_s = time.time() - t0
        after = {**done[-1], "keys": census()}
        _drop_arrivals(store, dep)
        time.sleep(retention + 5)
        end = {"mem": redis.used_memory(), "keys": census(), **_memory(dep, procs)}
        total = jobs * batches
        return {"jobs": total, "batches": batches, "retention_s": retention, "seconds": round(took, 1),
                "jobs_per_s": round(total / sent_s, 1), "baseline": base, "per_batch": done, "after_batch": after,
                "after_retention": end}
    finally:
        if dep is not None:
            dep.stop()
        servers.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def table(r: dict) -> str:
    b, a, e = r["baseline"], r["after_batch"], r["after_retention"]
    batches = r.get("per_batch") or [a]

    def mib(snap: dict, name: str) -> str:
        if name not in snap.get("rss", {}):
            return ""
        text = f"{snap['rss'][name] / 1024:.1f}"
        if "pss" in snap:
            text += f" / {snap['pss'][name] / 1024:.1f} / {snap['main'][name] / 1024:.1f}"
        return text

    head = ["start", *(f"after {s['jobs']} jobs" for s in batches), "after retention"]
    lines = [f"{r['jobs']} jobs in {r['seconds']} s ({r['jobs_per_s']}/s), KIE_JOB_RETENTION={r['retention_s']:g} s", "",
             "Memory per process (MiB): RSS of main + children / their PSS / the main process's RSS", "",
             "| process | " + " | ".join(head) + " |", "| --- " * (len(head) + 1) + "|"]
    for name in b["rss"]:
        lines.append(f"| {name} | " + " | ".join(mib(s, name) for s in (b, *batches, e)) + " |")
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
    """Job-store patterns (db 0), and result keys kie-queue's tasks stored (db 2, ``kie.*``), with more keys
    after retention than at baseline."""
    out = []
    for db in (0, 2):
        b, e = r["baseline"]["keys"][db], r["after_retention"]["keys"][db]
        out += [p for p, (n, _, _) in e.items() if n > b.get(p, [0, 0, 0])[0] and (db == 0 or "(kie." in p)]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=5000)
    p.add_argument("--retention", type=float, default=20.0, help="KIE_JOB_RETENTION, seconds")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--batches", type=int, default=1, help="send --jobs this many times, memory after each")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    r = soak(a.jobs, retention=a.retention, workers=a.workers, concurrency=a.concurrency, batches=a.batches)
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
        print("key sets that grew: " + ", ".join(grow), file=sys.stderr)
    return 1 if grow else 0


if __name__ == "__main__":
    raise SystemExit(main())
