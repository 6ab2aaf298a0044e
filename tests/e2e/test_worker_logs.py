"""What a real worker and beat write at INFO: no line per sweep, no "ignored" per parked job; the parked
state and the sweep's work in words of their own; the routine lines still there at DEBUG."""

import re
import sys
from pathlib import Path

import pytest

from harness import unique
from worker.cli.stack import wait_for

DEPLOYMENT = dict(callbacks=False, hmac=False, start=dict(concurrency=1, user_worker=False))  # polling: sweeps work


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
    wait_for(lambda: dep.stack.log_of("beat").count("\n") > 0, 10, "beat log")
    info = dep.stack.log_of("w1")
    every = info + dep.stack.log_of("wdebug")
    for j in job_ids:
        assert re.search(rf"job {j} parked: waiting for kie\.ai", every), j
    assert "sweep handed out" in every                                       # status polls were handed out
    assert not re.search(r"INFO/.*Task kie\.sweep\[", every)
    assert not re.search(r"Task kie\.generate\[[^\]]+\] ignored", info)
    assert not re.search(r"INFO/.*Task kie\.generate\[[^\]]+\] ignored", every)
    assert "Task kie.download[" in info or "Task kie.download[" in every    # ordinary task lines stay
    beat = dep.stack.log_of("beat")
    assert "Sending due task kie-sweep" not in beat
    assert "beat: Starting" in beat


def test_the_routine_lines_are_still_there_at_debug(logs_dep):
    dep = logs_dep
    def debug_lines():
        text = dep.stack.log_of("wdebug")
        return (re.search(r"DEBUG/.*Task kie\.sweep\[[^\]]+\] (received|succeeded)", text)
                and re.search(r"DEBUG/.*Task kie\.generate\[[^\]]+\] ignored", text))
    if not re.search(r"DEBUG/.*Task kie\.generate\[[^\]]+\] ignored", dep.stack.log_of("wdebug")):
        # make sure the debug worker parks a job too: keep sending until one lands on it
        def parked_there():
            j = unique("dbg").replace(" ", "-")
            (dep.generate(f"a stone {j}", job_id=j)).apply_async().get(timeout=90)
            return re.search(rf"DEBUG/.*ignored", dep.stack.log_of("wdebug"))
        wait_for(parked_there, 120, "a job parked on the debug worker", interval=0.1)
    wait_for(debug_lines, 30, "routine lines at DEBUG")
