"""The job store, the broker and the result backend through Redis Sentinel, across a failover.

A private primary, one replica and three Sentinels (``redis-server --sentinel``) on loopback ports;
``REDIS_URL``, ``CELERY_BROKER_URL`` and ``CELERY_RESULT_BACKEND`` are the ``sentinel://`` form with
``KIE_SENTINEL_MASTER``, and ``KIE_REDIS_MIN_REPLICAS=1`` makes the durable transitions wait for the
replica.  Jobs run; the primary is SIGKILLed; the Sentinels promote the replica; the jobs finished
before are all there (the replica had acknowledged them) and new jobs run on the promoted primary
with the same workers, webhook and beat.  With no replica left, every durable transition's WAIT
falls short and is counted.
"""

from __future__ import annotations

import shutil
import signal

import pytest
import redis
import redis.sentinel
from celery import Celery

from harness import Deployment, unique
from worker.store.metrics import Metrics
from worker.cli.stack import free_port, wait_for

MASTER = "kiefail"
pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed")


def up(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


class SentinelSet:
    """A primary, a replica and three Sentinels, started by one Stack."""

    def __init__(self, stack, workdir):
        self.stack, binary = stack, shutil.which("redis-server")
        self.primary, self.replica = free_port(), free_port()
        base = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]
        for name, port, extra in (("primary", self.primary, []),
                                  ("replica", self.replica, ["--replicaof", "127.0.0.1", str(self.primary)])):
            d = workdir / name
            d.mkdir()
            stack.spawn(name, [binary, "--port", str(port), "--dir", str(d), *base, *extra])
            wait_for(lambda p=port: up(p), 20, f"redis {name}")
        self.sentinels = []
        for i in range(3):
            port = free_port()
            conf = workdir / f"sentinel{i}.conf"
            conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
                            f"sentinel monitor {MASTER} 127.0.0.1 {self.primary} 2\n"
                            f"sentinel down-after-milliseconds {MASTER} 1000\n"
                            f"sentinel failover-timeout {MASTER} 10000\n"
                            f"sentinel parallel-syncs {MASTER} 1\n")
            stack.spawn(f"sentinel{i}", [binary, str(conf), "--sentinel"])
            wait_for(lambda p=port: up(p), 20, f"sentinel {i}")
            self.sentinels.append(port)
        wait_for(lambda: self.replica_in_sync(), 30, "replica in sync")
        wait_for(lambda: all(self.sentinels_know(p) for p in self.sentinels), 30, "sentinels see the replica")

    @property
    def url(self) -> str:
        return ";".join(f"sentinel://127.0.0.1:{p}" for p in self.sentinels) + "/0"

    def replica_in_sync(self) -> bool:
        info = redis.Redis(port=self.replica).info("replication")
        return info.get("master_link_status") == "up"

    def sentinels_know(self, port: int) -> bool:
        s = redis.Redis(port=port, decode_responses=True)
        return len(s.execute_command("SENTINEL", "REPLICAS", MASTER)) == 1

    def promoted(self) -> bool:
        """Every Sentinel names the replica as the master and reports it up (as redis-py checks it)."""
        try:
            found = redis.sentinel.Sentinel([("127.0.0.1", p) for p in self.sentinels]).discover_master(MASTER)
        except redis.sentinel.MasterNotFoundError:
            return False
        return found[1] == self.replica and all(
            int(redis.Redis(port=p, decode_responses=True).execute_command(
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)[1]) == self.replica for p in self.sentinels)


@pytest.fixture()
def dep(tmp_path):
    d = Deployment(tmp_path, callbacks=True, hmac=False)
    cluster = SentinelSet(d.stack, tmp_path)
    d.sentinels = cluster
    d.stack.env.update({"REDIS_URL": cluster.url, "CELERY_BROKER_URL": cluster.url,
                        "CELERY_RESULT_BACKEND": cluster.url, "KIE_SENTINEL_MASTER": MASTER,
                        "KIE_REDIS_MIN_REPLICAS": "1", "KIE_CALLBACK_GRACE": "3"})
    # the test reads the job store through Sentinel too
    d.redis = redis.sentinel.Sentinel([("127.0.0.1", p) for p in cluster.sentinels]).master_for(MASTER)
    try:
        d.start(workers=2, concurrency=2, user_worker=False)
        d.producer = Celery(f"sentinel-producer-{d.name}", set_as_current=False)
        d.producer.conf.update(broker_url=cluster.url, result_backend=cluster.url, task_serializer="json",
                               accept_content=["json"], task_default_queue=d.queue,
                               broker_transport_options={"master_name": MASTER},
                               result_backend_transport_options={"master_name": MASTER})
        yield d
    finally:
        d.stack.stop()


def counter(dep, name):
    """A counter of the deployment's metrics (``name`` without ``kie_`` and ``_total``)."""
    return int(Metrics(dep.redis, f"{dep.prefix}:metrics").snapshot().value(f"kie_{name}_total"))


def test_jobs_run_through_sentinel_and_survive_a_promoted_replica(dep):
    before = [dep.generate(unique(f"before failover {i}"), job_id=unique("pre").replace(" ", "-"))
              for i in range(3)]
    results = [s.apply_async() for s in before]
    done = [r.get(timeout=90) for r in results]
    assert [d["state"] for d in done] == ["success"] * 3
    assert counter(dep, "replica_wait_short") == 0          # the replica acknowledged every durable step

    dep.stack.kill("primary", signal.SIGKILL)
    wait_for(dep.sentinels.promoted, 60, "the replica promoted")

    # everything finished before the failover is on the promoted primary
    for d in done:
        assert dep.job(d["job_id"])["state"] == "succeeded"
    after = [dep.generate(unique(f"after failover {i}")).apply_async() for i in range(3)]
    assert [r.get(timeout=120)["state"] for r in after] == ["success"] * 3
    # no replica is left: each durable transition waited its second and said so
    assert counter(dep, "replica_wait_short") > 0
