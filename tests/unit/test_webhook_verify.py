"""Pure unit tests of the webhook's check functions (``webhook/verify.py``) and job tokens (``worker/tokens.py``).

No Redis, no HTTP: each check is a function of its arguments (and ``now``), raising its own
exception type.  Signatures are computed here independently of ``signature_for`` (hashlib, hmac,
base64 directly from kie.ai's webhook-verification page), so a misreading in the product is not silently shared.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from webhook.verify import check_job_token, check_signature, check_task, signature_for
from worker.errors import BadSignature, BadToken, StaleTimestamp, TaskMismatch, WebhookRejected
from worker.tokens import callback_url, job_token, verify_job_token

KEY = "hmac-unit-key-0123"
TASK = "0123456789abcdef0123456789abcdef"
NOW = 1_717_000_000.0
TS = str(int(NOW))


def kie_signature(task_id: str, timestamp: str, key: str = KEY) -> str:
    """What kie.ai's documentation says it sends: base64(HMAC-SHA256(key, taskId + "." + timestamp)), raw digest."""
    return base64.b64encode(hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()).decode()


# --------------------------------------------------------------------------- check_signature


def test_valid_signature_passes():
    check_signature(TASK, TS, kie_signature(TASK, TS), KEY, now=NOW)


def test_signature_for_matches_the_documented_construction():
    assert signature_for(TASK, TS, KEY) == kie_signature(TASK, TS)


def test_wrong_key_refused():
    with pytest.raises(BadSignature):
        check_signature(TASK, TS, kie_signature(TASK, TS, key="another-key"), KEY, now=NOW)


def test_signature_over_another_task_refused():
    with pytest.raises(BadSignature):
        check_signature(TASK, TS, kie_signature("f" * 32, TS), KEY, now=NOW)


def test_signature_over_another_timestamp_refused():
    with pytest.raises(BadSignature):
        check_signature(TASK, TS, kie_signature(TASK, str(int(NOW) - 1)), KEY, now=NOW)


def test_hex_signature_refused():
    hexsig = hmac.new(KEY.encode(), f"{TASK}.{TS}".encode(), hashlib.sha256).hexdigest()
    with pytest.raises(BadSignature):
        check_signature(TASK, TS, hexsig, KEY, now=NOW)


@pytest.mark.parametrize("offset", [-301, 301, -86_400, 86_400 * 365])
def test_stale_timestamp_either_side_refused(offset):
    ts = str(int(NOW) + offset)
    with pytest.raises(StaleTimestamp):
        check_signature(TASK, ts, kie_signature(TASK, ts), KEY, now=NOW)


@pytest.mark.parametrize("offset", [-300, 300, 0, -299, 299])
def test_tolerance_edge_is_inclusive(offset):
    ts = str(int(NOW) + offset)
    check_signature(TASK, ts, kie_signature(TASK, ts), KEY, now=NOW, tolerance=300)


def test_tolerance_is_configurable():
    ts = str(int(NOW) - 31)
    check_signature(TASK, ts, kie_signature(TASK, ts), KEY, now=NOW, tolerance=60)
    with pytest.raises(StaleTimestamp):
        check_signature(TASK, ts, kie_signature(TASK, ts), KEY, now=NOW, tolerance=30)


def test_milliseconds_timestamp_is_stale_not_an_error():
    ts = str(int(NOW * 1000))
    with pytest.raises(StaleTimestamp):
        check_signature(TASK, ts, kie_signature(TASK, ts), KEY, now=NOW)


@pytest.mark.parametrize("ts", ["1717000000.5", "abc", "0x66", "1e9", "-1717000000", "+1717000000", "1_717_000_000",
                                "1" + "0" * 400, "9" * 5000, "\u0661\u0667", "17170 00000", "", " "])
def test_non_integer_timestamp_refused_as_bad_signature(ts):
    # also: 400 digits would have been an OverflowError (a 500) before the ASCII-digits rule
    with pytest.raises(BadSignature):
        check_signature(TASK, ts, kie_signature(TASK, ts), KEY, now=NOW)


@pytest.mark.parametrize("timestamp,signature", [(None, "x"), (TS, None), (None, None), ("", "x"), (TS, "")])
def test_missing_headers_refused(timestamp, signature):
    with pytest.raises(BadSignature):
        check_signature(TASK, timestamp, signature, KEY, now=NOW)


def test_surrounding_whitespace_of_header_values_is_forgiven():
    check_signature(TASK, f"  {TS}\t", f" {kie_signature(TASK, TS)} ", KEY, now=NOW)


def test_whitespace_inside_signature_refused():
    sig = kie_signature(TASK, TS)
    with pytest.raises(BadSignature):
        check_signature(TASK, TS, sig[:10] + " " + sig[10:], KEY, now=NOW)


@pytest.mark.parametrize("mutate", [
    lambda s: s.rstrip("="),            # padding dropped
    lambda s: s.swapcase(),             # base64 is case sensitive
    lambda s: s[:-2] + "AA",            # last bytes changed
    lambda s: s + "=",                  # extra padding
    lambda s: "é" + s,                  # non-ASCII
])
def test_mangled_signature_refused(mutate):
    with pytest.raises(BadSignature):
        check_signature(TASK, TS, mutate(kie_signature(TASK, TS)), KEY, now=NOW)


def test_signature_errors_are_webhook_rejections_with_401():
    assert issubclass(BadSignature, WebhookRejected) and BadSignature.status == 401
    assert issubclass(StaleTimestamp, WebhookRejected) and StaleTimestamp.status == 401


def test_signature_error_message_shows_no_key_or_signature():
    sig = kie_signature(TASK, TS, key="other")
    with pytest.raises(BadSignature) as info:
        check_signature(TASK, TS, sig, KEY, now=NOW)
    assert KEY not in str(info.value) and sig not in str(info.value)


# --------------------------------------------------------------------------- check_task


def test_task_known_passes():
    check_task(TASK, {"state": "submitted", "task_ids": f"other {TASK}"})


def test_task_not_the_jobs_refused():
    with pytest.raises(TaskMismatch) as info:
        check_task("f" * 32, {"state": "submitted", "task_ids": TASK})
    assert info.value.status == 409


@pytest.mark.parametrize("state", ["accepted", "submitting"])
def test_task_adopted_while_create_outcome_unknown(state):
    check_task(TASK, {"state": state})
    check_task(TASK, {"state": state, "task_ids": ""})


def test_task_prefix_or_substring_is_not_a_match():
    with pytest.raises(TaskMismatch):
        check_task(TASK[:-1], {"state": "submitted", "task_ids": TASK})
    with pytest.raises(TaskMismatch):
        check_task(TASK + " x", {"state": "submitted", "task_ids": TASK})


def test_task_with_no_recorded_tasks_in_submitted_state_refused():
    with pytest.raises(TaskMismatch):
        check_task(TASK, {"state": "submitted"})


# --------------------------------------------------------------------------- job tokens


OLD, NEW = "old-secret-aaaa", "new-secret-bbbb"


def test_token_is_64_hex_and_depends_on_job_and_secret():
    t = job_token("job-1", OLD)
    assert len(t) == 64 and int(t, 16) >= 0
    assert t != job_token("job-2", OLD) and t != job_token("job-1", NEW)
    assert t == job_token("job-1", OLD)


def test_token_verifies_for_its_job_only():
    verify_job_token("job-1", job_token("job-1", NEW), [NEW])
    with pytest.raises(BadToken):
        verify_job_token("job-2", job_token("job-1", NEW), [NEW])


@pytest.mark.parametrize("token", [None, "", "0" * 64, "x", job_token("job-1", NEW).upper()])
def test_missing_or_wrong_token_refused(token):
    with pytest.raises(BadToken) as info:
        verify_job_token("job-1", token, [NEW])
    assert info.value.status == 401


def test_rotation_old_token_accepted_while_both_configured_then_refused():
    minted_before = job_token("job-1", OLD)
    verify_job_token("job-1", minted_before, [OLD])              # before rotation
    verify_job_token("job-1", minted_before, [NEW, OLD])         # rotation window: newest first, old still valid
    verify_job_token("job-1", job_token("job-1", NEW), [NEW, OLD])
    with pytest.raises(BadToken):
        verify_job_token("job-1", minted_before, [NEW])          # old secret removed


def test_callback_url_mints_with_the_first_secret():
    url = callback_url("https://hooks.example/", "job 1/2", NEW)
    assert url == f"https://hooks.example/kie/callback/job%201%2F2?token={job_token('job 1/2', NEW)}"


def test_no_secrets_configured_refuses_everything():
    with pytest.raises(BadToken):
        verify_job_token("job-1", job_token("job-1", NEW), [])


@pytest.mark.parametrize("token", ["é" * 64, "\u202e" + "0" * 63, "😀"])
def test_check_job_token_refuses_non_ascii_token_as_bad_token(token):
    with pytest.raises(BadToken):
        check_job_token("job-1", token, [NEW])


def test_check_job_token_refuses_overlong_token():
    with pytest.raises(BadToken):
        check_job_token("job-1", job_token("job-1", NEW) * 10, [NEW])


def test_check_job_token_accepts_valid_and_rotated_tokens():
    check_job_token("job-1", job_token("job-1", NEW), [NEW, OLD])
    check_job_token("job-1", job_token("job-1", OLD), [NEW, OLD])
    check_job_token("jöb-😀", job_token("jöb-😀", NEW), [NEW])


def test_verify_job_token_non_ascii_token_is_a_bad_token():
    with pytest.raises(BadToken):
        verify_job_token("job-1", "é" * 64, [NEW])
