"""The suite-wide secret check: no configured test secret and no job token in any log of the run.

``conftest.pytest_sessionfinish`` runs :func:`leaks` over every ``*.log`` (and ``*.jsonl``) file the run wrote under
pytest's base temporary folder (the logs of every worker, beat, webhook and simulator process the
deployments started) and over every log record of the test process itself, whatever tests ran and
in whatever order; any finding fails the run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

API_KEY = "sk-test-" + "a1b2c3d4e5f6a7b8"
WEBHOOK_SECRET = "whsec-test-0123456789abcdef"
HMAC_KEY = "hmac-test-fedcba9876543210"
SECOND_API_KEY = "sk-test-tenant-" + "0f1e2d3c4b5a6978"   # a tenant's own account (KIE_API_KEY_<TENANT>)
AWS_SECRET = "aws-test-" + "secret-5f4e3d2c1b0a9f8e"   # the S3 tests' AWS_SECRET_ACCESS_KEY (moto)

SECRETS = (API_KEY, WEBHOOK_SECRET, HMAC_KEY, AWS_SECRET, SECOND_API_KEY)

JOB_TOKEN = re.compile(r"token=[0-9a-f]{64}")


def _json_values(text: str) -> str:
    """The string values of every JSON-object line of ``text`` (JSON logs), unescaped, one per line."""
    values = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                values += [str(v) for v in record.values()]
    return "\n".join(values)


def in_text(text: str) -> list[str]:
    """What leaks in ``text`` (JSON log lines are also read decoded): each secret's first characters, and
    "a job token"."""
    text = text + "\n" + _json_values(text)
    found = [s[:6] + "…" for s in SECRETS if s in text]
    if JOB_TOKEN.search(text):
        found.append("a job token")
    return found


def leaks(base: Path, process_lines: list[str]) -> dict[str, list[str]]:
    """``{where: [what]}`` for every log (``*.log``; ``*.jsonl``: exported spans) under ``base`` and the test
    process's own records."""
    problems = {}
    for path in sorted([*base.rglob("*.log"), *base.rglob("*.jsonl")]):
        found = in_text(path.read_text(errors="replace"))
        if found:
            problems[str(path.relative_to(base))] = found
    found = in_text("\n".join(process_lines))
    if found:
        problems["test process log records"] = found
    return problems
