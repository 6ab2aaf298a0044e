"""Tests of worker.jobs.credit_guard and the sweep's credit check, per account.

Real Redis (database 5, a key prefix per test) and the simulator in-process over HTTP with two
accounts; the runtime is built from settings the way every worker builds it.
"""

from __future__ import annotations

import pytest
import requests

from kiesim import SimConfig, SimServer
from worker.jobs import credit_guard
from worker.jobs.sweeping import credit_check
from worker.runtime import build
from worker.settings import Settings

KEY = "sk-guard-default-" + "5a4b3c2d"
PARTNER_KEY = "sk-guard-partner-" + "1e2f3a4b"


@pytest.fixture(scope="module")
def sim():
    with SimServer(SimConfig(api_key=(KEY, PARTNER_KEY), rate_limit="off", small_images=True),
                   host="127.0.0.1", port=0) as srv:
        yield srv.url


def runtime_for(sim, prefix, **env):
    s = Settings.from_env({"KIE_API_KEY": KEY, "KIE_API_KEY_PARTNER": PARTNER_KEY, "KIE_BASE_URL": sim,
                           "KIE_KEY_PREFIX": prefix, "REDIS_URL": "redis://127.0.0.1:6379/5", **env})
    return build(s)


def set_credits(sim, key, credits):
    requests.post(sim + "/_sim/accounts", json={"api_key": key, "credits": credits}, timeout=5).raise_for_status()


def test_below_the_minimum_only_that_account_pauses_and_the_check_resumes_it(sim, prefix):
    rt = runtime_for(sim, prefix, KIE_MIN_CREDITS="50")
    default, partner = rt.account_for("default"), rt.account_for("partner")
    assert default.id != partner.id and len(rt.accounts) == 2
    set_credits(sim, PARTNER_KEY, 20)
    set_credits(sim, KEY, 1000)
    assert credit_check(rt, partner) == 20
    assert credit_check(rt, default) == 1000
    assert partner.limiter.pause_reason() == "low_credits: 20 < 50" and partner.limiter.paused_for() > 0
    assert default.limiter.paused_for() == 0
    status = partner.limiter.status()
    assert status["pause"]["reason"].startswith("low_credits") and status["pause"]["seconds_left"] > 0
    set_credits(sim, PARTNER_KEY, 49)
    credit_check(rt, partner)
    assert partner.limiter.paused_for() > 0                 # still below: stays paused
    set_credits(sim, PARTNER_KEY, 500)
    assert credit_check(rt, partner) == 500
    assert partner.limiter.paused_for() == 0 and partner.limiter.pause_reason() is None


def test_without_a_minimum_only_a_paused_account_is_checked(sim, prefix):
    rt = runtime_for(sim, prefix)
    account = rt.default_account
    assert credit_check(rt, account) is None                # not paused, no minimum: no request
    account.limiter.pause(300, "402")
    set_credits(sim, KEY, 0)
    assert credit_check(rt, account) == 0 and account.limiter.paused_for() > 0
    set_credits(sim, KEY, 10)
    credit_check(rt, account)
    assert account.limiter.paused_for() == 0


def test_a_balance_seen_on_a_result_pauses_the_account(sim, prefix):
    rt = runtime_for(sim, prefix, KIE_MIN_CREDITS="100")
    account = rt.account_for("partner")
    credit_guard.observe(rt, account, 99.5)
    assert account.limiter.pause_reason() == "low_credits: 99.5 < 100"
    assert rt.store.metrics.snapshot().value("kie_credit_pauses_total") == 1
    credit_guard.observe(rt, account, None)                 # no figure: nothing changes
    assert account.limiter.paused_for() > 0
    credit_guard.observe(rt, account, 100)
    assert account.limiter.paused_for() == 0
