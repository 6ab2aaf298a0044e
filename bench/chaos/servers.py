"""The chaos run's own servers: a private Redis with AOF that can be restarted, a Sentinel group,
and a RabbitMQ vhost per run.

``RedisServer`` keeps its port and data directory across restarts, so a restart (graceful: SHUTDOWN,
which writes the AOF; or SIGKILL, which loses what was not yet fsynced) comes back with whatever the
AOF holds.  ``SentinelGroup`` is a primary, a replica and three ``redis-server --sentinel`` on
loopback.  ``RabbitVhost`` creates ``/<name>`` with ``rabbitmqctl`` and deletes it on close.
Process management is ``worker.cli.stack.Stack``'s.
"""

from __future__ import annotations

import signal
import time
import subprocess
from pathlib import Path

import redis as redis_lib

from worker.cli.stack import Stack, free_port, redis_answers, wait_for


class RedisServer:
    """One ``redis-server`` under ``stack``, named ``name``, with AOF (``appendfsync`` as given)."""

    def __init__(self, stack: Stack, name: str = "redis", *, host: str = "127.0.0.1", appendfsync: str = "everysec",
                 extra: tuple[str, ...] = ()):
        self.stack, self.name, self.host = stack, name, host
        self.port = free_port()
        self.dir = stack.workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        # bound on a namespace bridge's address, Redis would refuse its own clients in protected mode
        unprotected = ("--protected-mode", "no") if host != "127.0.0.1" else ()
        self.args = ("--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", appendfsync, "--save", "",
                     *unprotected, *extra)
        self.url = f"redis://{host}:{self.port}/0"
        self.restarts: list[str] = []

    def start(self) -> str:
        self.stack.start_redis(self.name, self.port, self.args, host=self.host)
        return self.url

    def client(self, db: int = 0) -> redis_lib.Redis:
        return redis_lib.Redis(host=self.host, port=self.port, db=db, socket_timeout=5, socket_connect_timeout=2)

    def restart(self, *, kill: bool, down_s: float = 1.0) -> None:
        """Stop (SIGKILL, or SHUTDOWN so the AOF is complete), wait ``down_s``, start on the same port."""
        if kill:
            self.stack.kill(self.name, signal.SIGKILL)
        else:
            try:
                self.client().shutdown(nosave=False)
            except redis_lib.ConnectionError:
                pass   # the server closes the connection as it exits
            proc = self.stack.running(self.name)
            if proc is not None:
                proc.wait(timeout=30)
        self.restarts.append("SIGKILL" if kill else "graceful")
        wait_for(lambda: not redis_answers(self.url), 10, f"{self.name} down")
        time.sleep(down_s)
        self.start()

    def used_memory(self) -> int:
        return int(self.client().info("memory")["used_memory"])


class SentinelGroup:
    """A primary, one replica and three Sentinels watching ``master`` (quorum 2), all on loopback."""

    def __init__(self, stack: Stack, master: str = "chaos", *, appendfsync: str = "everysec"):
        self.stack, self.master = stack, master
        self.primary = RedisServer(stack, "redis-a", appendfsync=appendfsync)
        self.replica = RedisServer(stack, "redis-b", appendfsync=appendfsync,
                                   extra=("--replicaof", "127.0.0.1", str(self.primary.port)))
        self.sentinel_ports = [free_port() for _ in range(3)]

    @property
    def url(self) -> str:
        """kombu's form: every Sentinel, separated by ';' (database 0)."""
        return ";".join(f"sentinel://127.0.0.1:{p}" for p in self.sentinel_ports) + "/0"

    def start(self) -> str:
        self.primary.start()
        self.replica.start()
        wait_for(lambda: self.replica.client().info("replication").get("master_link_status") == "up", 30,
                 "replica in sync")
        for i, port in enumerate(self.sentinel_ports):
            conf = self.stack.workdir / f"sentinel-{i}.conf"
            conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {self.stack.workdir}\n"
                            f"sentinel monitor {self.master} 127.0.0.1 {self.primary.port} 2\n"
                            f"sentinel down-after-milliseconds {self.master} 2000\n"
                            f"sentinel failover-timeout {self.master} 10000\n"
                            f"sentinel parallel-syncs {self.master} 1\n")
            self.stack.spawn(f"sentinel-{i}", ["redis-server", str(conf), "--sentinel"])
        wait_for(lambda: all(self._sentinel_sees_replica(p) for p in self.sentinel_ports), 30, "sentinels ready")
        return self.url

    def _sentinel_sees_replica(self, port: int) -> bool:
        try:
            s = redis_lib.Redis(port=port, socket_timeout=1, socket_connect_timeout=1)
            return any(int(r["port"]) == self.replica.port for r in s.sentinel_slaves(self.master))
        except (redis_lib.RedisError, OSError):
            return False

    def current_primary(self) -> tuple[str, int] | None:
        for port in self.sentinel_ports:
            try:
                host, p = redis_lib.Redis(port=port, socket_timeout=1, decode_responses=True).sentinel_get_master_addr_by_name(
                    self.master)
                return host, int(p)
            except (redis_lib.RedisError, OSError, TypeError):
                continue
        return None

    def kill_primary(self) -> None:
        self.stack.kill(self.primary.name, signal.SIGKILL)

    def wait_promoted(self, timeout: float = 60) -> float:
        t0 = time.monotonic()
        wait_for(lambda: self.current_primary() == ("127.0.0.1", self.replica.port), timeout, "replica promoted",
                 interval=0.2)
        return time.monotonic() - t0


class RabbitVhost:
    """A vhost of its own on the local RabbitMQ (guest gets every permission on it)."""

    def __init__(self, name: str):
        self.name = name
        self.url = f"amqp://guest:guest@127.0.0.1:5672/{name}"

    def __enter__(self):
        _ctl("add_vhost", self.name)
        _ctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")
        return self

    def __exit__(self, *exc):
        _ctl("delete_vhost", self.name, check=False)


def _ctl(*args: str, check: bool = True) -> None:
    proc = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {args[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}")


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` plus its children (a worker and its pool), KiB."""
    total = 0
    for p in [pid, *children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def children(pid: int) -> list[int]:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    out = [int(k) for k in kids]
    for k in list(out):
        out.extend(children(k))
    return out



def connect(url: str, master: str | None = None) -> redis_lib.Redis:
    """A client for ``url`` (``redis://`` or the ``sentinel://`` form with ``master``), built the way the
    product builds its job store's client, so it follows a failover the same way."""
    from worker.settings import Settings
    from worker.store.connection import redis_client

    env = {"REDIS_URL": url, **({"KIE_SENTINEL_MASTER": master} if master else {})}
    return redis_client(Settings.from_env(env), socket_timeout=5, socket_connect_timeout=2)
