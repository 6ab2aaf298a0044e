"""Runs last (files are collected in name order): no configured secret and no job token appears in any
log written during the suite — the test process's own records and every process log the deployments
wrote (workers, beat, webhook, simulator)."""

import re

from conftest import KEEP
from harness import SECRETS

TOKEN = re.compile(r"token=[0-9a-f]{64}")


def _leaks(text: str) -> list[str]:
    found = [s[:6] + "…" for s in SECRETS if s in text]
    if TOKEN.search(text):
        found.append("a job token")
    return found


def test_no_secret_in_any_log(tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    logs = list(base.rglob("*.log"))
    problems = {}
    for path in logs:
        leaks = _leaks(path.read_text(errors="replace"))
        if leaks:
            problems[str(path.relative_to(base))] = leaks
    leaks = _leaks("\n".join(KEEP.lines))
    if leaks:
        problems["test process log records"] = leaks
    assert problems == {}
