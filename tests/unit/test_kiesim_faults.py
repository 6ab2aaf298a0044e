"""kiesim fault knobs for chaos tests: ``duplicate_rate``, ``early_rate``, ``late_rate`` +
``late_delay``, createTask bursts (``POST /_sim/burst``), and reproducible choices with ``seed``.

One in-process simulator serves the module over real HTTP; each test resets it to a baseline.
Callbacks go to a small receiver; waits poll under deadlines.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time

import pytest

from kiesim import ConfigError, SimConfig, SimServer
from kiesim.cli import build_parser, config_from_args, main
from sim_support import Kie, Receiver, configure, control, stats, task, wait_until

K1 = "sk-faults-one-" + "0f1e2d3c"
K2 = "sk-faults-two-" + "c3d2e1f0"
ID1, ID2 = (hashlib.sha256(k.encode()).hexdigest()[:12] for k in (K1, K2))
BASELINE = dataclasses.asdict(SimConfig(api_key=(K1, K2), duration=0.05, small_images=True, rate_limit="off",
                                        callback_retry_delay=0.05, callback_timeout=2.0))
CLOSED = "http://127.0.0.1:9/closed"  # discard port: nothing listens, a delivery fails at once


@pytest.fixture
def one(url):
    return Kie(url, K1)


@pytest.fixture
def two(url):
    return Kie(url, K2)


def settled(url: str, deliveries: int) -> list[dict]:
    """Wait until ``deliveries`` callbacks are logged and none is pending; returns the log."""
    return wait_until(lambda: (s := stats(url))["callbacks_pending"] == 0
                      and len(s["callbacks_sent"]) >= deliveries and s["callbacks_sent"],
                      what=f"{deliveries} deliveries and none pending")


# ---------------------------------------------------------------------------------------------
# duplicate_rate


def test_duplicate_rate_one_delivers_every_callback_twice(url, one, receiver):
    configure(url, duplicate_rate=1, duration=0)
    ids = [one.create_ok(f"dup {i}", callback=receiver.url) for i in range(3)]
    receiver.wait_for(6)
    assert len(settled(url, 6)) == 6
    for task_id in ids:
        assert len(receiver.for_task(task_id)) == 2
        record = task(url, task_id)
        assert record["duplicated"] is True and record["extra_deliveries"] == 1
    assert stats(url)["faults"]["duplicated"] == 3
    # on top of duplicate_callbacks (which stays "extra deliveries of every callback")
    configure(url, duplicate_callbacks=1)
    task_id = one.create_ok("dup twice over", callback=receiver.url)
    receiver.wait_for(9)
    assert len(settled(url, 9)) == 9 and len(receiver.for_task(task_id)) == 3


def test_duplicate_rate_picks_a_fraction_of_tasks(url, one, receiver):
    configure(url, duplicate_rate=0.5, duration=0, seed=3)
    ids = [one.create_ok(f"some dup {i}", callback=receiver.url) for i in range(30)]
    picked = {task_id for task_id in ids if task(url, task_id)["duplicated"]}
    assert 5 <= len(picked) <= 25
    assert stats(url)["faults"]["duplicated"] == len(picked)
    receiver.wait_for(30 + len(picked))
    settled(url, 30 + len(picked))
    for task_id in ids:
        assert len(receiver.for_task(task_id)) == (2 if task_id in picked else 1)


# ---------------------------------------------------------------------------------------------
# early_rate


def test_early_rate_one_calls_back_before_the_create_answer(url, one, receiver):
    configure(url, early_rate=1, duration=30)
    assert task(url, one.create_ok("warm-up"))["early"] is True  # no callback URL: just completed at once
    response = one.create("early", callback=receiver.url)
    answered = time.time()
    task_id = response.json()["data"]["taskId"]
    records = receiver.for_task(task_id)
    assert len(records) == 1 and records[0]["time"] <= answered  # there already, no waiting
    assert one.record(task_id)["data"]["state"] == "success"
    assert stats(url)["faults"]["early"] == 2


def test_early_rate_picks_a_fraction_of_tasks(url, one, receiver):
    configure(url, early_rate=0.5, duration=30, seed=5)
    early = 0
    for i in range(20):
        task_id = one.create_ok(f"maybe early {i}", callback=receiver.url)
        record = task(url, task_id)
        state = one.record(task_id)["data"]["state"]
        if record["early"]:
            early += 1
            assert state == "success" and len(receiver.for_task(task_id)) == 1
        else:
            assert state in ("waiting", "queuing", "generating") and receiver.for_task(task_id) == []
    assert 3 <= early <= 17 and stats(url)["faults"]["early"] == early


# ---------------------------------------------------------------------------------------------
# late_rate + late_delay


def test_late_rate_one_delays_every_callback_past_polling(url, one, receiver):
    configure(url, late_rate=1, late_delay=0.6, duration=0)
    task_id = one.create_ok("late", callback=receiver.url)
    data = one.wait_done(task_id)  # a poller sees the result ...
    assert data["state"] == "success" and receiver.for_task(task_id) == []  # ... before any callback
    record = receiver.wait_for(1)[0]
    assert record["time"] - data["completeTime"] / 1000 >= 0.6
    assert task(url, task_id)["late"] is True and task(url, task_id)["callback_delay"] == 0.6
    # late_callback_delay (every callback) adds to it
    configure(url, late_callback_delay=0.3)
    task_id = one.create_ok("later", callback=receiver.url)
    record = receiver.wait_for(2)[1]
    assert record["time"] - one.wait_done(task_id)["completeTime"] / 1000 >= 0.9
    assert stats(url)["faults"]["late"] == 2


def test_late_rate_picks_a_fraction_of_callbacks(url, one, receiver):
    configure(url, late_rate=0.5, late_delay=1.5, duration=0, seed=9)
    ids = [one.create_ok(f"maybe late {i}", callback=receiver.url) for i in range(12)]
    late = {task_id for task_id in ids if task(url, task_id)["late"]}
    assert 2 <= len(late) <= 10 and stats(url)["faults"]["late"] == len(late)
    receiver.wait_for(12, deadline=10)
    for task_id in ids:
        (record,) = receiver.for_task(task_id)
        waited = record["time"] - task(url, task_id)["complete_at"]
        if task_id in late:
            assert waited >= 1.5
        else:
            assert waited < 1.5


def test_early_wins_over_late(url, one, receiver):
    configure(url, early_rate=1, late_rate=1, late_delay=30)
    task_id = one.create_ok("early and late", callback=receiver.url)
    assert len(receiver.for_task(task_id)) == 1
    record = task(url, task_id)
    assert record["early"] is True and record["late"] is False


# ---------------------------------------------------------------------------------------------
# bursts


def test_burst_of_429s_across_accounts_then_normal(url, one, two):
    configure(url, retry_after=7)
    answer = control(url, "/_sim/burst", body={"code": 429, "count": 3})
    assert answer.status_code == 200
    assert answer.json() == {"ok": True, "burst": {"code": 429, "remaining": 3, "style": None, "account": None}}
    responses = [client.create() for client in (one, two, one)]
    for response in responses:
        assert response.status_code == 200 and response.json()["code"] == 429  # rate_limit_style body
        assert response.headers["Retry-After"] == "7"
    one.create_ok()
    s = stats(url)
    assert s["tasks"] == 1 and s["creates_rejected"] == {"429": 3}
    assert s["bursts"] == {"pending": [], "served": {"429": 3}}
    assert s["accounts"][ID1]["creates_429"] == 2 and s["accounts"][ID2]["creates_429"] == 1


def test_burst_styles(url, one):
    control(url, "/_sim/burst", body={"code": 500, "count": 2, "style": "http"})
    for _ in range(2):
        response = one.create()
        assert response.status_code == 500 and response.json()["code"] == 500
    control(url, "/_sim/burst", body={"code": 455})  # count defaults to 1; error_style body
    response = one.create()
    assert response.status_code == 200 and response.json()["code"] == 455
    configure(url, error_style="http", rate_limit_style="http")
    control(url, "/_sim/burst", body={"code": 455, "style": "body"})
    control(url, "/_sim/burst", body={"code": 429})
    assert one.create().status_code == 200
    response = one.create()
    assert response.status_code == 429 and response.json()["code"] == 429 and "Retry-After" not in response.headers
    one.create_ok()
    assert stats(url)["bursts"]["served"] == {"429": 1, "455": 2, "500": 2}


def test_burst_for_one_account(url, one, two):
    control(url, "/_sim/burst", body={"code": 455, "count": 2, "api_key": K2})
    control(url, "/_sim/burst", body={"code": 500, "count": 1, "account": ID1})
    pending = control(url, "/_sim/burst", "GET").json()["pending"]
    assert [(b["code"], b["account"]) for b in pending] == [(455, ID2), (500, ID1)]
    assert one.create_code() == 500
    one.create_ok()
    assert [two.create_code() for _ in range(3)] == [455, 455, 200]
    assert control(url, "/_sim/burst", "GET").json()["pending"] == []


def test_bursts_queue_in_order_and_can_be_dropped(url, one):
    control(url, "/_sim/burst", body={"code": 500, "count": 1})
    control(url, "/_sim/burst", body={"code": 455, "count": 1})
    control(url, "/_sim/burst", body={"code": 429, "count": 5})
    assert [one.create_code() for _ in range(2)] == [500, 455]
    assert control(url, "/_sim/burst", "DELETE").json() == {"cleared": 1}
    one.create_ok()


def test_burst_uses_no_rate_window_and_no_gateway_refusal(url, one):
    configure(url, rate_limit="2/30s", retry_after="auto")
    control(url, "/_sim/burst", body={"code": 429, "count": 2})
    assert Kie(url, "sk-wrong").create_code() == 401  # refused at the gateway: the burst is not spent
    for _ in range(2):
        response = one.create()
        assert response.json()["code"] == 429 and int(response.headers["Retry-After"]) >= 1
    one.create_ok()
    one.create_ok()  # the burst's 429s took no slot of the window
    assert one.create_code() == 429  # now the limiter's own
    s = stats(url)
    assert s["bursts"]["served"] == {"429": 2} and s["creates_rejected"] == {"401": 1, "429": 3}


@pytest.mark.parametrize("body, status, field", [
    ({"count": 2}, 400, "code"),
    ({"code": 404}, 400, "code"),
    ({"code": "429"}, 400, "code"),
    ({"code": True}, 400, "code"),
    ({"code": 429, "count": 0}, 400, "count"),
    ({"code": 429, "count": 1.5}, 400, "count"),
    ({"code": 429, "count": "3"}, 400, "count"),
    ({"code": 429, "style": "mixed"}, 400, "style"),
    ({"code": 429, "times": 3}, 400, "times"),
    ({"code": 429, "api_key": "sk-unknown"}, 404, "api_key"),
    ({"code": 429, "account": "f" * 12}, 404, "account"),
    ({"code": 429, "api_key": ""}, 400, "api_key"),
    ("429", 400, "<body>"),
])
def test_burst_validation(url, one, body, status, field):
    answer = control(url, "/_sim/burst", body=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field and answer.json()["error"].startswith(field + ":")
    assert "sk-unknown" not in answer.text
    assert control(url, "/_sim/burst", "GET").json()["pending"] == []
    one.create_ok()


# ---------------------------------------------------------------------------------------------
# reproducible with seed


CHAOS = {"fail_rate": 0.5, "duplicate_rate": 0.5, "early_rate": 0.3, "late_rate": 0.5, "late_delay": 0.05,
         "duration": 0.05, "duration_jitter": 0.04, "lose_callbacks": 0.5, "variant_fields": 0.5,
         "callback_retries": 0}


def chaos_run(url: str) -> list[tuple]:
    client = Kie(url, K1)
    ids = [client.create_ok(f"chaos {i}", callback=CLOSED) for i in range(16)]

    def decided():
        records = [task(url, task_id) for task_id in ids]
        return all(r["callback_lost"] is not None for r in records) and records

    return [(r["outcome"], r["fail_code"], r["early"], r["late"], r["duplicated"], r["duration"],
             r["callback_lost"], r["callback_variant"]) for r in wait_until(decided, what="every delivery decided")]


def test_seed_makes_the_choices_reproducible(url):
    configure(url, **CHAOS, seed=11)
    first = chaos_run(url)
    control(url, "/_sim/reset")
    configure(url, seed=11)  # re-seeding at runtime restarts the sequence
    assert chaos_run(url) == first
    with SimServer(SimConfig(**{**BASELINE, **CHAOS, "seed": 11})) as fresh:  # and so does the constructor
        assert chaos_run(fresh.url) == first
    control(url, "/_sim/reset")
    configure(url, seed=12)
    other = chaos_run(url)
    assert other != first
    for column in range(8):  # every kind of choice really varies
        assert len({row[column] for row in first + other}) > 1


# ---------------------------------------------------------------------------------------------
# knob checks and --help


@pytest.mark.parametrize("knob, value", [
    ("duplicate_rate", 1.5), ("early_rate", -0.1), ("late_rate", "often"), ("late_delay", -1),
    ("duplicate_rate", True),
])
def test_fault_knobs_are_validated(url, knob, value):
    answer = control(url, "/_sim/config", body={knob: value})
    assert answer.status_code == 400 and answer.json()["knob"] == knob
    assert configure(url)[knob] == BASELINE[knob]


def test_fault_knobs_on_the_command_line(capsys):
    config = config_from_args(build_parser().parse_args(
        ["--duplicate-rate", "0.25", "--early-rate", "0.1", "--late-rate", "1", "--late-delay", "75"]))
    assert (config.duplicate_rate, config.early_rate, config.late_rate, config.late_delay) == (0.25, 0.1, 1.0, 75.0)
    with pytest.raises(ConfigError, match="late_rate"):
        config_from_args(build_parser().parse_args(["--late-rate", "2"]))
    with pytest.raises(SystemExit) as info:
        main(["--duplicate-rate", "x"])
    assert info.value.code == 2 and "--duplicate-rate" in capsys.readouterr().err
    text = build_parser().format_help()
    for flag in ("--duplicate-rate", "--early-rate", "--late-rate", "--late-delay", "/_sim/burst", "/_sim/accounts"):
        assert flag in text
