"""What a real worker and beat write at INFO: no line per sweep, no "ignored" per parked job; the parked
state and the sweep's work in words of their own; the routine lines still there at DEBUG.

Process logs are JSON lines (stderr is a file); each is read as (level, message)."""

import json
import re
import sys
from pathlib import Path

import pytest

from harness import unique
from worker.cli.stack import wait_for

DEPLOYMENT = dict(callbacks=False, hmac=False, start=dict(concurrency=1, user_worker=False))  # polling: sweeps work


def records(text: str) -> list[tuple[str, str]]:
    """(level, message) of every log line: JSON records, or Celery's text format ``[time: LEVEL/process] msg``."""
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            out.append((str(rec.get("level", "")).lower(), str(rec.get("message", ""))))
            continue
        m = re.match(r"^\[[^\]]*: (\w+)/[^\]]*\] (.*)$", line)
        if m:
            out.append((m.group(1).lower(), m.group(2)))
    return out


def matching(recs, pattern: str, level: str | None = None) -> list[str]:
    return [msg for lvl, msg in recs if re.search(pattern, msg) and (level is None or lvl == level)]


@pytest.fixture(scope="module")
def logs_dep(dep):
    """The deployment plus a second worker logging at DEBUG (stopped with the deployment)."""
    celery = str(Path(sys.executable).with_name("celery"))
    proc, log = dep.stack.spawn("wdebug", [celery, "-A", "worker", "worker", "--loglevel", "DEBUG", "--concurrency",
                                           "1", "--hostname", f"debug-{dep.name}@%h", "--without-gossip",
                                           "--without-mingle"])
    wait_for(lambda: "ready." in log.read_text(errors="replace"), 60, "debug worker", proc=proc, log_path=log)
    return dep


def test_info_logs_say_parked_and_what_the_sweep_did_and_nothing_per_second(logs_dep):
    dep = logs_dep
    job_ids = [unique("logs").replace(" ", "-") for _ in range(3)]
    results = [(dep.generate(f"a quiet pond {j}", job_id=j) | dep.download()).apply_async() for j in job_ids]
    for r in results:
        r.get(timeout=90)
    info = records(dep.stack.log_of("w1"))
    both = info + records(dep.stack.log_of("wdebug"))
    assert len(info) > 5                                                  # the log was read at all
    for j in job_ids:
        assert matching(both, rf"job {j} parked: waiting for kie\.ai", "info"), j
    assert matching(both, r"sweep handed out \d+ submissions and \d+ status checks", "info")
    assert matching(both, r"Task kie\.download\[", "info")                # ordinary task lines stay
    assert not [lvl for lvl, msg in both if "Task kie.sweep[" in msg and lvl != "debug"]
    assert not [lvl for lvl, msg in both if re.search(r"Task kie\.generate\[[^\]]+\] ignored", msg) and lvl != "debug"]
    assert not matching(info, r"Task kie\.sweep\[|ignored")
    beat = records(dep.stack.log_of("beat"))
    assert matching(beat, r"beat: Starting")
    assert not matching(beat, r"Sending due task kie-sweep")


def test_the_routine_lines_are_still_there_at_debug(logs_dep):
    import signal

    dep = logs_dep
    dep.stack.kill("w1", signal.SIGTERM)          # the debug worker is now the only one: it gets everything
    j = unique("dbg").replace(" ", "-")
    dep.generate(f"a stone {j}", job_id=j).apply_async().get(timeout=90)
    recs = records(dep.stack.log_of("wdebug"))
    assert matching(recs, rf"job {j} parked: waiting for kie\.ai", "info")
    assert matching(recs, r"Task kie\.generate\[[^\]]+\] ignored", "debug")
    wait_for(lambda: matching(records(dep.stack.log_of("wdebug")), r"Task kie\.sweep\[[^\]]+\] received", "debug")
             and matching(records(dep.stack.log_of("wdebug")), r"Task kie\.sweep\[[^\]]+\] succeeded", "debug"),
             30, "the sweep's lines at DEBUG", log_path=dep.stack.workdir / "wdebug.log")
