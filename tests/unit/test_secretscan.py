"""The suite-wide secret check finds what it must, in files and in records, and nothing else.

The planted leaks live outside pytest's temporary folder, which the session-finish scan reads.
"""

import tempfile
from pathlib import Path

import pytest

from secretscan import API_KEY, HMAC_KEY, leaks


@pytest.fixture
def outside():
    with tempfile.TemporaryDirectory(prefix="kie-secretscan-") as d:
        yield Path(d)


def test_finds_secrets_and_job_tokens_in_logs_and_records(outside):
    tmp_path = outside
    (tmp_path / "dep").mkdir()
    (tmp_path / "dep" / "w1.log").write_text(f"sending Bearer {API_KEY}\n")
    (tmp_path / "dep" / "web.log").write_text("POST /kie/callback/j?token=" + "ab" * 32 + "\n")
    (tmp_path / "dep" / "clean.log").write_text("token=***\n")
    found = leaks(tmp_path, ["ok", f"hmac {HMAC_KEY}"])
    assert found == {"dep/w1.log": [API_KEY[:6] + "…"], "dep/web.log": ["a job token"],
                     "test process log records": [HMAC_KEY[:6] + "…"]}


def test_clean_run_finds_nothing(outside):
    tmp_path = outside
    (tmp_path / "a.log").write_text("job j succeeded; token=*** key=***\n")
    assert leaks(tmp_path, ["nothing secret"]) == {}


def test_reads_json_log_lines_decoded(outside):
    # a JSON renderer may escape characters; the scan reads each JSON line's values decoded as well
    escaped = API_KEY.replace("-", "\\u002d")
    (outside / "w1.log").write_text('{"message": "key %s", "level": "info"}\nnot json {\n' % escaped)
    assert leaks(outside, []) == {"w1.log": [API_KEY[:6] + "…"]}
