"""One kie.ai account's createTask limiter: a sliding-window log, fair grants across tenants, an
in-flight cap and shared pauses, in Redis.

One Lua call decides which creates may go out *now*, for every worker on every host:

* **Sliding-window log** (sorted set of create times): at most ``limit`` creates in ANY window of
  ``window`` seconds.  Unlike a token bucket (capacity 20 refilling at 2/s lets 40 through in some
  10-s spans) or GCRA (never bursts), the log uses the whole budget and never exceeds it.  A grant
  is written to the log when it is made; when the create really goes out (:meth:`acquire` with the
  grant) it is checked again against what was really sent and moved to that moment, and after the
  HTTP answer :meth:`confirm` moves it to the answer's time, so windows are always counted from
  the latest moment the upstream can have seen the request.
* **Fair grants** (``lua/fair.lua``): a job that cannot go at once waits in its tenant's ready
  queue (priority, then arrival), in Redis.  Each time the window has room, the tenant with the
  least virtual start tag gets the create (start-time fair queuing: a tenant's tag advances by
  1/weight per grant, so busy tenants share creates in proportion to ``KIE_TENANT_WEIGHTS``; an idle
  tenant banks nothing, its share goes to the others).  Every step is O(log n) in waiting jobs and
  tenants.  Every worker's pump asks :meth:`grant` every ``KIE_PUMP_INTERVAL``; granted jobs
  become due in the job store's submit queue, where the pump hands them out under a lease.
* **In-flight caps**: a slot per job (sorted set job id → lease expiry), held from the grant until
  the job's terminal outcome, per account (``KIE_MAX_IN_FLIGHT``) and per tenant
  (``KIE_TENANT_MAX_IN_FLIGHT``); a tenant at its cap steps out of the ready set until a slot frees.
* **Pauses**: a 429 sets a short shared cool-down (honouring ``Retry-After``); a 402, or credits
  below ``KIE_MIN_CREDITS``, pauses the account's submissions for longer.  Both are keys with a TTL;
  the pause's value is its reason.

Time comes from the Redis server's clock.  Keys are per account: a hash of the API key, never the
key.  Scripts: ``lua/acquire.lua``, ``lua/grant.lua``, ``lua/release.lua`` (all on ``lua/fair.lua``),
``lua/confirm.lua``, ``lua/pause.lua``.
"""

from __future__ import annotations

import uuid

from .keys import Keys, account_id
from .scripts import Scripts

# Windows are counted MARGIN_MS longer than the upstream's: a create reaches kie.ai a little after
# the moment it was granted (dispatch lateness + network), and the margin absorbs that.
# Cost: MARGIN_MS per window (1 % of 20/10 s).
MARGIN_MS = 100

MAX_GRANTS_PER_CALL = 64
"""A bound on one grant call's work; more is granted on the next pump tick."""


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


class Limiter:
    """Create-rate limiter, fair scheduler and in-flight caps of one kie.ai account, shared through Redis.

    ``weight_of(tenant)`` and ``cap_of(tenant)`` give a tenant's weight (default 1) and in-flight cap
    (None = only the account's cap).
    """

    def __init__(self, redis, prefix: str, api_key: str | None, *, limit: int, window: float,
                 max_in_flight: int, slot_lease: float, weight_of=None, cap_of=None):
        self.redis = redis
        self.keys = keys = Keys(prefix)
        self.account = account = account_id(api_key)
        self.base = keys.account_base(account)
        self.log_key = keys.rate_log(account)
        self.cooldown_key = keys.cooldown(account)
        self.paused_key = keys.paused(account)
        self.inflight_key = keys.inflight(account)
        self.sched_key = keys.sched(account)
        self.limit = limit
        self.window_ms = int(window * 1000)
        self.max_in_flight = max_in_flight
        self.slot_lease_ms = int(slot_lease * 1000)
        self.weight_of = weight_of or (lambda tenant: 1.0)
        self.cap_of = cap_of or (lambda tenant: None)
        self._run = Scripts(redis)

    @classmethod
    def for_settings(cls, redis, settings, api_key: str | None = None) -> "Limiter":
        """The limiter of one configured account (default: ``KIE_API_KEY``'s), with ``KIE_RATE_LIMIT``,
        ``KIE_MAX_IN_FLIGHT`` and the tenants' weights and caps.

        A slot's lease outlives any job: the sweep times jobs out, and frees their slots, long before.
        """
        return cls(redis, settings.key_prefix, settings.api_key if api_key is None else api_key,
                   limit=settings.rate_limit.limit, window=settings.rate_limit.window,
                   max_in_flight=settings.max_in_flight, slot_lease=settings.job_timeout * 2 + 600,
                   weight_of=settings.tenant_weight, cap_of=settings.tenant_cap)

    def _common(self) -> list:
        return [self.window_ms, self.limit, MARGIN_MS, self.max_in_flight, self.slot_lease_ms, self.base,
                self.keys.job("")]

    def acquire(self, job_id: str, claim_token: str, *, tenant: str = "default",
                priority: int = 0) -> tuple[bool, float, str, str | None]:
        """May the claimed job's create go out now?  Returns (allowed, wait_seconds, reason, member).

        Allowed: ``member`` names the create's log entry for :meth:`confirm`.  Reason ``reserved``:
        the job holds a grant but the window is full for ``wait_seconds`` more (defer it that long).
        Any other reason: the job now waits in its tenant's ready queue and its claim was given back.
        """
        cap = self.cap_of(tenant)
        allowed, wait_ms, reason, *member = self._run(
            "acquire", keys=[self.log_key, self.cooldown_key, self.paused_key, self.inflight_key,
                             self.keys.job(job_id), self.keys.due_submit],
            args=[*self._common(), job_id, claim_token, tenant, int(priority), repr(float(self.weight_of(tenant))),
                  int(cap or 0), uuid.uuid4().hex[:8]])
        return bool(allowed), int(wait_ms) / 1000.0, _text(reason), (_text(member[0]) if member else None)

    def grant(self, max_grants: int = MAX_GRANTS_PER_CALL) -> tuple[list[str], str, int]:
        """Grant every create that may go out now (fairly); each granted job becomes due now in the
        submit queue.  Returns (job ids, why it stopped, Redis commands the script ran)."""
        n, reason, ops, *jobs = self._run(
            "grant", keys=[self.log_key, self.cooldown_key, self.paused_key, self.inflight_key,
                           self.keys.due_submit],
            args=[*self._common(), int(max_grants), uuid.uuid4().hex[:8]])
        return [_text(j) for j in jobs], _text(reason), int(ops)

    def confirm(self, attempt_member: str) -> None:
        """Count the create's window from the moment its answer arrived (see the module docstring)."""
        self._run("confirm", keys=[self.log_key], args=[attempt_member])

    def release(self, job_id: str) -> None:
        """Free the job's in-flight slot (terminal outcome, or a create that made no task)."""
        self._run("release", keys=[self.inflight_key, self.keys.job(job_id), self.log_key, self.cooldown_key,
                                   self.paused_key], args=[job_id, self.base])

    def in_flight(self) -> int:
        return int(self.redis.zcard(self.inflight_key))

    def in_flight_jobs(self) -> list[str]:
        return [_text(m) for m in self.redis.zrange(self.inflight_key, 0, -1)]

    def cool_down(self, seconds: float) -> None:
        """Pause creates of this account for every worker (after a 429)."""
        self._run("pause", keys=[self.cooldown_key], args=[max(1, int(seconds * 1000)), "429"])

    def pause(self, seconds: float, reason: str = "402") -> None:
        """Pause this account's submissions for every worker (a 402, or credits below the minimum)."""
        self._run("pause", keys=[self.paused_key], args=[max(1, int(seconds * 1000)), reason])

    def resume(self) -> None:
        """Clear a pause (an operator topped up the account, or the credit check saw credits again)."""
        self.redis.delete(self.paused_key)

    def paused_for(self) -> float:
        return max(0, int(self.redis.pttl(self.paused_key))) / 1000.0

    def pause_reason(self) -> str | None:
        """Why submissions are paused (``402``, ``low_credits: …``), or None."""
        return _text(self.redis.get(self.paused_key))

    # -- figures (status, metrics, tests) -------------------------------------------------
    def tenants(self) -> list[str]:
        """Every tenant that ever queued a job on this account."""
        return sorted({_text(k)[2:] for k in self.redis.hkeys(self.sched_key) if _text(k).startswith("w:")})

    def waiting(self, tenant: str) -> int:
        return int(self.redis.zcard(self.keys.ready_queue(self.account, tenant)))

    def tenant_in_flight(self, tenant: str) -> int:
        return int(self.redis.zcard(self.keys.tenant_inflight(self.account, tenant)))

    def granted_total(self, tenant: str) -> int:
        return int(self.redis.hget(self.sched_key, f"granted:{tenant}") or 0)

    def window_entries(self) -> list[tuple[str, float]]:
        """(tenant, epoch s) of every create in the current window (a grant's log entry names its tenant)."""
        sec, usec = self.redis.time()
        now_ms = sec * 1000 + usec // 1000
        out = []
        for member, score in self.redis.zrangebyscore(self.log_key, now_ms - self.window_ms, "+inf", withscores=True):
            member = _text(member)
            out.append((member.split("/", 1)[0] if "/" in member else "", score / 1000.0))
        return out

    def status(self) -> dict:
        """This account's figures as every worker sees them now (for ``kie-queue limiter`` and metrics)::

            {"account": "<hash>", "window_seconds": 10.0, "limit": 20, "creates_in_window": 7,
             "waiting": 12, "in_flight": 40, "cap": 100,
             "cooldown": {"reason": "429", "seconds_left": 0.8} | None,
             "pause": {"reason": "402" | "low_credits: 3 < 50", "seconds_left": 291.0} | None,
             "tenants": [{"tenant", "weight", "cap", "waiting", "in_flight", "creates_in_window",
                          "granted_total", "state": "ready" | "at_cap" | "idle"}, ...]}

        ``creates_in_window`` counts creates granted or sent in the last window (per tenant too);
        ``waiting``: jobs in the ready queues (granted jobs not yet sent are in flight).
        """
        tenants = self.tenants()
        sec, usec = self.redis.time()
        now = sec * 1000 + usec // 1000
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrangebyscore(self.log_key, f"({now - self.window_ms}", "+inf")
        pipe.zcount(self.inflight_key, f"({now}", "+inf")
        pipe.pttl(self.cooldown_key)
        pipe.pttl(self.paused_key)
        pipe.get(self.paused_key)
        pipe.zrange(self.keys.blocked_tenants(self.account), 0, -1)
        pipe.hgetall(self.sched_key)
        for t in tenants:
            pipe.zcard(self.keys.ready_queue(self.account, t))
            pipe.zcount(self.keys.tenant_inflight(self.account, t), f"({now}", "+inf")
        entries, in_flight, cool_ms, pause_ms, pause_value, blocked, sched, *per = pipe.execute()
        sched = {_text(k): _text(v) for k, v in sched.items()}
        blocked = {_text(b) for b in blocked}
        by_tenant: dict[str, int] = {}
        for e in entries:
            e = _text(e)
            by_tenant[e.split("/", 1)[0]] = by_tenant.get(e.split("/", 1)[0], 0) + 1
        rows = []
        for i, t in enumerate(tenants):
            waiting, t_in_flight = int(per[2 * i]), int(per[2 * i + 1])
            cap = int(float(sched.get(f"cap:{t}") or 0)) or None
            rows.append({"tenant": t, "weight": float(sched.get(f"w:{t}") or 1), "cap": cap, "waiting": waiting,
                         "in_flight": t_in_flight, "creates_in_window": by_tenant.get(t, 0),
                         "granted_total": int(sched.get(f"granted:{t}") or 0),
                         "state": "at_cap" if t in blocked else ("ready" if f"m:{t}" in sched else "idle")})
        return {
            "account": self.account,
            "window_seconds": self.window_ms / 1000.0,
            "limit": self.limit,
            "creates_in_window": len(entries),
            "waiting": sum(r["waiting"] for r in rows),
            "in_flight": int(in_flight),
            "cap": self.max_in_flight,
            "cooldown": {"reason": "429", "seconds_left": cool_ms / 1000.0} if cool_ms > 0 else None,
            "pause": ({"reason": _text(pause_value) if _text(pause_value) not in (None, "1") else "402",
                       "seconds_left": pause_ms / 1000.0} if pause_ms > 0 else None),
            "tenants": rows,
        }
