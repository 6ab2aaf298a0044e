"""kiesim with several API keys: one account each (own createTask and status windows, own credit
balance), the ``POST /_sim/accounts`` control route, per-account stats, and no key in any output.

One in-process simulator serves the module over real HTTP; each test resets it to a baseline.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from kiesim import ConfigError, SimConfig, SimServer
from kiesim.cli import build_parser, config_from_args
from sim_support import CREATE, Kie, Receiver, configure, control, stats, task, wait_until

K1 = "sk-acct-one-" + "1f2e3d4c5b6a"
K2 = "sk-acct-two-" + "a6b5c4d3e2f1"
HMAC = "whsec-acct-" + "0099887766"
ID1, ID2 = (hashlib.sha256(k.encode()).hexdigest()[:12] for k in (K1, K2))
BASELINE = dataclasses.asdict(SimConfig(api_key=(K1, K2), duration=0.2, small_images=True, rate_limit="off",
                                        callback_retry_delay=0.05, callback_timeout=2.0))


@pytest.fixture
def one(url):
    return Kie(url, K1)


@pytest.fixture
def two(url):
    return Kie(url, K2)


def assert_no_key(text: str):
    for secret in (K1, K2, HMAC):
        assert secret not in text
        assert secret[-12:] not in text


# ---------------------------------------------------------------------------------------------
# the api_key knob: one key, a list, commas; CLI flags


def test_api_key_spellings():
    assert SimConfig(api_key="x").api_key == ("x",)
    assert SimConfig(api_key="a,b").api_key == ("a", "b")
    assert SimConfig(api_key=["a, b", "c", "a"]).api_key == ("a", "b", "c")
    assert SimConfig().api_key == ("kiesim-key",)
    for bad in ("", "a,,b", [], ["a", 3], "two words", None):
        with pytest.raises(ConfigError, match="api_key") as info:
            SimConfig(api_key=bad)
        assert "two words" not in str(info.value)
    assert_no_key(repr(SimConfig(api_key=(K1, K2), hmac_key=HMAC)))


def test_cli_api_key_is_repeatable_and_comma_separated():
    args = build_parser().parse_args(["--api-key", "k1,k2", "--api-key", "k3", "--small-images"])
    config = config_from_args(args)
    assert config.api_key == ("k1", "k2", "k3") and config.small_images is True
    assert config_from_args(build_parser().parse_args(["--api-key", "only"])).api_key == ("only",)
    assert config_from_args(build_parser().parse_args([])).api_key == ("kiesim-key",)


def test_cli_subprocess_serves_every_key_and_logs_none(tmp_path: Path):
    # not --quiet: the request log is on, and must not show a key
    process = subprocess.Popen(
        [sys.executable, "-m", "kiesim", "--port", "0", "--api-key", f"{K1},{K2}", "--api-key", "sk-third-key",
         "--hmac-key", HMAC, "--small-images"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        url = process.stdout.readline().strip().rsplit(" ", 1)[1]
        for key in (K1, K2, "sk-third-key"):
            assert Kie(url, key).credit()["code"] == 200
        assert Kie(url, "sk-not-configured").credit()["code"] == 401
        accounts = stats(url)["accounts"]
        assert len(accounts) == 3 and ID1 in accounts and ID2 in accounts
        assert configure(url)["api_key"] == "***"
    finally:
        process.terminate()
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "/api/v1/chat/credit" in err  # the log was really written
    assert_no_key(out + err)
    assert "sk-third-key" not in out + err


def test_single_key_through_the_control_api(url):
    config = configure(url, api_key="solo-key")
    assert config["api_key"] == "***"
    assert Kie(url, "solo-key").credit()["code"] == 200
    assert Kie(url, K1).credit()["code"] == 401
    bad = control(url, "/_sim/config", body={"api_key": ["ok", ""]})
    assert bad.status_code == 400 and bad.json()["knob"] == "api_key"


# ---------------------------------------------------------------------------------------------
# rate limits per account


def test_each_key_has_its_own_create_window(url, one, two):
    configure(url, rate_limit="3/30s")
    for _ in range(3):
        one.create_ok()
    assert one.create_code() == 429
    for _ in range(3):  # the other account is untouched by the first one's exhaustion
        two.create_ok()
    assert two.create_code() == 429
    s = stats(url)
    for ident in (ID1, ID2):
        account = s["accounts"][ident]
        assert account["creates_accepted"] == 3 and account["creates_429"] == 1
        assert account["creates_total"] == 4 and len(account["create_accept_times"]) == 3
    assert s["creates_accepted"] == 6 and s["creates_rejected"] == {"429": 2} and s["tasks"] == 6


def test_sliding_windows_per_key_are_never_exceeded(url, one, two):
    import time

    configure(url, rate_limit="3/1s")
    counts = {ID1: [0, 0], ID2: [0, 0]}
    end = time.monotonic() + 2.2
    while time.monotonic() < end:
        for ident, client in ((ID1, one), (ID2, two)):
            code = client.create_code()
            assert code in (200, 429)
            counts[ident][0 if code == 200 else 1] += 1
        time.sleep(0.01)
    s = stats(url)
    for ident, (accepted, limited) in counts.items():
        account = s["accounts"][ident]
        times = account["create_accept_times"]
        assert accepted == account["creates_accepted"] == len(times) and limited == account["creates_429"] > 0
        assert 6 <= accepted <= 9
        for t in times:
            assert sum(1 for u in times if t - 1.0 <= u <= t) <= 3
    all_times = s["create_accept_times"]
    assert len(all_times) == sum(c[0] for c in counts.values())
    # together the two accounts went past one account's limit in some 1 s span
    assert max(sum(1 for u in all_times if t - 1.0 <= u <= t) for t in all_times) > 3


def test_each_key_has_its_own_status_window(url, one, two):
    configure(url, status_rate_limit="2/30s")
    task_id = one.create_ok()
    assert [one.record(task_id)["code"] for _ in range(3)] == [200, 200, 429]
    assert [two.record(task_id)["code"] for _ in range(3)] == [200, 200, 429]
    accounts = stats(url)["accounts"]
    assert accounts[ID1]["record_info_calls"] == 3 and accounts[ID1]["record_info_429"] == 1
    assert accounts[ID2]["record_info_calls"] == 3 and accounts[ID2]["record_info_429"] == 1


# ---------------------------------------------------------------------------------------------
# credits per account


def test_credits_per_account_and_402_only_on_the_drained_one(url, one, two):
    configure(url, credits=10, credits_per_task=4)
    one.create_ok()
    one.create_ok()
    assert one.create_code() == 402
    two.create_ok()
    assert one.credit() == {"code": 200, "msg": "success", "data": 2}
    assert two.credit() == {"code": 200, "msg": "success", "data": 6}
    s = stats(url)
    assert s["accounts"][ID1]["credits"] == 2 and s["accounts"][ID2]["credits"] == 6
    assert s["accounts"][ID1]["creates_rejected"] == {"402": 1} and s["accounts"][ID2]["creates_rejected"] == {}
    assert s["credits"] == 8 and s["creates_rejected"] == {"402": 1}


def test_failed_tasks_cost_nothing(url, one):
    configure(url, credits=10, credits_per_task=4, duration=0)
    one.wait_done(one.create_ok("no charge [sim:fail]"))
    assert one.credit()["data"] == 10


def test_credits_knob_at_runtime_resets_every_balance(url, one, two):
    configure(url, credits=10, credits_per_task=4)
    one.create_ok()
    two.create_ok()
    configure(url, credits=20)
    assert one.credit()["data"] == 20 and two.credit()["data"] == 20


def test_set_one_accounts_balance(url, one, two):
    answer = control(url, "/_sim/accounts", body={"api_key": K2, "credits": 0})
    assert answer.status_code == 200 and answer.json() == {"account": ID2, "credits": 0}
    assert two.create_code() == 402
    one.create_ok()
    answer = control(url, "/_sim/accounts", body={"account": ID2, "credits": "8.5"})
    assert answer.json() == {"account": ID2, "credits": 8.5}
    two.create_ok()
    assert two.credit()["data"] == 4.5
    listed = control(url, "/_sim/accounts", "GET").json()["accounts"]
    assert set(listed) == {ID1, ID2} and listed[ID2]["credits"] == 4.5


@pytest.mark.parametrize("body, status, field", [
    ({"credits": 5}, 400, "api_key"),
    ({"api_key": K1}, 400, "credits"),
    ({"api_key": K1, "credits": -1}, 400, "credits"),
    ({"api_key": K1, "credits": "lots"}, 400, "credits"),
    ({"api_key": K1, "credits": True}, 400, "credits"),
    ({"api_key": 7, "credits": 1}, 400, "api_key"),
    ({"api_key": K1, "account": ID1, "credits": 1}, 400, "api_key"),
    ({"api_key": K1, "credits": 1, "balance": 2}, 400, "balance"),
    ({"api_key": K1 + "-not-configured", "credits": 1}, 404, "api_key"),
    ({"account": "0" * 12, "credits": 1}, 404, "account"),
    ([K1, 5], 400, "<body>"),
])
def test_set_account_validation(url, body, status, field):
    answer = control(url, "/_sim/accounts", body=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field and answer.json()["error"].startswith(field + ":")
    assert_no_key(answer.text)
    assert stats(url)["accounts"][ID1]["credits"] == 1_000_000  # nothing changed


def test_callback_remained_credits_are_the_accounts(url, one, two, receiver):
    control(url, "/_sim/accounts", body={"api_key": K1, "credits": 100})
    control(url, "/_sim/accounts", body={"api_key": K2, "credits": 50})
    first = one.create_ok(callback=receiver.url)
    second = two.create_ok(callback=receiver.url)
    receiver.wait_for(2)
    remained = {r["body"]["data"]["taskId"]: r["body"]["data"]["remainedCredits"] for r in receiver.snapshot()}
    assert remained == {first: 96, second: 46}
    assert task(url, first)["account"] == ID1 and task(url, second)["account"] == ID2


# ---------------------------------------------------------------------------------------------
# no key anywhere


def test_wrong_key_is_charged_to_no_account(url, one):
    assert Kie(url, "sk-intruder").create_code() == 401
    s = stats(url)
    assert s["creates_rejected"] == {"401": 1}
    assert all(a["creates_total"] == 0 for a in s["accounts"].values())
    assert set(s["accounts"]) == {ID1, ID2}  # a wrong key makes no account


def test_no_output_of_the_simulator_contains_a_key(url, one, two, receiver):
    configure(url, hmac_key=HMAC, status_rate_limit="1/30s", rate_limit="1/30s", retry_after="auto")
    task_id = one.create_ok(callback=receiver.url)
    one.create(callback=receiver.url)                 # 429
    two.create("x [sim:frobnicate]")                  # 422
    one.record(task_id)
    one.record(task_id)                               # status 429
    control(url, "/_sim/burst", body={"code": 500, "count": 2, "api_key": K2})
    control(url, "/_sim/accounts", body={"api_key": K1, "credits": 3})
    receiver.wait_for(1)
    wait_until(lambda: stats(url)["callbacks_sent"], what="callback logged")
    texts = [requests.get(url + path, timeout=10).text for path in (
        "/_sim/stats", "/_sim/config", "/_sim/tasks", f"/_sim/tasks/{task_id}", "/_sim/accounts", "/_sim/burst")]
    texts += [control(url, "/_sim/accounts", body={"api_key": K1 + "x", "credits": 1}).text,
              control(url, "/_sim/burst", body={"code": 418, "api_key": K2}).text,
              control(url, "/_sim/config", body={"api_key": ""}).text,
              json.dumps(receiver.snapshot()[0]["body"]),
              requests.post(url + CREATE, json={}, headers={"User-Agent": "t", "Authorization": f"Bearer {K1}x"},
                            timeout=10).text]
    for text in texts:
        assert_no_key(text)
    s = stats(url)
    assert set(s["accounts"]) == {ID1, ID2} and s["bursts"]["pending"][0]["account"] == ID2
