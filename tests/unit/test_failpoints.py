"""Tests of worker.failpoints: the variable's forms, a clear error, and a real process exiting at a point."""

import subprocess
import sys

import pytest

from worker import failpoints


def test_parse_forms():
    assert failpoints.parse("") == {}
    assert failpoints.parse("submit.after_claim:exit") == {"submit.after_claim": 137}
    assert failpoints.parse(" complete.after_publish:exit=3 , submit.after_create:exit") == \
        {"complete.after_publish": 3, "submit.after_create": 137}


@pytest.mark.parametrize("raw, says", [("nope:exit", "unknown failpoint 'nope'"),
                                       ("submit.after_claim:crash", "'crash'"),
                                       ("submit.after_claim:exit=x", "'exit=x'")])
def test_malformed_names_the_variable(raw, says):
    with pytest.raises(ValueError) as info:
        failpoints.parse(raw)
    assert "KIE_FAILPOINTS" in str(info.value) and says in str(info.value)


def test_every_point_is_documented_in_the_module():
    for name in failpoints.POINTS:
        assert f"``{name}``" in failpoints.__doc__


def run(env_value: str, point: str) -> subprocess.CompletedProcess:
    code = (f"from worker import failpoints\nfailpoints.hit('submit.after_accept')\nprint('passed one', flush=True)\n"
            f"failpoints.hit({point!r})\nprint('passed two')\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"KIE_FAILPOINTS": env_value, "PATH": "/usr/bin:/bin"}, cwd=str(failpoints.__file__)
                          .rsplit("/worker/", 1)[0])


def test_an_armed_point_exits_the_process_there_and_only_there():
    done = run("complete.after_finish:exit=7", "complete.after_finish")
    assert done.returncode == 7 and done.stdout.split() == ["passed", "one"]
    done = run("complete.after_finish:exit", "complete.after_publish")
    assert done.returncode == 0 and "passed two" in done.stdout


def test_unarmed_points_are_read_lazily(monkeypatch):
    failpoints.reset()
    monkeypatch.setenv("KIE_FAILPOINTS", "")
    failpoints.hit("submit.after_claim")    # reads the variable now, and does nothing
    monkeypatch.setenv("KIE_FAILPOINTS", "submit.after_claim:exit")
    failpoints.hit("submit.after_claim")    # read once: a later change is not seen
    failpoints.reset()
