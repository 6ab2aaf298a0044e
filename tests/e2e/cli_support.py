"""Running the ``kie-queue`` console script as a user would, against a test deployment."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from harness import ROOT

KIE = str(Path(sys.executable).with_name("kie-queue"))


def clean_env(extra=None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIE_", "CELERY_"))}
    env.update({"PYTHONPATH": str(ROOT), **(extra or {})})
    return env


def kie(*args, env, timeout=120, cwd=None, input=None) -> subprocess.CompletedProcess:
    return subprocess.run([KIE, *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, input=input)


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
