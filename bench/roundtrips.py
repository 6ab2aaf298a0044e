"""Measure ``roundtrips``: Redis commands per job on the happy path, counted with ``INFO commandstats``.

Two private ``redis-server``s: one is the job store and limiter (``REDIS_URL``), the other the
Celery broker and result backend, so the project's own commands and Celery's are counted apart
(a deployment may well use one Redis for both: the total is then their sum).  The real stack runs
on them (simulator without a rate limit, 1-s tasks, signed callbacks; the webhook, one worker of 4
processes, beat); the bench's own probes write to the machine's Redis and are not counted.  The
background rate (beat's sweeps, the workers' due-queue pumps, Celery's broker polling, the bench's
own polling) is measured over ``IDLE_S`` seconds first and subtracted for the batch's duration.
Then ``N`` chains ``kie.generate | bench.mark`` go through, and the counts over N are the figures.
For comparison, ``N`` plain Celery chains ``bench.noop | bench.mark`` on the same worker, counted
the same way.  Full: 60 jobs; quick: 20.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import Counter

import redis

from . import support
from .report import Row, Target
from .support import Context, Stack, free_port

NAME = "roundtrips"
IDLE_S = 5.0


_MONITOR_LINE = re.compile(rb'^[\d.]+ \[\d+ ([^\]]*)\] "([^"]+)"')


class CommandTap:
    """Counts the commands clients send to one Redis (``MONITOR``), apart from those run inside Lua scripts.

    ``INFO commandstats`` counts a script's inner ``redis.call``s as well; MONITOR names their source
    ``lua``, so the commands a client sent (one per round trip, or per command of a pipeline) can be
    counted alone.  :meth:`take` returns the counts since the last call and starts afresh.
    """

    def __init__(self, url: str):
        self._client = redis.Redis.from_url(url)
        self._counts: Counter = Counter()
        self._lock = threading.Lock()
        self._stop = False
        self._monitor = self._client.monitor().__enter__()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        conn = self._monitor.connection
        while not self._stop:
            try:
                line = conn.read_response()
            except (redis.RedisError, OSError, ValueError):
                return
            if not isinstance(line, bytes):
                continue
            m = _MONITOR_LINE.match(line)
            if m:
                source = "lua" if m.group(1) == b"lua" else "client"
                with self._lock:
                    self._counts[(source, m.group(2).decode().lower())] += 1

    def take(self) -> Counter:
        with self._lock:
            out, self._counts = self._counts, Counter()
        return out

    def close(self):
        self._stop = True
        self._client.ping()      # a last line for the reader to wake up on
        self._thread.join(timeout=5)
        try:
            self._monitor.connection.disconnect()
        finally:
            self._client.close()


def _client_only(counts: Counter) -> dict[str, int]:
    return {cmd: n for (source, cmd), n in counts.items() if source == "client"}


def _stats(r: redis.Redis) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in r.info("commandstats").items()}


def _reset(*clients):
    for c in clients:
        c.config_resetstat()


def _minus_idle(counts: dict, idle: dict, idle_s: float, elapsed: float, n: int) -> dict[str, float]:
    out = {}
    for cmd in set(counts) | set(idle):
        v = (counts.get(cmd, 0) - idle.get(cmd, 0) * elapsed / idle_s) / n
        if abs(v) >= 0.05:
            out[cmd] = round(v, 2)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _counted_batch(store_r, broker_r, mark_r, mark_key, sigs, n, taps) -> tuple[dict, dict, float, list]:
    mark_r.delete(mark_key)
    _reset(store_r, broker_r)
    for tap in taps:
        tap.take()
    t0 = time.monotonic()
    for s in sigs:
        s.apply_async()
    support.wait_count(lambda: mark_r.hlen(mark_key), n, 120, "roundtrips batch", interval=0.25)
    elapsed = time.monotonic() - t0
    return _stats(store_r), _stats(broker_r), elapsed, [_client_only(tap.take()) for tap in taps]


def run(ctx: Context):
    n = 20 if ctx.quick else 60
    prefix, queue = support.names("rt")
    workdir = ctx.workdir("roundtrips")
    port = free_port()
    mark_key = f"{prefix}:bench:marks"
    mark_r = redis.Redis.from_url(ctx.redis_url)
    with Stack(workdir, support.base_env()) as stack:
        store_url = support.private_redis(stack, "redis-store")
        broker_url = support.private_redis(stack, "redis-broker")
        stack.env.update(support.kq_env(store_url, prefix=prefix, queue=queue, workdir=workdir, broker_url=broker_url,
                                        callbacks_port=port, BENCH_MARK_KEY=mark_key, **support.NO_LIMITS))
        stack.env["BENCH_REDIS"] = ctx.redis_url
        support.start_deployment(stack, queue, port, "--duration", "1", "--rate-limit", "off",
                                 "--small-images", "--hmac-key", support.HMAC_KEY)
        store_r, broker_r = redis.Redis.from_url(store_url), redis.Redis.from_url(broker_url)
        taps = [CommandTap(store_url), CommandTap(broker_url)]
        p = support.producer(broker_url, queue)
        mark = p.signature("bench.mark", queue=queue)
        try:
            # warm-up: first connections, script loading
            _counted_batch(store_r, broker_r, mark_r, mark_key,
                           [p.signature("kie.generate", kwargs={"input": {"prompt": f"warm {prefix}"}}, queue=queue)
                            | mark], 1, taps)
            _reset(store_r, broker_r)
            for tap in taps:
                tap.take()
            t0 = time.monotonic()
            while time.monotonic() - t0 < IDLE_S:
                mark_r.hlen(mark_key)     # the same polling as during a batch (on the uncounted Redis)
                time.sleep(0.25)
            idle_s = time.monotonic() - t0
            idle_store, idle_broker = _stats(store_r), _stats(broker_r)
            idle_rt = [_client_only(tap.take()) for tap in taps]
            s_counts, b_counts, elapsed, rts = _counted_batch(
                store_r, broker_r, mark_r, mark_key,
                [p.signature("kie.generate", kwargs={"input": {"prompt": f"rt {prefix} {i}"}}, queue=queue) | mark
                 for i in range(n)], n, taps)
            bs_counts, bb_counts, b_elapsed, b_rts = _counted_batch(
                store_r, broker_r, mark_r, mark_key,
                [p.signature("bench.noop", queue=queue) | mark.clone(kwargs={"sent": f"b{i}"}) for i in range(n)],
                n, taps)
        finally:
            for tap in taps:
                tap.close()
            store_r.close()
            broker_r.close()
    mark_r.delete(mark_key)
    mark_r.close()
    store = _minus_idle(s_counts, idle_store, idle_s, elapsed, n)
    broker = _minus_idle(b_counts, idle_broker, idle_s, elapsed, n)
    base = _minus_idle(bb_counts, idle_broker, idle_s, b_elapsed, n)
    base_store = _minus_idle(bs_counts, idle_store, idle_s, b_elapsed, n)
    total_store, total_broker = sum(store.values()), sum(broker.values())
    total_base = sum(base.values()) + sum(base_store.values())
    rt_store = _minus_idle(rts[0], idle_rt[0], idle_s, elapsed, n)
    rt_broker = _minus_idle(rts[1], idle_rt[1], idle_s, elapsed, n)
    rt_base = _minus_idle(b_rts[1], idle_rt[1], idle_s, b_elapsed, n)
    idle_rate = {"store": round(sum(idle_store.values()) / idle_s, 1), "broker": round(sum(idle_broker.values()) / idle_s, 1)}
    note = f"{n} jobs; background {idle_rate['store']}/s (store) and {idle_rate['broker']}/s (broker) subtracted"
    rows = [
        Row(NAME, "Redis round trips per job: job store + limiter", sum(rt_store.values()), None, "",
            Target("figure", "<=", 30),
            note=note + "; commands sent by clients (MONITOR), not those inside scripts",
            details={"store round trips": rt_store, "broker round trips": rt_broker,
                     "baseline broker round trips": rt_base, "store commands (commandstats)": store,
                     "broker commands (commandstats)": broker, "baseline broker commands": base,
                     "idle per s": idle_rate, "batch_s": round(elapsed, 1)}),
        Row(NAME, "Redis round trips per job: Celery broker + results", sum(rt_broker.values()), sum(rt_base.values()),
            "plain Celery chain noop | mark", None, note="generate, kie.complete and the resumed chain's messages"),
        Row(NAME, "Redis commands per job, scripts' inner calls too (commandstats)", total_store + total_broker,
            total_base, "plain Celery chain noop | mark", None, note="store + broker"),
    ]
    return rows, None


def plot(data, plots_dir):
    return []


if __name__ == "__main__":
    from .runner import main
    sys.exit(main([NAME, *sys.argv[1:]]))
