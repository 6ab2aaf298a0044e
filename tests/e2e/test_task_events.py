"""Task events with ``KIE_TASK_EVENTS=1`` (as deploy/ sets it beside Flower): a real worker (and beat, a
producer of the same configuration) emit them, so Flower and ``celery events`` see every task without ``-E``."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import requests

from worker.celery_conf import producer
from worker.cli.stack import free_port, wait_for
from worker.settings import Settings

DEPLOYMENT = {"callbacks": False, "extra_env": {"KIE_TASK_EVENTS": "1"}, "start": {"user_worker": False}}


def test_worker_and_beat_emit_task_events(dep):
    app = producer(Settings.from_env(dep.stack.env), "events-test")
    seen: list[dict] = []
    with app.connection_for_read() as conn:
        receiver = app.events.Receiver(conn, handlers={"*": seen.append})
        thread = threading.Thread(target=receiver.capture, kwargs={"limit": None, "timeout": 30, "wakeup": False},
                                  daemon=True)
        thread.start()
        try:
            def kinds(name):
                return {e["type"] for e in seen if e.get("name") == name
                        or any(x.get("name") == name for x in seen if x.get("uuid") == e.get("uuid"))}
            # beat sends kie.sweep every second: sent (beat), received, started, succeeded (the worker)
            wait_for(lambda: {"task-sent", "task-received", "task-started", "task-succeeded"} <= kinds("kie.sweep"),
                     30, "task events of kie.sweep", interval=0.2)
        finally:
            receiver.should_stop = True
            thread.join(timeout=10)
    hosts = {e.get("hostname", "") for e in seen if e["type"] == "task-succeeded"}
    assert any(h.startswith("w1@") for h in hosts), hosts


def test_flower_shows_the_workers_tasks_with_no_extra_settings(dep):
    """Flower started as deploy/ starts it (`celery -A worker flower`), nothing else configured."""
    port = free_port()
    celery = str(Path(sys.executable).with_name("celery"))
    dep.stack.spawn("flower", [celery, "-A", "worker", "flower", f"--port={port}", "--address=127.0.0.1"],
                    env={"FLOWER_UNAUTHENTICATED_API": "true"})
    url = f"http://127.0.0.1:{port}/api/tasks"

    def sweeps():
        try:
            tasks = requests.get(url, params={"taskname": "kie.sweep", "state": "SUCCESS"}, timeout=2).json()
        except (requests.RequestException, ValueError):
            return None
        return [t for t in tasks.values() if t.get("worker", "").startswith("w1@")]
    done = wait_for(sweeps, 60, "kie.sweep tasks succeeded on w1 in Flower's task list", interval=0.5)
    assert all(t["runtime"] is not None for t in done)
