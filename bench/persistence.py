"""What each Redis persistence setting loses when redis-server is SIGKILLed, and what it costs.

    .venv/bin/python bench/persistence.py [--seconds 3] [--writers 4] [--json PATH]

For each setting it starts a private ``redis-server`` on a free loopback port with its own data
directory, runs ``--writers`` threads that each ``RPUSH`` numbered entries one acknowledged command at
a time (as the job store's transitions are: one acknowledged script each), SIGKILLs the server while
they write, restarts it on the same directory and counts what came back.  Printed per setting:
acknowledged writes per second (the first setting, no persistence, is the baseline), acknowledged
writes lost, and the same as seconds of writing.

A SIGKILL of the server is what a crash of Redis itself (OOM killer, ``kill -9``, a container
stopped hard) does.  With the append-only file the server has written every acknowledged command to
the file (the kernel's page cache) before answering, whatever ``appendfsync`` says, so a process
crash loses nothing; what ``appendfsync`` decides is what an OS crash or power loss loses, which
killing a process cannot show: ``everysec`` up to about one second of writes (Redis documents up
to two in the worst case), ``always`` nothing, at the throughput measured here.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from worker.cli.stack import free_port, wait_for  # noqa: E402

SETTINGS = {
    "no persistence (baseline)": ["--appendonly", "no", "--save", ""],
    "RDB snapshot every 1 s (save 1 1)": ["--appendonly", "no", "--save", "1 1"],
    "AOF, appendfsync no": ["--appendonly", "yes", "--appendfsync", "no", "--save", ""],
    "AOF, appendfsync everysec": ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""],
    "AOF, appendfsync always": ["--appendonly", "yes", "--appendfsync", "always", "--save", ""],
}


def start(binary: str, port: int, workdir: Path, args: list[str]) -> subprocess.Popen:
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    client = redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=0.5)

    def up():
        try:
            return client.ping()
        except redis.RedisError:
            return False
    wait_for(up, 30, "redis-server", proc=proc)
    return proc


def measure(binary: str, name: str, args: list[str], seconds: float, writers: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="kie-persist-"))
    port = free_port()
    proc = start(binary, port, workdir, args)
    acked = [0] * writers
    stop = threading.Event()

    def write(i: int) -> None:
        client = redis.Redis(port=port, socket_timeout=2)
        n = 0
        try:
            while not stop.is_set():
                client.rpush(f"seq:{i}", n)
                n += 1
                acked[i] = n
        except (redis.RedisError, OSError):
            return

    threads = [threading.Thread(target=write, args=(i,), daemon=True) for i in range(writers)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(seconds)             # the writers run for this long: the measured interval, not a wait for an event
    at_kill = list(acked)
    elapsed = time.monotonic() - t0
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    total_acked = sum(max(a, b) for a, b in zip(at_kill, acked))
    proc = start(binary, port, workdir, args)
    try:
        client = redis.Redis(port=port)
        kept = sum(client.llen(f"seq:{i}") for i in range(writers))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)
    rate = sum(at_kill) / elapsed
    lost = max(0, total_acked - kept)
    return {"setting": name, "writes_per_s": round(rate), "acked": total_acked, "kept": kept, "lost": lost,
            "lost_seconds": round(lost / rate, 3) if rate else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="writing time before the SIGKILL")
    ap.add_argument("--writers", type=int, default=4, help="concurrent writing clients")
    ap.add_argument("--json", help="also write the rows to this file")
    opts = ap.parse_args(argv)
    binary = shutil.which("redis-server")
    if not binary:
        print("redis-server is not installed", file=sys.stderr)
        return 2
    rows = [measure(binary, name, args, opts.seconds, opts.writers) for name, args in SETTINGS.items()]
    base = rows[0]["writes_per_s"] or 1
    print(f"{'setting':36} {'writes/s':>9} {'vs base':>8} {'acked':>8} {'lost':>8} {'lost s':>7}")
    for r in rows:
        print(f"{r['setting']:36} {r['writes_per_s']:>9} {r['writes_per_s'] / base:>8.2f} {r['acked']:>8} "
              f"{r['lost']:>8} {r['lost_seconds']:>7}")
    if opts.json:
        Path(opts.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
