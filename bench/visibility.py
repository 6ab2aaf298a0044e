"""Time to recover the ``kie.generate`` messages a SIGKILLed worker held, per broker and prefetch setting.

    .venv/bin/python bench/visibility.py [--jobs 8] [--concurrency 2] [--deadline 90] [--no-rabbitmq]

Per scenario: a simulator whose ``createTask`` answers after ``--create-delay`` s (so a worker is busy
inside its creates), one worker with ``--concurrency`` pool processes, ``--jobs`` ``kie.generate``
messages sent at once.  When every pool process is inside a create, the bench notes how many messages
the broker counts as delivered and unacknowledged, SIGKILLs the whole worker, starts a fresh one and
times, from the kill, when each job's record appears in the job store (a message still in the queue
is taken at once; one the dead worker held comes back when the broker gives it back: on Redis after
the visibility timeout, on RabbitMQ when the connection drops).  Jobs whose create was already in
flight are carried on by the job store and are not what this measures.  The baseline row is the
fresh worker's start-up time (the least any recovery can take).

``--eta-jobs`` of the messages are sent first with a ``--countdown`` (as a producer may): a worker takes
such messages ahead of time and holds them unacknowledged until they are due, whatever its prefetch.

Scenarios: Redis with acks late and prefetch multiplier 1 only; the same plus ``worker_disable_prefetch``
(Celery >= 5.6, Redis only: the project's settings); Celery's default prefetch multiplier 4 on Redis,
without and with ``worker_disable_prefetch``; the project's settings on RabbitMQ (skipped with ``--no-rabbitmq`` or
when nothing answers at 127.0.0.1:5672).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis  # noqa: E402
import requests  # noqa: E402
from celery import Celery  # noqa: E402

from worker.cli.stack import Stack, wait_for  # noqa: E402

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/4")
AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
API_KEY = "bench-visibility-key"

PREFETCHING = "bench.visibility:prefetching_app"
SCENARIOS = {   # name -> (broker, celery -A, extra worker flags)
    "redis, prefetch 1 + acks late": ("redis", PREFETCHING, []),
    "redis, + worker_disable_prefetch (project)": ("redis", "worker", []),
    "redis, prefetch 4 (Celery default)": ("redis", PREFETCHING, ["--prefetch-multiplier", "4"]),
    "redis, prefetch 4 + worker_disable_prefetch": ("redis", "worker", ["--prefetch-multiplier", "4"]),
    "rabbitmq, prefetch 1 + acks late (project)": ("amqp", "worker", []),
}


def __getattr__(name: str):
    """``prefetching_app``: the project's worker app with ``worker_disable_prefetch`` turned off (built on
    first access, by ``celery -A bench.visibility:prefetching_app`` in a scenario's worker)."""
    if name != "prefetching_app":
        raise AttributeError(name)
    from worker.tasks import app
    app.conf.worker_disable_prefetch = False
    return app


def amqp_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


def unacked(r, queue: str) -> int:
    """Messages of ``queue`` that kombu's Redis transport counts as delivered and not acknowledged."""
    n = 0
    for raw in r.hvals("unacked"):
        try:
            _, _, routing_key = json.loads(raw)
        except ValueError:
            continue
        n += routing_key == queue
    return n


def run(name: str, broker: str, app: str, flags: list[str], opts) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="kie-vis-"))
    tag = secrets.token_hex(4)
    prefix, queue = f"bench-vis-{tag}", f"bench-vis-{tag}"
    broker_url = REDIS_URL if broker == "redis" else AMQP_URL
    r = redis.Redis.from_url(REDIS_URL)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIE_", "CELERY_"))}
    env.update({"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "REDIS_URL": REDIS_URL,
                "CELERY_BROKER_URL": broker_url, "CELERY_RESULT_BACKEND": REDIS_URL, "KIE_API_KEY": API_KEY,
                "KIE_KEY_PREFIX": prefix, "KIE_QUEUE": queue, "KIE_RATE_LIMIT": "1000/1s",
                "KIE_HTTP_TIMEOUT": str(opts.create_delay + 30)})
    celery_bin = str(Path(sys.executable).with_name("celery"))

    def worker(wname: str):
        argv = [celery_bin, "-A", app, "worker", "--loglevel", "INFO", "--concurrency", str(opts.concurrency),
                "--hostname", f"{wname}-{tag}@%h", "--without-gossip", "--without-mingle", *flags]
        proc, log = stack.spawn(wname, argv)
        wait_for(lambda: "ready." in log.read_text(errors="replace"), 60, wname, interval=0.05, proc=proc,
                 log_path=log)
        return proc

    with Stack(workdir, env) as stack:
        sim = stack.start_sim("--api-key", API_KEY, "--duration", "1", "--small-images")
        stack.env["KIE_BASE_URL"] = sim
        requests.post(sim + "/_sim/config", json={"create_delay": opts.create_delay}, timeout=5).raise_for_status()
        w1 = worker("w1")
        producer = Celery(f"bench-vis-{tag}", set_as_current=False)
        producer.conf.update(broker_url=broker_url, result_backend=REDIS_URL, task_serializer="json",
                             accept_content=["json"], task_default_queue=queue)
        eta_jobs = [f"vis-{tag}-eta-{i}" for i in range(opts.eta_jobs)]
        jobs = [f"vis-{tag}-{i}" for i in range(opts.jobs)]
        for j in eta_jobs:      # sent with a countdown, as a producer may: a worker holds these until due
            producer.send_task("kie.generate", kwargs={"input": {"prompt": f"visibility {j}"}, "job_id": j},
                               queue=queue, countdown=opts.countdown)
        for j in jobs:
            producer.send_task("kie.generate", kwargs={"input": {"prompt": f"visibility {j}"}, "job_id": j},
                               queue=queue)
        jobs = eta_jobs + jobs

        def sending() -> list[str]:
            return [j for j in jobs if r.hexists(f"{prefix}:job:{j}", "sending_at")]
        wait_for(lambda: len(sending()) >= opts.concurrency, 60, "every pool process inside a create")
        in_flight = set(sending())
        held = unacked(r, queue) if broker == "redis" else None
        os.killpg(w1.pid, signal.SIGKILL)
        w1.wait(timeout=30)
        t_kill = time.monotonic()
        # the fresh worker's creates answer at once: what is timed is when each message reaches it
        requests.post(sim + "/_sim/config", json={"create_delay": 0}, timeout=5).raise_for_status()
        worker("w2")
        ready = time.monotonic() - t_kill
        recovered: dict[str, float] = {}
        deadline = t_kill + opts.deadline
        while time.monotonic() < deadline and len(recovered) < len(jobs) - len(in_flight):
            for j in jobs:
                if j not in in_flight and j not in recovered and r.exists(f"{prefix}:job:{j}"):
                    recovered[j] = time.monotonic() - t_kill
            time.sleep(0.05)   # polling interval of the measurement
        if broker == "amqp":
            with producer.connection_for_write() as conn:
                conn.default_channel.queue_delete(queue)
        producer.close()
    for key in r.scan_iter(f"{prefix}:*", count=1000):
        r.delete(key)
    def summary(group: list[str]) -> dict:
        waiting = [j for j in group if j not in in_flight]
        times = sorted(recovered[j] for j in waiting if j in recovered)
        return {"waiting": len(waiting), "back": len(times), "slowest_s": round(times[-1], 2) if times else None,
                "not_back": len(waiting) - len(times)}
    return {"scenario": name, "in_create_at_kill": len(in_flight), "unacked_at_kill": held,
            "fresh_worker_ready_s": round(ready, 2), "queued": summary(jobs[len(eta_jobs):]),
            "countdown": summary(eta_jobs), "deadline_s": opts.deadline}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--eta-jobs", type=int, default=2, help="jobs sent first, with a countdown")
    ap.add_argument("--countdown", type=float, default=5.0, help="their countdown, seconds")
    ap.add_argument("--create-delay", type=float, default=20.0, help="seconds the simulator holds each create")
    ap.add_argument("--deadline", type=float, default=90.0, help="seconds after the kill to wait for messages")
    ap.add_argument("--no-rabbitmq", action="store_true")
    ap.add_argument("--only", help="run only the scenarios whose name contains this text")
    ap.add_argument("--json")
    opts = ap.parse_args(argv)
    rows = []
    for name, (broker, app, flags) in SCENARIOS.items():
        if broker == "amqp" and (opts.no_rabbitmq or not amqp_up()):
            continue
        if opts.only and opts.only not in name:
            continue
        rows.append(run(name, broker, app, flags, opts))
        print(json.dumps(rows[-1]), flush=True)
    print()
    print(f"not back = not in the job store {opts.deadline:.0f} s after the kill")
    print(f"{'scenario':44} {'unacked':>7} {'w2 ready s':>10} {'queued: back / slowest s / not back':>36} "
          f"{'countdown: back / slowest s / not back':>40}")
    for row in rows:
        q, c = row["queued"], row["countdown"]
        print(f"{row['scenario']:44} {str(row['unacked_at_kill']):>7} {row['fresh_worker_ready_s']:>10} "
              f"{q['back']:>14} / {str(q['slowest_s']):>9} / {q['not_back']:>8} "
              f"{c['back']:>18} / {str(c['slowest_s']):>9} / {c['not_back']:>8}")
    if opts.json:
        Path(opts.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
