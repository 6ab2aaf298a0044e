"""The container's entry point and health check, run as the processes a container would run.

No Docker daemon runs here, so the commands the image runs (``deploy/entrypoint.sh web|worker|beat``, which
execs the Procfile's line, and ``deploy/healthcheck.sh``) run as plain processes against the real Redis:
the web process answers ``/healthz`` and its health check passes; the worker answers the health check's
ping and, with ``REMAP_SIGTERM=SIGQUIT`` as the manifests set it, stops on SIGTERM by itself (the entry
point execs the worker, so the signal reaches Celery); beat starts; an unknown process type is refused.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from harness import REDIS_URL, ROOT, WEBHOOK_SECRET
from worker.celery_conf import SOFT_SHUTDOWN_S
from worker.cli.stack import Stack, free_port, wait_for

ENTRYPOINT = str(ROOT / "deploy" / "entrypoint.sh")
HEALTHCHECK = str(ROOT / "deploy" / "healthcheck.sh")


@pytest.fixture
def stack(tmp_path):
    name = secrets.token_hex(4)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIE_", "CELERY_"))}
    env.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "KIE_PROCFILE": str(ROOT / "Procfile"),
        "REDIS_URL": REDIS_URL,
        "KIE_KEY_PREFIX": f"t-{name}",
        "KIE_QUEUE": f"q-{name}",
        "KIE_API_KEY": "sk-unused-" + name,
        "KIE_CALLBACK_URL": "https://hooks.example",
        "KIE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "KIE_STORAGE_DIR": str(tmp_path / "output"),
    })
    with Stack(tmp_path, env) as s:
        yield s


def _health(stack, kind: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([HEALTHCHECK], env={**stack.env, "KIE_PROCESS": kind, **env}, capture_output=True,
                          text=True, timeout=60)


def test_web_runs_its_procfile_line_and_passes_its_health_check(stack):
    port = free_port()
    proc, log = stack.spawn("web", [ENTRYPOINT, "web"], env={"PORT": str(port)})
    url = f"http://127.0.0.1:{port}/healthz"
    wait_for(lambda: _answers(url), 60, "web /healthz", proc=proc, log_path=log)
    assert requests.get(url, timeout=5).json()["status"] == "ok"
    assert _health(stack, "web", PORT=str(port)).returncode == 0
    assert _health(stack, "web", PORT=str(free_port())).returncode != 0      # nothing there: unhealthy


def test_worker_answers_the_health_check_and_stops_softly_on_sigterm(stack):
    proc, log = stack.spawn("worker", [ENTRYPOINT, "worker", "--concurrency", "1"],
                            env={"REMAP_SIGTERM": "SIGQUIT"})
    wait_for(lambda: "ready." in log.read_text(errors="replace"), 60, "worker ready", proc=proc, log_path=log)
    checked = _health(stack, "worker")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    proc.send_signal(signal.SIGTERM)            # the entry point exec'd: this is Celery's own process
    assert proc.wait(timeout=SOFT_SHUTDOWN_S + 15) == 0
    text = log.read_text(errors="replace")
    assert "Cold shutdown" in text or "Soft Shutdown" in text or "Warm shutdown" in text


def test_beat_starts_from_its_procfile_line(stack):
    proc, log = stack.spawn("beat", [ENTRYPOINT, "beat"])
    wait_for(lambda: "beat: Starting" in log.read_text(errors="replace"), 60, "beat started", proc=proc,
             log_path=log)
    assert _health(stack, "beat").returncode == 0


def test_an_unknown_process_type_runs_as_a_command_and_a_missing_line_is_refused(stack, tmp_path):
    echoed = subprocess.run([ENTRYPOINT, "echo", "hello"], env=stack.env, capture_output=True, text=True,
                            timeout=30)
    assert echoed.stdout.strip() == "hello"
    empty = tmp_path / "Procfile"
    empty.write_text("web: true\n")
    refused = subprocess.run([ENTRYPOINT, "worker"], env={**stack.env, "KIE_PROCFILE": str(empty)},
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "no 'worker' line" in refused.stderr


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False
