"""One chaos run: servers up, deployment up, chains sent, the fault plan played, the outcome read.

:func:`chaos_run` returns the run's row (see ``bench.chaos.report``).  Everything it starts (processes,
namespaces, the RabbitMQ vhost) is stopped in ``finally``, whatever happened.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import requests

from worker.celery_conf import VISIBILITY_TIMEOUT
from worker.cli.stack import Stack

from . import report, schedule
from .deployment import ChaosDeployment
from .servers import RabbitVhost, RedisServer, SentinelGroup, connect

STATE_RANK = {"accepted": 0, "submitting": 1, "submitted": 2, "succeeded": 3, "failed": 3, "timed_out": 3}


@dataclass
class Options:
    jobs: int = 300
    broker: str = "redis"           # redis | amqp
    hosts: str | None = None        # None | "netns"
    failover: bool = False
    min_replicas: int = 0           # KIE_REDIS_MIN_REPLICAS for the failover run
    seed: int = 1
    workers: int = 4
    concurrency: int = 2
    quick: bool = False             # shorter faults (the CI version)
    deadline: float | None = None   # seconds after the first job was sent
    appendfsync: str = "everysec"
    rate: str = "20/10s"
    keep: bool = False              # keep the work directory (logs)
    settle: float = 10.0            # seconds to watch after the last job was terminal
    workdir: Path | None = None     # where logs go (default: a temporary directory, removed unless keep)
    secrets: dict | None = None     # api_key, hmac_key, webhook_secret (default: new random ones)
    kill: str = "worker"            # "worker": SIGKILL a whole worker and start another; "child": one pool process


def sentinel_supported() -> bool:
    """Whether the product accepts ``sentinel://`` URLs with ``KIE_SENTINEL_MASTER``."""
    from worker.settings import Settings
    try:
        Settings.from_env({"REDIS_URL": "sentinel://127.0.0.1:1/0", "KIE_SENTINEL_MASTER": "m"})
    except Exception:
        return False
    return True


def chaos_run(o: Options, label: str | None = None) -> dict:
    workdir = Path(o.workdir) if o.workdir else Path(tempfile.mkdtemp(prefix="kq-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    servers = Stack(workdir / "servers")
    stack_cm = contextlib.ExitStack()
    dep = None
    try:
        hosts = None
        host_ip = "127.0.0.1"
        if o.hosts == "netns":
            from .netns import Hosts
            hosts = Hosts(o.workers + 1)
            stack_cm.callback(hosts.close)
            hosts.setup()
            host_ip = hosts.host_ip
        group = redis = None
        env = _env(o)
        if o.failover:
            group = SentinelGroup(servers, appendfsync=o.appendfsync)
            url = group.start()
            store_url = broker_url = url
            env["KIE_SENTINEL_MASTER"] = group.master
            if o.min_replicas:
                env["KIE_REDIS_MIN_REPLICAS"] = str(o.min_replicas)
        else:
            redis = RedisServer(servers, host=host_ip, appendfsync=o.appendfsync)
            store_url = redis.start()
            broker_url = store_url[:-1] + "1"
        if o.broker == "amqp":
            vhost = stack_cm.enter_context(RabbitVhost(f"kq-chaos-{uuid.uuid4().hex[:8]}"))
            broker_url = vhost.url
        dep = ChaosDeployment(workdir / "deploy", redis_url=store_url, broker_url=broker_url, host=host_ip,
                              sim_args=("--duration", "3", "--duration-jitter", "2", "--small-images",
                                        "--rate-limit", o.rate, "--seed", str(o.seed)),
                              extra_env=env, hosts=hosts, secrets_=o.secrets)
        dep.start(workers=o.workers, concurrency=o.concurrency)
        client = connect(store_url, env.get("KIE_SENTINEL_MASTER"))
        return _play(o, dep, client, redis, group, hosts, label or _label(o))
    finally:
        if dep is not None:
            dep.stop()
        servers.stop()
        stack_cm.close()
        if not o.keep and not o.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"logs kept in {workdir}")


def _label(o: Options) -> str:
    parts = [o.broker]
    if o.hosts:
        parts.append(o.hosts)
    if o.failover:
        parts.append(f"failover min_replicas={o.min_replicas}")
    return " ".join(parts) + f" seed={o.seed}"


def _env(o: Options) -> dict:
    grace = "6" if o.quick else "15"
    return {"KIE_CALLBACK_GRACE": grace, "KIE_UNKNOWN_OUTCOME_GRACE": grace, "KIE_HTTP_TIMEOUT": "5",
            "KIE_RATE_LIMIT": o.rate}


def _play(o, dep, client, redis, group, hosts, label) -> dict:
    rnd = random.Random(o.seed)
    late = 12.0 if o.quick else 30.0
    knobs = schedule.sim_knobs(late_delay=late, scale=2.0 if o.quick else 1.0)
    requests.post(dep.sim_url + "/_sim/config", json=knobs, timeout=10).raise_for_status()
    views = []
    for i in range(o.jobs):
        expect_fail, link_error = i % 10 in (0, 3), i % 5 == 0
        prompt = f"chaos {dep.name} {i}" + (" [sim:fail]" if expect_fail else "")
        views.append(report.JobView(f"{dep.name}-{i:04d}", prompt, link_error, expect_fail))
    started = time.time()
    for v in views:
        dep.chain(v.job_id, v.prompt, link_error=v.link_error).apply_async()
    window = max(30.0, o.jobs / _rate_per_s(o.rate))
    plan = schedule.plan(o.seed, window=window, kill_every=6.0 if o.quick else 4.0,
                         webhook_down=(5, 10) if o.quick else (20, 60), failover=o.failover,
                         partition=30.0 if hosts else None)
    deadline = o.deadline or (window + (VISIBILITY_TIMEOUT + 240 if o.broker == "redis" else 300))
    faults: Counter = Counter()
    extra: dict = {"broker": o.broker, "seed": o.seed, "workers": o.workers, "appendfsync": o.appendfsync,
                   "kill": o.kill}
    partitioned = None
    done_at = None
    while True:
        now = time.time() - started
        while plan and plan[0].at <= now:
            f = plan.pop(0)
            faults[_apply(f, dep, redis, group, hosts, rnd, extra, client, views, partitioned)] += 1
            if f.kind == "partition":
                partitioned = extra["partitioned_worker"]
        _retrying(lambda: report.collect(client, dep.prefix, views, _sim_prompts(dep)))
        if all(v.terminal for v in views) and not plan and time.time() >= _redeliveries_due(o, extra):
            done_at = done_at or time.time()
            if time.time() - done_at >= o.settle:
                break
        else:
            done_at = None
        if now > deadline:
            break
        time.sleep(1.0)
    stats = _sim_stats(dep)
    faults.update({"sim_" + k: v for k, v in stats.get("faults", {}).items()})
    faults["sim_callbacks_dropped"] = len(stats.get("callbacks_lost", []))
    for code, n in stats.get("bursts", {}).get("served", {}).items():
        faults[f"sim_burst_{code}_served"] = n
    if partitioned:
        extra["partitioned_worker_log_after_heal"] = _log_after(dep, partitioned, extra.get("healed_at"))
        at_heal = extra.pop("_finished_at_heal", {})
        by_id = {v.job_id: v for v in views}
        extra["finished_before_heal"] = len(at_heal)
        extra["changed_after_heal"] = sorted(j for j, fp in at_heal.items() if _fingerprint(by_id[j]) != fp)
    extra.pop("_last_worker_kill", None)
    logs = {w: dep.stack.log_of(w) for w in (f"w{i}" for i in range(1, dep._next_worker))}
    doubles = report.explain_doubles(views, logs, extra.pop("_killed", set()))
    r = report.row(label, views, started=started, faults=faults, extra=extra, doubles_explained=doubles)
    r["ok"] = r["ok"] and not extra.get("changed_after_heal")
    return r


def _retrying(fn, timeout: float = 60.0):
    """``fn()``, again while Redis is unreachable (a restart, a failover still settling), up to ``timeout``."""
    import redis as redis_lib
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (redis_lib.RedisError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _redeliveries_due(o, extra) -> float:
    """On the Redis broker, a message a SIGKILLed worker held comes back after the visibility timeout
    (plus kombu's restore scan): watch that long after the last whole-worker kill, so a step
    re-delivered then (and a second continuation it may cause) is seen."""
    last = extra.get("_last_worker_kill")
    if o.broker != "redis" or last is None:
        return 0.0
    return last + VISIBILITY_TIMEOUT + 120


def _fingerprint(v) -> tuple:
    """What a late write to a finished job would change: its state, outcome, tasks and arrivals."""
    rec = v.record
    return (rec.get("state"), rec.get("finished_at"), rec.get("outcome"), rec.get("task_ids"), len(v.arrivals),
            len(v.errbacks))


def _apply(f, dep, redis, group, hosts, rnd, extra, client, views, partitioned) -> str:
    if f.kind == "kill_worker":
        candidates = [w for w in dep.workers if w != partitioned]
        if not candidates:
            return "kill_worker skipped"
        victim = rnd.choice(candidates)
        if extra["kill"] == "child":
            return "pool process SIGKILL" if dep.kill_pool_process(victim, rnd) else "kill_worker skipped"
        dep.kill_worker(victim)
        extra.setdefault("_killed", set()).add(victim)
        extra["_last_worker_kill"] = time.time()
        dep.add_worker(wait=False)
        return "worker SIGKILL"
    if f.kind == "webhook_down":
        dep.stop_webhook()
        extra["webhook_down_at"] = time.time()
        return "webhook stop"
    if f.kind == "webhook_up":
        dep.start_webhook()
        extra["webhook_down_s"] = round(time.time() - extra.pop("webhook_down_at"), 1)
        return "webhook start"
    if f.kind == "redis_restart":
        redis.restart(kill=f.arg == "SIGKILL")
        return f"redis restart ({f.arg})"
    if f.kind == "burst":
        code, count = f.arg
        requests.post(dep.sim_url + "/_sim/burst", json={"code": code, "count": count}, timeout=10).raise_for_status()
        return f"burst {code}x{count}"
    if f.kind == "partition":
        victim = dep.workers[0]
        hosts.cut(victim)
        extra["partitioned_worker"] = victim
        return "partition 30 s"
    if f.kind == "heal":
        _retrying(lambda: report.collect(client, dep.prefix, views, _sim_prompts(dep)))
        extra["_finished_at_heal"] = {v.job_id: _fingerprint(v) for v in views if v.terminal}
        hosts.restore(extra["partitioned_worker"])
        extra["healed_at"] = time.time()
        return "partition healed"
    if f.kind == "kill_primary":
        before = snapshot(client, dep.prefix, views)
        group.kill_primary()
        extra["promotion_s"] = round(group.wait_promoted(), 1)
        after = _retrying(lambda: snapshot(client, dep.prefix, views))
        extra["transitions_lost_in_failover"] = sum(1 for j, b in before.items() if after.get(j, (-1, 0, 0)) < b)
        extra["jobs_seen_before_failover"] = len(before)
        return "primary SIGKILL"
    raise ValueError(f"unknown fault kind {f.kind!r}")


def snapshot(client, prefix: str, views) -> dict:
    """Per job: (state rank, task ids, resumed waiters), the progress a failover must not undo."""
    pipe = client.pipeline(transaction=False)
    for v in views:
        pipe.hget(f"{prefix}:job:{v.job_id}", "state")
        pipe.hget(f"{prefix}:job:{v.job_id}", "task_ids")
        pipe.scard(f"{prefix}:job:{v.job_id}:done")
    out = pipe.execute()
    snap = {}
    for k, v in enumerate(views):
        state, tids, done = out[3 * k:3 * k + 3]
        if state is not None:
            snap[v.job_id] = (STATE_RANK.get(state.decode(), 0), len((tids or b"").split()), int(done))
    return snap


def _rate_per_s(rate: str) -> float:
    from worker.settings import RateLimit
    r = RateLimit.parse(rate)
    return r.limit / r.window


def _sim_stats(dep) -> dict:
    try:
        return requests.get(dep.sim_url + "/_sim/stats", timeout=10).json()
    except requests.RequestException:
        return {}


def _sim_prompts(dep) -> dict:
    return _sim_stats(dep).get("prompts", {})


def _log_after(dep, worker: str, since: float | None) -> dict:
    """What the partitioned worker logged after its link came back: lines by level, and lines that
    name one of the run's jobs (its late work)."""
    counts = Counter()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since or 0))
    for line in dep.stack.log_of(worker).splitlines():
        if not line.startswith("[") or line[1:20] < stamp:
            continue
        level = line.split(": ", 1)[1].split("/", 1)[0] if ": " in line else "?"
        counts[level] += 1
        if f"job {dep.name}-" in line:
            counts["naming a job"] += 1
    return dict(counts)
