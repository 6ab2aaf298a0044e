"""deploy/grafana/kie-queue.json: every query names metrics that ``/metrics`` exposes, and parses as PromQL.

The PromQL check wraps each expression in a recording rule and runs ``promtool check rules`` (Debian package
``prometheus``, installed by ``scripts/test`` when missing).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from worker.store.metrics import CATALOGUE

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "kie-queue.json"
NAME = re.compile(r"\bkie_[a-z0-9_]+\b")


def exposed_names() -> set[str]:
    names = set()
    for m in CATALOGUE:
        names.add(m.name)
        if m.kind == "histogram":
            names |= {m.name + "_bucket", m.name + "_sum", m.name + "_count"}
    return names


def exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def test_every_expression_names_an_exposed_metric():
    known = exposed_names()
    found = set()
    for expr in exprs():
        names = set(NAME.findall(expr))
        assert names, f"no kie_ metric in {expr!r}"
        assert names <= known, f"{expr!r} names {sorted(names - known)}, which /metrics does not expose"
        found |= names
    # and the dashboard shows every metric there is
    shown = {n.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") for n in found}
    assert {m.name for m in CATALOGUE} - shown <= {"kie_events_total", "kie_polls_total", "kie_poll_errors_total",
                                                   "kie_slots_reclaimed_total", "kie_creates_unknown_outcome_total",
                                                   "kie_tasks_adopted_from_callback_total"}


def test_every_expression_is_valid_promql(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed and scripts/test could not install it "
                    "(Debian package 'prometheus' via apt-get)")
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:expr{i}", "expr": e}
                                                         for i, e in enumerate(exprs())]}]}
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps(rules))      # JSON is YAML
    run = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stdout + run.stderr
