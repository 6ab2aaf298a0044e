"""Tests of worker.store.limiter against the real Redis (database 5, a unique key prefix per test).

Time inside the limiter's Lua comes from the Redis server clock, so these tests read that clock
(``redis.time()``) to record grants and to wait for a moment to pass; they use short windows
(a few creates per 0.2-0.5 s).  A job told to wait comes back after the returned wait (that is the
limiter's protocol); everything else polls a condition under a deadline.
"""

from __future__ import annotations

import threading
import time

import pytest

from sim_support import wait_until
from worker.store.keys import account_id
from bench.schedule import max_in_window as _max_in_window
from worker.store.limiter import MARGIN_MS, Limiter

API_KEY = "sk-limiter-test-" + "9c8b7a6f5e4d"
MARGIN = MARGIN_MS / 1000.0


def make(r, prefix, *, limit=5, window=0.5, max_in_flight=1000, slot_lease=60.0, api_key=API_KEY) -> Limiter:
    return Limiter(r, prefix, api_key, limit=limit, window=window, max_in_flight=max_in_flight,
                   slot_lease=slot_lease)


def server_now(r) -> float:
    sec, usec = r.time()
    return sec + usec / 1e6


def until_server_time(r, moment: float, timeout: float = 5.0):
    wait_until(lambda: server_now(r) >= moment, timeout, f"server time {moment}")


def acquire_until_granted(limiter: Limiter, job_id: str, member: str, deadline: float = 10.0):
    """Follow the protocol: come back after each returned wait.  Returns (grant time, member, denials)."""
    denials = []
    stop = time.monotonic() + deadline
    while True:
        allowed, wait, reason, got = limiter.acquire(job_id, member)
        if allowed:
            return server_now(limiter.redis), got, denials
        denials.append((reason, wait))
        assert wait > 0, (reason, wait)
        assert time.monotonic() < stop, f"{job_id} never granted: {denials}"
        time.sleep(wait)


def max_in_window(times, window):
    return _max_in_window(times, window)


# -- the sliding window ----------------------------------------------------------------------


def test_never_more_than_limit_in_any_window_across_threads(r, prefix):
    limit, window, jobs, threads = 5, 0.5, 24, 4
    limiter = make(r, prefix, limit=limit, window=window)
    grants: dict[str, tuple[float, str]] = {}
    denied: dict[str, list] = {}
    errors = []
    lock = threading.Lock()

    def run(ids):
        try:
            for job_id in ids:
                when, member, denials = acquire_until_granted(limiter, job_id, f"{job_id}:1")
                with lock:
                    grants[job_id] = (when, member)
                    denied[job_id] = denials
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    ids = [f"job-{i:02d}" for i in range(jobs)]
    workers = [threading.Thread(target=run, args=(ids[k::threads],)) for k in range(threads)]
    start = server_now(r)
    for t in workers:
        t.start()
    for t in workers:
        t.join(30)
    assert not errors, errors
    assert sorted(grants) == ids
    assert all(member == f"{job_id}:1" for job_id, (_, member) in grants.items())

    times = sorted(when for when, _ in grants.values())
    # the property: never more than `limit` grants in any window ...
    assert max_in_window(times, window) <= limit
    # ... with the margin: limit+1 consecutive grants span at least window + margin (minus the time
    # it takes to read the clock after a grant)
    spans = [times[i + limit] - times[i] for i in range(len(times) - limit)]
    assert min(spans) >= window + MARGIN - 0.02, spans
    # and the budget is used: 24 creates at 5 per 0.5 s need 4 more windows after the first burst
    assert times[-1] - start < 5 * (window + MARGIN) + 0.5
    # a first burst of `limit` went out without waiting; the rest were told why they waited
    assert sum(1 for d in denied.values() if not d) >= limit
    assert {reason for d in denied.values() for reason, _ in d} <= {"rate", "reserved"}


def test_first_limit_are_granted_at_once_then_a_reservation(r, prefix):
    limiter = make(r, prefix, limit=3, window=0.5)
    t0 = server_now(r)
    for i in range(3):
        allowed, wait, reason, member = limiter.acquire(f"a{i}", f"a{i}:m")
        assert (allowed, wait, reason, member) == (True, 0.0, "ok", f"a{i}:m")
    allowed, wait, reason, member = limiter.acquire("late", "late:m")
    t1 = server_now(r)
    assert (allowed, reason, member) == (False, "rate", None)
    # the slot is one window plus the margin after the first grant
    assert t0 + 0.5 + MARGIN - t1 - 0.01 <= wait <= 0.5 + MARGIN + 0.001
    assert r.hget(limiter.reservations_key, "late") == b"late:m"
    assert r.zscore(limiter.log_key, "late:m") is not None


def test_reservation_redeemed_on_time_early_is_told_to_wait(r, prefix):
    limiter = make(r, prefix, limit=2, window=0.3)
    assert limiter.acquire("a", "a:1")[0] and limiter.acquire("b", "b:1")[0]
    allowed, wait, reason, _ = limiter.acquire("c", "c:1")
    assert (allowed, reason) == (False, "rate")
    slot = r.zscore(limiter.log_key, "c:1") / 1000.0

    # coming back early: told to wait for the same reservation (less time than before)
    allowed, wait2, reason, member = limiter.acquire("c", "c:2")
    assert (allowed, reason, member) == (False, "reserved", None)
    assert 0 < wait2 <= wait
    assert abs((server_now(r) + wait2) - slot) < 0.05
    assert r.zscore(limiter.log_key, "c:2") is None  # no second entry for the early visit

    # coming back at its time: granted, with the reserved entry (not a new one)
    time.sleep(wait2)
    allowed, wait3, reason, member = limiter.acquire("c", "c:3")
    assert (allowed, wait3, reason, member) == (True, 0.0, "ok", "c:1")
    assert r.hget(limiter.reservations_key, "c") is None
    assert r.zscore(limiter.log_key, "c:3") is None
    assert "c" in limiter.in_flight_jobs()


def test_coming_back_late_is_granted_and_the_slot_planned_after_it_slips(r, prefix):
    limiter = make(r, prefix, limit=1, window=0.3)
    assert limiter.acquire("a", "a:1")[0]
    allowed, _, reason, _ = limiter.acquire("c", "c:1")
    assert (allowed, reason) == (False, "rate")
    slot = r.zscore(limiter.log_key, "c:1") / 1000.0
    allowed, _, reason, _ = limiter.acquire("e", "e:1")        # e is planned one window after c's slot
    assert (allowed, reason) == (False, "rate")
    assert r.zscore(limiter.log_key, "e:1") - r.zscore(limiter.log_key, "c:1") == 300 + MARGIN_MS

    until_server_time(r, slot + 0.15)                           # c misses its slot by 150 ms
    allowed, _, reason, member = limiter.acquire("c", "c:2")
    assert (allowed, reason, member) == (True, "ok", "c:1")     # still room: granted, on its own entry
    sent_c = r.zscore(limiter.log_key, "c:1") / 1000.0
    assert sent_c >= slot + 0.15 - 0.001                        # recorded when it really went (ms resolution)

    until_server_time(r, r.zscore(limiter.log_key, "e:1") / 1000.0)
    allowed, wait, reason, _ = limiter.acquire("e", "e:2")      # e's slot is now too close to c
    assert (allowed, reason) == (False, "reserved")
    slipped = r.zscore(limiter.log_key, "e:1") / 1000.0
    assert abs(slipped - (sent_c + 0.3 + 0.001)) < 0.002      # slipped past c's window, kept its place
    until_server_time(r, slipped)
    assert limiter.acquire("e", "e:3")[0]


def test_queued_waits_are_distinct_and_increasing(r, prefix):
    window = 0.2
    limiter = make(r, prefix, limit=1, window=window)
    assert limiter.acquire("first", "first:1")[0]
    waits = []
    for i in range(6):
        allowed, wait, reason, _ = limiter.acquire(f"q{i}", f"q{i}:1")
        assert (allowed, reason) == (False, "rate")
        waits.append(wait)
    gaps = [b - a for a, b in zip(waits, waits[1:])]
    # one create per window: each queued job is one window plus the margin after the one before it
    # (less the few ms between the two calls)
    assert all(window + MARGIN - 0.05 < g <= window + MARGIN + 0.001 for g in gaps), waits


def test_queued_slots_never_crowd_a_window(r, prefix):
    limit, window = 3, 0.4
    limiter = make(r, prefix, limit=limit, window=window)
    for i in range(limit):
        assert limiter.acquire(f"g{i}", f"g{i}:1")[0]
    slots = []
    for i in range(9):
        allowed, wait, reason, _ = limiter.acquire(f"q{i}", f"q{i}:1")
        assert not allowed and reason == "rate"
        slots.append(r.zscore(limiter.log_key, f"q{i}:1"))
    assert slots == sorted(slots)                      # first come, first served
    assert len(set(slots)) >= 3                        # not everybody at one window edge
    everything = [s for _, s in r.zrange(limiter.log_key, 0, -1, withscores=True)]
    for i in range(len(everything) - limit):
        assert everything[i + limit] - everything[i] >= window * 1000 + MARGIN_MS


def test_two_accounts_have_separate_budgets(r, prefix):
    one = make(r, prefix, limit=1, window=5.0, api_key="sk-account-one-1111")
    two = make(r, prefix, limit=1, window=5.0, api_key="sk-account-two-2222")
    assert one.acquire("j1", "j1:1")[0]
    assert not one.acquire("j2", "j2:1")[0]
    assert two.acquire("j3", "j3:1")[0]


def test_confirm_moves_the_entry_later_never_earlier(r, prefix):
    limiter = make(r, prefix, limit=5, window=5.0)
    assert limiter.acquire("a", "a:1")[0]
    before = r.zscore(limiter.log_key, "a:1")
    until_server_time(r, before / 1000.0 + 0.02)
    limiter.confirm("a:1")
    moved = r.zscore(limiter.log_key, "a:1")
    assert moved >= before + 20
    limiter.confirm("never-granted")
    assert r.zscore(limiter.log_key, "never-granted") is None
    # a reservation in the future is not pulled back to now
    r.zadd(limiter.log_key, {"future": moved + 60_000})
    limiter.confirm("future")
    assert r.zscore(limiter.log_key, "future") == moved + 60_000


# -- the in-flight cap ----------------------------------------------------------------------


def test_in_flight_cap_denies_until_release(r, prefix):
    limiter = make(r, prefix, limit=100, window=1.0, max_in_flight=2)
    assert limiter.acquire("a", "a:1")[0]
    assert limiter.acquire("b", "b:1")[0]
    allowed, wait, reason, member = limiter.acquire("c", "c:1")
    assert (allowed, reason, member) == (False, "in_flight", None)
    assert 0.05 <= wait <= 1.0
    assert r.hget(limiter.reservations_key, "c") is None          # no rate slot is spent on it
    assert r.zscore(limiter.log_key, "c:1") is None
    assert limiter.in_flight() == 2 and set(limiter.in_flight_jobs()) == {"a", "b"}

    # a job that already holds a slot may create again (a retried create of the same job)
    assert limiter.acquire("b", "b:2")[0]
    assert limiter.in_flight() == 2

    limiter.release("a")
    assert limiter.in_flight() == 1
    assert limiter.acquire("c", "c:2")[:3] == (True, 0.0, "ok")
    assert set(limiter.in_flight_jobs()) == {"b", "c"}
    limiter.release("no-such-job")
    assert limiter.in_flight() == 2


def test_in_flight_slot_lease_expires(r, prefix):
    limiter = make(r, prefix, limit=100, window=1.0, max_in_flight=1, slot_lease=0.3)
    assert limiter.acquire("a", "a:1")[0]
    t0 = server_now(r)
    assert limiter.acquire("b", "b:1")[2] == "in_flight"
    wait_until(lambda: limiter.acquire("b", "b:1")[0], 3.0, "the lease of a to expire")
    assert server_now(r) - t0 >= 0.25
    assert limiter.in_flight_jobs() == ["b"]


# -- pauses ---------------------------------------------------------------------------------


def test_cool_down_denies_with_reason_cooldown_then_lifts(r, prefix):
    limiter = make(r, prefix)
    limiter.cool_down(0.3)
    allowed, wait, reason, member = limiter.acquire("a", "a:1")
    assert (allowed, reason, member) == (False, "cooldown", None)
    assert 0 < wait <= 0.3
    assert r.zcard(limiter.log_key) == 0 and limiter.in_flight() == 0
    wait_until(lambda: limiter.acquire("a", "a:1")[0], 3.0, "the cool-down to lift")


def test_cool_down_is_extended_never_shortened(r, prefix):
    limiter = make(r, prefix)
    limiter.cool_down(5)
    limiter.cool_down(0.1)
    assert r.pttl(limiter.cooldown_key) > 4000
    limiter.cool_down(8)
    assert r.pttl(limiter.cooldown_key) > 7000


def test_pause_and_resume(r, prefix):
    limiter = make(r, prefix)
    limiter.cool_down(5)
    limiter.pause(10)
    allowed, wait, reason, _ = limiter.acquire("a", "a:1")
    assert (allowed, reason) == (False, "paused")      # the pause wins over the cool-down
    assert 9 < wait <= 10
    assert 9 < limiter.paused_for() <= 10
    limiter.resume()
    assert limiter.paused_for() == 0
    assert limiter.acquire("a", "a:1")[2] == "cooldown"
    r.delete(limiter.cooldown_key)
    assert limiter.acquire("a", "a:1")[0]


# -- keys -----------------------------------------------------------------------------------


def test_keys_name_the_account_never_the_key(r, prefix):
    limiter = make(r, prefix, limit=1, window=5.0, max_in_flight=10)
    assert limiter.acquire("a", "a:1")[0]
    assert not limiter.acquire("b", "b:1")[0]     # a reservation
    limiter.cool_down(5)
    limiter.pause(5)
    keys = {k.decode() for k in r.scan_iter(f"{prefix}:*")}
    assert keys == {limiter.log_key, limiter.reservations_key, limiter.inflight_key, limiter.cooldown_key,
                    limiter.paused_key}
    account = account_id(API_KEY)
    assert len(account) == 16 and account != API_KEY[:16]
    for key in keys:
        assert account in key
        assert API_KEY not in key and API_KEY[-12:] not in key
    # and no key lives for ever
    assert all(r.pttl(k) > 0 for k in keys if k != limiter.inflight_key)


def test_confirm_of_a_slow_create_also_delays_planned_reservations(r, prefix):
    limit, window = 2, 0.3
    limiter = make(r, prefix, limit=limit, window=window)
    assert limiter.acquire("a", "a:1")[0]
    assert limiter.acquire("b", "b:1")[0]
    b_time = r.zscore(limiter.log_key, "b:1") / 1000.0
    assert not limiter.acquire("c", "c:1")[0]
    assert not limiter.acquire("d", "d:1")[0]
    # a's createTask answer comes back 200 ms later: upstream may have received it just before
    until_server_time(r, r.zscore(limiter.log_key, "a:1") / 1000.0 + 0.2)
    limiter.confirm("a:1")
    a_time = r.zscore(limiter.log_key, "a:1") / 1000.0
    c_time = acquire_until_granted(limiter, "c", "c:2")[0]
    d_time = acquire_until_granted(limiter, "d", "d:2")[0]
    assert max_in_window([b_time, a_time, c_time, d_time], window) <= limit
