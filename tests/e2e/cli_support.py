"""Running the ``kie-queue`` console script as a user would, against a test deployment."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import secretscan
from harness import ROOT

KIE = str(Path(sys.executable).with_name("kie-queue"))


def clean_env(extra=None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIE_", "CELERY_"))}
    env.update({"PYTHONPATH": str(ROOT), **(extra or {})})
    return env


def kie(*args, env, timeout=120, cwd=None, input=None) -> subprocess.CompletedProcess:
    """Run ``kie-queue ARGS`` (stdout and stderr captured); no secret or job token may be in either."""
    done = subprocess.run([KIE, *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, input=input)
    assert secretscan.in_text(done.stdout + done.stderr) == [], (args, done.stdout[-500:], done.stderr[-500:])
    return done


def idle_env(dep) -> tuple[dict, str]:
    """The deployment's environment with a queue that no worker consumes (to see what was enqueued)."""
    queue = f"idle-{secrets.token_hex(4)}"
    return {**dep.stack.env, "KIE_QUEUE": queue}, queue


def queued_messages(dep, queue: str) -> list[dict]:
    """The ``kie.generate`` messages waiting in ``queue`` (kombu's Redis list), decoded: headers and kwargs."""
    found = []
    for raw in dep.redis.lrange(queue, 0, -1):
        msg = json.loads(raw)
        args, kwargs, _ = json.loads(base64.b64decode(msg["body"]))
        found.append({"task": msg["headers"]["task"], "args": args, "kwargs": kwargs})
    return found


def one_line_error(done: subprocess.CompletedProcess) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def kie_tty(*args, env, timeout=120, columns=120) -> tuple[int, str]:
    """Run ``kie-queue ARGS`` with stdout on a pseudo-terminal (as in a shell); returns (exit code, output)."""
    import pty
    import select
    import time

    master, slave = pty.openpty()
    env = {**env, "COLUMNS": str(columns), "LINES": "40", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([KIE, *map(str, args)], env=env, stdout=slave, stderr=subprocess.PIPE, stdin=slave,
                            close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    code = proc.wait(timeout=10)
    out = b"".join(chunks).decode(errors="replace")
    assert secretscan.in_text(out) == []
    return code, out
