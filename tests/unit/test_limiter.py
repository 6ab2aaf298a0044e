"""Tests of worker.store.limiter against the real Redis (database 5, a unique key prefix per test).

Jobs are real job records (``JobStore.accept``), claimed as a worker claims them, and go through
the limiter's protocol: ``acquire`` (go now, or wait in the tenant's ready queue), ``grant`` (the
pump's call: which queued jobs may go now), ``acquire`` again with the grant (the create goes out).
Time inside the limiter's Lua comes from the Redis server clock, so tests that need the window to
pass use short windows (a few creates per 0.2-0.5 s) and read that clock (``redis.time()``);
fairness and ordering tests make the in-flight cap the only constraint, so they need no clock at all.
Everything else polls a condition under a deadline.
"""

from __future__ import annotations

import collections
import threading
import time

import pytest

from bench.schedule import max_in_window
from worker.cli.stack import wait_for
from worker.store.jobstore import JobStore
from worker.store.keys import account_id
from worker.store.limiter import MARGIN_MS, Limiter

API_KEY = "sk-limiter-test-" + "9c8b7a6f5e4d"
MARGIN = MARGIN_MS / 1000.0


def make(r, prefix, *, limit=5, window=0.5, max_in_flight=1000, slot_lease=60.0, api_key=API_KEY,
         weights=None, caps=None) -> Limiter:
    weights, caps = weights or {}, caps or {}
    return Limiter(r, prefix, api_key, limit=limit, window=window, max_in_flight=max_in_flight,
                   slot_lease=slot_lease, weight_of=lambda t: weights.get(t, 1.0), cap_of=caps.get)


def server_now(r) -> float:
    sec, usec = r.time()
    return sec + usec / 1e6


def wait_until(predicate, timeout: float, what: str):
    return wait_for(predicate, timeout, what, interval=0.005)


def until_server_time(r, moment: float, timeout: float = 5.0):
    wait_until(lambda: server_now(r) >= moment, timeout, f"server time {moment}")


class Jobs:
    """Job records and claims, as the workers make them."""

    def __init__(self, r, prefix, limiter):
        self.store = JobStore(r, prefix)
        self.limiter = limiter
        self.tenant = {}
        self.token = {}

    def submit(self, job_id, tenant="default", priority=0):
        """A new job's first attempt: accept, claim, acquire.  Returns acquire's answer."""
        self.store.accept(job_id, model="google/nano-banana", input={"prompt": job_id}, timeout=60,
                          waiter_id=f"w-{job_id}", waiter={}, first_claim_ms=2000, tenant=tenant, priority=priority)
        self.tenant[job_id] = tenant
        return self.attempt(job_id)

    def attempt(self, job_id):
        verdict, _, token = self.store.claim_submit(job_id, lease_ms=2000, unknown_grace_ms=1000)
        assert verdict in ("claimed", "resubmit"), (job_id, verdict)
        self.token[job_id] = token
        job = self.store.get(job_id)
        answer = self.limiter.acquire(job_id, token, tenant=job["tenant"], priority=int(job["priority"]))
        if answer[0]:
            self.store.mark_sending(job_id, token, send_lease_ms=5000)
        return answer

    def send(self, job_id):
        """A granted job's create goes out (the worker redeems its grant)."""
        answer = self.attempt(job_id)
        assert answer[0], (job_id, answer)
        return answer

    def finish(self, job_id):
        self.store.finish(job_id, "succeeded", {})
        self.limiter.release(job_id)


def drain_by_in_flight(jobs: Jobs, rounds: int) -> list[str]:
    """With the in-flight cap as the only constraint: grant, send and finish, one round at a time;
    returns the tenants in grant order (the jobs that went at once, on their first attempt, first)."""
    early = sorted(jobs.limiter.in_flight_jobs(), key=lambda j: jobs.store.get(j)["created_at"])
    order = [jobs.tenant[j] for j in early]
    for job_id in early:
        jobs.finish(job_id)
    for _ in range(rounds):
        granted, reason, _ = jobs.limiter.grant()
        if not granted:
            break
        for job_id in granted:
            jobs.send(job_id)
            order.append(jobs.tenant[job_id])
        for job_id in granted:
            jobs.finish(job_id)
    return order


# -- the sliding window ----------------------------------------------------------------------


def test_never_more_than_limit_in_any_window_across_threads(r, prefix):
    limit, window, n, threads = 5, 0.5, 24, 4
    limiter = make(r, prefix, limit=limit, window=window)
    jobs = Jobs(r, prefix, limiter)
    sent: dict[str, float] = {}
    errors = []
    lock = threading.Lock()
    ids = [f"job-{i:02d}" for i in range(n)]
    start = server_now(r)
    for job_id in ids:
        if jobs.submit(job_id, tenant=f"t{int(job_id[-2:]) % 3}")[0]:
            sent[job_id] = server_now(r)

    def pump():   # each thread is a worker: its pump grants, and it sends what was granted
        try:
            stop = time.monotonic() + 20
            while time.monotonic() < stop and len(sent) < n:
                granted, _, _ = limiter.grant()
                for job_id in granted:
                    jobs.send(job_id)
                    with lock:
                        sent[job_id] = server_now(r)
                time.sleep(0.01)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=pump) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(30)
    assert not errors, errors
    assert sorted(sent) == ids
    times = sorted(sent.values())
    assert max_in_window(times, window) <= limit
    # with the margin: limit+1 consecutive grants span at least window + margin (less the clock read)
    spans = [times[i + limit] - times[i] for i in range(len(times) - limit)]
    assert min(spans) >= window + MARGIN - 0.02, spans
    # and the budget is used: 24 creates at 5 per 0.5 s need 4 more windows after the first burst
    assert times[-1] - start < 5 * (window + MARGIN) + 0.5
    assert max_in_window([s for _, s in r.zrange(limiter.log_key, 0, -1, withscores=True)],
                         window * 1000) <= limit


def test_first_limit_go_at_once_then_jobs_wait_in_their_queue(r, prefix):
    limiter = make(r, prefix, limit=3, window=0.5)
    jobs = Jobs(r, prefix, limiter)
    for i in range(3):
        allowed, wait, reason, member = jobs.submit(f"a{i}")
        assert (allowed, wait, reason) == (True, 0.0, "ok") and member.startswith(f"default/a{i}:")
    allowed, wait, reason, member = jobs.submit("late")
    assert (allowed, wait, reason, member) == (False, 0.0, "rate", None)
    job = jobs.store.get("late")
    assert job["state"] == "accepted" and job["wait_reason"] == "rate" and "claim" not in job
    assert r.zscore(jobs.store.keys.due_submit, "late") is None        # not in a worker, not in due_submit
    assert r.zrange(jobs.store.keys.ready_queue(limiter.account, "default"), 0, -1) == [b"late"]
    assert limiter.grant()[:2] == ([], "rate")                          # the window is full
    wait_until(lambda: limiter.grant()[0] == ["late"], 3.0, "the window to open")
    assert r.zscore(jobs.store.keys.due_submit, "late") is not None    # due now, for the pump
    assert jobs.store.get("late")["grant"].startswith("default/late:")


def test_a_grant_redeemed_when_the_window_is_full_waits_and_keeps_it(r, prefix):
    limiter = make(r, prefix, limit=1, window=0.3)
    jobs = Jobs(r, prefix, limiter)
    assert jobs.submit("a")[0]
    assert not jobs.submit("c")[0]
    granted = wait_for(lambda: limiter.grant()[0], 3.0, "c's grant", interval=0.005)
    assert granted == ["c"]
    grant = jobs.store.get("c")["grant"]
    # before c goes out, a create shows up in the window that the grant did not count (one whose
    # answer came late and was written at its answer time)
    sec, usec = r.time()
    r.zadd(limiter.log_key, {"default/late-answer:1": sec * 1000 + usec // 1000})
    allowed, wait, reason, _ = jobs.attempt("c")
    assert (allowed, reason) == (False, "reserved") and 0 < wait <= 0.3 + 0.001
    assert jobs.store.get("c")["grant"] == grant                     # it keeps its grant ...
    assert r.zscore(limiter.log_key, grant) is not None
    assert jobs.store.defer("c", jobs.token["c"], delay_ms=int(wait * 1000), reason="reserved")
    time.sleep(wait)
    allowed, _, reason, member = jobs.attempt("c")                   # ... and redeems it then
    assert (allowed, reason, member) == (True, "ok", grant)
    assert "grant" not in jobs.store.get("c")


def test_two_accounts_have_separate_budgets(r, prefix):
    one = Jobs(r, prefix, make(r, prefix, limit=1, window=5.0, api_key="sk-account-one-1111"))
    two = Jobs(r, prefix, make(r, prefix, limit=1, window=5.0, api_key="sk-account-two-2222"))
    assert one.submit("j1")[0]
    assert not one.submit("j2")[0]
    assert two.submit("j3")[0]
    two.limiter.pause(30)
    assert not two.submit("j4")[0] and one.limiter.paused_for() == 0


def test_confirm_moves_the_entry_later_never_earlier(r, prefix):
    limiter = make(r, prefix, limit=5, window=5.0)
    jobs = Jobs(r, prefix, limiter)
    member = jobs.submit("a")[3]
    before = r.zscore(limiter.log_key, member)
    until_server_time(r, before / 1000.0 + 0.02)
    limiter.confirm(member)
    moved = r.zscore(limiter.log_key, member)
    assert moved >= before + 20
    limiter.confirm("never-granted")
    assert r.zscore(limiter.log_key, "never-granted") is None
    r.zadd(limiter.log_key, {"future": moved + 60_000})
    limiter.confirm("future")
    assert r.zscore(limiter.log_key, "future") == moved + 60_000


# -- fair shares, priorities, many tenants ------------------------------------------------------


@pytest.mark.parametrize("weights, expected_a", [({}, 0.5), ({"A": 3}, 0.75), ({"B": 3}, 0.25)])
def test_busy_tenants_share_creates_by_weight(r, prefix, weights, expected_a):
    limiter = make(r, prefix, limit=100_000, window=1.0, max_in_flight=2, weights=weights)
    jobs = Jobs(r, prefix, limiter)
    for i in range(120):
        jobs.submit(f"a{i:03d}", tenant="A")
    for i in range(120):
        jobs.submit(f"b{i:03d}", tenant="B")
    order = drain_by_in_flight(jobs, 400)
    assert len(order) == 240
    # the contended period: until one tenant has nothing left
    contended = order[:next(i for i in range(len(order), 0, -1)
                            if collections.Counter(order[:i])["A"] < 120 and collections.Counter(order[:i])["B"] < 120)]
    share_a = contended.count("A") / len(contended)
    assert abs(share_a - expected_a) <= 0.1 * expected_a, (share_a, len(contended))
    assert len(contended) >= 150


def test_an_idle_tenant_leaves_its_share_and_banks_nothing(r, prefix):
    limiter = make(r, prefix, limit=100_000, window=1.0, max_in_flight=1)
    jobs = Jobs(r, prefix, limiter)
    for i in range(40):
        jobs.submit(f"a{i:02d}", tenant="A")
    order = drain_by_in_flight(jobs, 20)
    assert order == ["A"] * 21                      # alone, A gets everything (1 at once, 20 granted)
    for i in range(10):
        jobs.submit(f"b{i:02d}", tenant="B")
    order = drain_by_in_flight(jobs, 30)
    # B starts at the current virtual time: it alternates with A instead of taking 20 in a row
    assert order[:20].count("B") == 10 and order[:20].count("A") == 10
    assert order[20:] == ["A"] * 9


def test_priorities_order_one_tenants_jobs(r, prefix):
    limiter = make(r, prefix, limit=100_000, window=1.0, max_in_flight=1)
    jobs = Jobs(r, prefix, limiter)
    jobs.submit("first")                                   # takes the only slot
    for i in range(100):
        jobs.submit(f"low{i:03d}", priority=0)
    for i in range(10):
        jobs.submit(f"high{i:02d}", priority=9)
    jobs.submit("mid", priority=5)
    jobs.finish("first")
    granted = []
    for _ in range(13):
        [job_id], _, _ = limiter.grant()
        jobs.send(job_id)
        jobs.finish(job_id)
        granted.append(job_id)
    assert granted == [f"high{i:02d}" for i in range(10)] + ["mid", "low000", "low001"]


def test_priorities_do_not_take_another_tenants_share(r, prefix):
    limiter = make(r, prefix, limit=100_000, window=1.0, max_in_flight=1)
    jobs = Jobs(r, prefix, limiter)
    for i in range(30):
        jobs.submit(f"a{i:02d}", tenant="A", priority=9)
        jobs.submit(f"b{i:02d}", tenant="B", priority=0)
    order = drain_by_in_flight(jobs, 40)
    assert abs(order.count("A") - order.count("B")) <= 1


def test_a_thousand_tenants_with_one_job_each_are_all_served_in_arrival_order(r, prefix):
    limiter = make(r, prefix, limit=100_000, window=1.0, max_in_flight=5)
    jobs = Jobs(r, prefix, limiter)
    for i in range(5):
        jobs.submit(f"big{i}", tenant="big")               # takes every slot
    for i in range(300):
        jobs.submit(f"big-{i:03d}", tenant="big")          # and a backlog behind it
    for i in range(1000):
        assert not jobs.submit(f"one-{i:04d}", tenant=f"svc-{i:04d}")[0]
    for i in range(5):
        jobs.finish(f"big{i}")
    served = []
    while len(served) < 1000:
        granted, _, _ = limiter.grant()
        assert granted
        for job_id in granted:
            jobs.send(job_id)
            jobs.finish(job_id)
            if job_id.startswith("one-"):
                served.append(job_id)
    assert served == [f"one-{i:04d}" for i in range(1000)]
    assert limiter.waiting("big") > 0                       # the backlog did not crowd anyone out


def test_the_cost_of_a_grant_does_not_grow_with_waiting_jobs(r, prefix):
    def cost(waiting_per_tenant: int, tenants: int) -> int:
        p = f"{prefix}-{waiting_per_tenant}-{tenants}"
        limiter = make(r, p, limit=100_000, window=1.0, max_in_flight=1)
        jobs = Jobs(r, p, limiter)
        jobs.submit("holder", tenant="t0000")
        for t in range(tenants):
            for i in range(waiting_per_tenant):
                jobs.submit(f"j-{t}-{i}", tenant=f"t{t:04d}")
        costs = []
        for _ in range(3):
            jobs.finish(next(iter(limiter.in_flight_jobs())))
            granted, _, ops = limiter.grant()
            assert len(granted) == 1
            jobs.send(granted[0])
            costs.append(ops)
        for key in r.scan_iter(f"{p}:*", count=1000):
            r.delete(key)
        return max(costs)

    small = cost(2, 5)              # 10 waiting, 5 tenants
    large = cost(2, 1000)           # 2,000 waiting, 1,000 tenants
    assert large == small, (small, large)


# -- in-flight caps -----------------------------------------------------------------------------


def test_in_flight_cap_queues_until_release(r, prefix):
    limiter = make(r, prefix, limit=100, window=1.0, max_in_flight=2)
    jobs = Jobs(r, prefix, limiter)
    assert jobs.submit("a")[0] and jobs.submit("b")[0]
    assert jobs.submit("c")[:3] == (False, 0.0, "in_flight")
    assert r.zcard(limiter.log_key) == 2                     # no rate slot is spent on it
    assert limiter.in_flight() == 2 and set(limiter.in_flight_jobs()) == {"a", "b"}
    assert limiter.grant()[:2] == ([], "in_flight")
    limiter.release("a")
    assert limiter.in_flight() == 1
    assert limiter.grant()[0] == ["c"]
    assert set(limiter.in_flight_jobs()) == {"b", "c"}      # the slot is held from the grant
    limiter.release("no-such-job")
    assert limiter.in_flight() == 2


def test_a_tenant_at_its_cap_steps_aside_and_returns_when_a_slot_frees(r, prefix):
    limiter = make(r, prefix, limit=100_000, window=1.0, max_in_flight=100, caps={"A": 2})
    jobs = Jobs(r, prefix, limiter)
    assert jobs.submit("a0", tenant="A")[0] and jobs.submit("a1", tenant="A")[0]
    assert jobs.submit("a2", tenant="A")[:3] == (False, 0.0, "tenant_cap")
    assert jobs.store.get("a2")["wait_reason"] == "tenant_cap"
    assert jobs.submit("b0", tenant="B")[0]                  # B is not held up by A's cap
    assert limiter.grant()[0] == []
    assert limiter.tenant_in_flight("A") == 2 and limiter.waiting("A") == 1
    jobs.finish("a0")                                        # a slot frees: A is ready again
    assert limiter.grant()[0] == ["a2"]


def test_in_flight_slot_lease_expires(r, prefix):
    limiter = make(r, prefix, limit=100, window=1.0, max_in_flight=1, slot_lease=0.3)
    jobs = Jobs(r, prefix, limiter)
    assert jobs.submit("a")[0]
    t0 = server_now(r)
    assert jobs.submit("b")[2] == "in_flight"
    wait_until(lambda: limiter.grant()[0] == ["b"], 3.0, "the lease of a to expire")
    assert server_now(r) - t0 >= 0.25
    assert limiter.in_flight_jobs() == ["b"]


# -- pauses -------------------------------------------------------------------------------------


def test_cool_down_queues_with_reason_cooldown_then_lifts(r, prefix):
    limiter = make(r, prefix)
    jobs = Jobs(r, prefix, limiter)
    limiter.cool_down(0.3)
    assert jobs.submit("a")[:3] == (False, 0.0, "cooldown")
    assert r.zcard(limiter.log_key) == 0 and limiter.in_flight() == 0
    wait_until(lambda: limiter.grant()[0] == ["a"], 3.0, "the cool-down to lift")


def test_a_grant_met_by_a_cool_down_is_given_back_and_keeps_its_place(r, prefix):
    limiter = make(r, prefix, limit=100, window=1.0, max_in_flight=1)
    jobs = Jobs(r, prefix, limiter)
    assert jobs.submit("holder")[0]
    for job_id in ("first", "second"):
        assert not jobs.submit(job_id)[0]
    jobs.finish("holder")
    assert limiter.grant()[0] == ["first"]
    limiter.cool_down(0.2)                                   # a 429 elsewhere, before first went out
    assert jobs.attempt("first")[:3] == (False, 0.0, "cooldown")
    assert limiter.in_flight() == 0 and "grant" not in jobs.store.get("first")
    wait_until(lambda: limiter.grant()[0] == ["first"], 3.0, "first, again first")


def test_cool_down_is_extended_never_shortened(r, prefix):
    limiter = make(r, prefix)
    limiter.cool_down(5)
    limiter.cool_down(0.1)
    assert r.pttl(limiter.cooldown_key) > 4000
    limiter.cool_down(8)
    assert r.pttl(limiter.cooldown_key) > 7000


def test_pause_and_resume(r, prefix):
    limiter = make(r, prefix)
    jobs = Jobs(r, prefix, limiter)
    limiter.cool_down(5)
    limiter.pause(10, "low_credits: 3 < 50")
    assert jobs.submit("a")[:3] == (False, 0.0, "paused")    # the pause wins over the cool-down
    assert 9 < limiter.paused_for() <= 10
    assert limiter.pause_reason() == "low_credits: 3 < 50"
    limiter.resume()
    assert limiter.paused_for() == 0 and limiter.pause_reason() is None
    assert limiter.grant()[:2] == ([], "cooldown")
    r.delete(limiter.cooldown_key)
    assert limiter.grant()[0] == ["a"]


def test_waiting_jobs_survive_the_worker_that_queued_them(r, prefix):
    jobs = Jobs(r, prefix, make(r, prefix, limit=100, window=1.0, max_in_flight=1))
    assert jobs.submit("holder")[0]
    for i in range(5):
        jobs.submit(f"w{i}", tenant="A" if i % 2 else "B")
    jobs.finish("holder")
    # every process that queued them is gone: a new client and a new limiter grant them in order
    import redis as redis_lib
    other = redis_lib.Redis(connection_pool=redis_lib.ConnectionPool.from_url(
        f"redis://{r.connection_pool.connection_kwargs['host']}:{r.connection_pool.connection_kwargs['port']}"
        f"/{r.connection_pool.connection_kwargs.get('db', 0)}"))
    fresh = Jobs(other, prefix, make(other, prefix, limit=100, window=1.0, max_in_flight=1))
    fresh.tenant.update(jobs.tenant)
    assert drain_by_in_flight(fresh, 10) == ["B", "A", "B", "A", "B"]
    other.close()


# -- keys -----------------------------------------------------------------------------------


def test_keys_name_the_account_never_the_key(r, prefix):
    limiter = make(r, prefix, limit=1, window=5.0, max_in_flight=10, caps={"A": 5})
    jobs = Jobs(r, prefix, limiter)
    assert jobs.submit("a", tenant="A")[0]
    assert not jobs.submit("b", tenant="A")[0]
    limiter.cool_down(5)
    limiter.pause(5)
    account = account_id(API_KEY)
    limiter_keys = {k.decode() for k in r.scan_iter(f"{prefix}:rl:*")}
    assert limiter_keys == {limiter.log_key, limiter.inflight_key, limiter.cooldown_key, limiter.paused_key,
                            limiter.sched_key, jobs.store.keys.ready_tenants(account),
                            jobs.store.keys.ready_queue(account, "A"), jobs.store.keys.tenant_inflight(account, "A")}
    assert len(account) == 16 and account != API_KEY[:16]
    for key in limiter_keys:
        assert account in key
        assert API_KEY not in key and API_KEY[-12:] not in key
    assert all(r.pttl(k) > 0 for k in (limiter.log_key, limiter.cooldown_key, limiter.paused_key))


def test_status_shows_each_tenants_figures(r, prefix):
    limiter = make(r, prefix, limit=3, window=5.0, max_in_flight=50, weights={"acme": 3}, caps={"beta": 1})
    jobs = Jobs(r, prefix, limiter)
    for i in range(4):
        jobs.submit(f"a{i}", tenant="acme")
    for i in range(2):
        jobs.submit(f"b{i}", tenant="beta", priority=9)
    limiter.pause(60, "low_credits: 3 < 50")
    st = limiter.status()
    assert st["account"] == account_id(API_KEY) and st["limit"] == 3 and st["window_seconds"] == 5.0
    assert st["creates_in_window"] == 3 and st["in_flight"] == 3 and st["cap"] == 50 and st["waiting"] == 3
    assert st["pause"]["reason"] == "low_credits: 3 < 50" and 59 < st["pause"]["seconds_left"] <= 60
    assert st["cooldown"] is None
    rows = {t["tenant"]: t for t in st["tenants"]}
    assert rows["acme"] == {"tenant": "acme", "weight": 3.0, "cap": None, "waiting": 1, "in_flight": 3,
                            "creates_in_window": 3, "granted_total": 3, "state": "ready"}
    assert rows["beta"]["waiting"] == 2 and rows["beta"]["cap"] == 1 and rows["beta"]["creates_in_window"] == 0
    assert API_KEY not in repr(st)


def test_a_job_finished_while_it_waited_costs_neither_budget_nor_its_tenants_turn(r, prefix):
    limiter = make(r, prefix, limit=100_000, window=1.0, max_in_flight=1)
    jobs = Jobs(r, prefix, limiter)
    assert jobs.submit("holder", tenant="C")[0]
    for i in range(3):
        jobs.submit(f"a{i}", tenant="A")
        jobs.submit(f"b{i}", tenant="B")
    jobs.store.finish("a0", "failed", {})                  # e.g. cancelled, or timed out, while it waited
    jobs.store.finish("a1", "failed", {})
    entries = r.zcard(limiter.log_key)
    jobs.finish("holder")
    granted, _, _ = limiter.grant()
    assert granted == ["a2"]                                # A's turn went to its next live job
    assert r.zcard(limiter.log_key) == entries + 1          # and only one create was spent
    jobs.send("a2")
    jobs.finish("a2")
    assert limiter.grant()[0] == ["b0"]
