"""``worker.cli.params`` and ``worker.cli.waiting.default_timeout``: durations and the wait's default limit."""

import click
import pytest

from worker.cli.params import DURATION
from worker.cli.waiting import MARGIN_S, default_timeout
from worker.settings import Settings


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("30m", 1800), ("1h", 3600), ("2d", 172800),
                                           ("1w", 604800), ("1.5h", 5400), (" 2 h ", 7200)])
def test_durations(text, seconds):
    assert DURATION.convert(text, None, None) == seconds


@pytest.mark.parametrize("text", ["", "0", "-1h", "1y", "h", "yesterday", "1h30m"])
def test_bad_durations_name_the_value(text):
    with pytest.raises(click.BadParameter) as info:
        DURATION.convert(text, None, None)
    assert repr(text) in str(info.value)


def test_the_default_wait_covers_the_job_timeout_and_the_batchs_turn_at_the_rate_limit():
    s = Settings.from_env({"KIE_JOB_TIMEOUT": "100", "KIE_RATE_LIMIT": "20/10s"})
    assert default_timeout(s, 1, None) == 100 + 0.5 + MARGIN_S
    assert default_timeout(s, 200, None) == 100 + 100 + MARGIN_S
    assert default_timeout(s, 1, 10.0) == 10 + 0.5 + MARGIN_S
