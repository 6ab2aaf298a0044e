"""Tests of worker.jobs.timing: exponential backoff with full jitter, one-sided jitter, polling intervals."""

from __future__ import annotations

import pytest

from worker.jobs.timing import backoff, first_check_delay, jittered, poll_delay, send_lease_ms
from worker.settings import Settings


@pytest.mark.parametrize("attempt, bound", [(0, 1.0), (1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 20.0),
                                            (30, 20.0)])
def test_backoff_bounds(attempt, bound):
    samples = [backoff(attempt, base=1.0, cap=20.0) for _ in range(2000)]
    assert all(0 <= s <= bound for s in samples)
    assert max(samples) > 0.9 * bound          # full jitter: it reaches the bound ...
    assert min(samples) < 0.1 * bound          # ... and goes down to zero
    assert len(set(samples)) > 1900


def test_backoff_small_base():
    assert all(0 <= backoff(4, base=0.2, cap=60) <= 1.6 for _ in range(500))


def test_jittered():
    samples = [jittered(2.0, 0.5) for _ in range(2000)]
    assert all(2.0 <= s <= 2.5 for s in samples)
    assert max(samples) - min(samples) > 0.4
    assert jittered(1.25, 0) == 1.25


def test_poll_delay_grows_with_age_and_stays_bounded():
    # kie.ai's guidance: every 2-3 s for the first 30 s, 5-10 s until 2 min, then 15-30 s
    assert [poll_delay(age) for age in (0, 29.9, 30, 119.9, 120, 3600)] == [2.5, 2.5, 7.5, 7.5, 20.0, 20.0]


def test_send_lease_covers_the_whole_request():
    s = Settings(http_timeout=7.0)
    assert send_lease_ms(s) > 7_000


def test_first_check_waits_for_the_callback_grace_when_callbacks_are_configured():
    assert first_check_delay(Settings()) == poll_delay(0)
    assert first_check_delay(Settings(callback_url="https://hooks.example", callback_grace=45.0)) == 45.0
