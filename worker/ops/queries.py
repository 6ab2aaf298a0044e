"""Read-only questions an operator asks: where is job X, what ran lately, why is nothing submitted,
how many credits are left.  Nothing here changes state."""

from __future__ import annotations

from ..store.records import JobView

_PAGE = 200


def resolve(rt, ref: str) -> str | None:
    """The job id that ``ref`` names: a job id, or an upstream (kie.ai) taskId of any generation."""
    store = rt.store
    if store.redis.exists(store.keys.job(ref)):
        return ref
    return store.job_for_task(ref)


def view(rt, job_id: str, *, with_timeline: bool = True) -> JobView | None:
    """The typed view of ``job_id`` (with its timeline unless ``with_timeline`` is False), or None."""
    store = rt.store
    job = store.get(job_id)
    if job is None:
        return None
    callers = store.redis.hlen(store.keys.waiters(job_id))
    timeline = store.timeline(job_id) if with_timeline else []
    return JobView.from_record(job, timeline=timeline, callers=callers, callback_base=rt.settings.callback_url)


def find_job(rt, ref: str) -> JobView | None:
    """The job whose id is ``ref``, or whose upstream (kie.ai) taskId is ``ref``, of any generation."""
    job_id = resolve(rt, ref)
    return view(rt, job_id) if job_id else None


def list_jobs(rt, *, state: str | None = None, since_seconds: float | None = None, limit: int = 50,
              with_timeline: bool = False) -> list[JobView]:
    """Up to ``limit`` jobs, newest first (by creation), optionally only in ``state`` and only created
    in the last ``since_seconds`` (by the Redis server's clock).  Their ``timeline`` is empty unless
    ``with_timeline`` (a timeline is up to 200 events per job).  A state filter reads the jobs of the
    window one by one: narrow it with ``since_seconds`` on a large deployment."""
    if limit <= 0:
        return []
    store = rt.store
    since_ms = None
    if since_seconds is not None:
        since_ms = store.server_ms() - int(since_seconds * 1000)
    out: list[JobView] = []
    start = 0
    while len(out) < limit:
        ids = store.recent_jobs(since_ms=since_ms, start=start, count=_PAGE)
        if not ids:
            break
        start += len(ids)
        for job_id in ids:
            job = _view_in_state(rt, job_id, state, with_timeline)
            if job is not None:
                out.append(job)
                if len(out) >= limit:
                    break
    return out


def _view_in_state(rt, job_id: str, state: str | None, with_timeline: bool) -> JobView | None:
    if state is not None and rt.store.redis.hget(rt.store.keys.job(job_id), "state") not in (state, state.encode()):
        return None
    return view(rt, job_id, with_timeline=with_timeline)


def limiter_status(rt) -> dict:
    """The limiter as every worker sees it now: the default account's figures at the top level, and
    every account's (``KIE_API_KEY``'s first) with its tenants under ``accounts``::

        {"window_seconds": 10.0, "limit": 20, "creates_in_window": 7, "reserved": 3,
         "waiting": 12, "in_flight": 40, "cap": 100,
         "cooldown": {"reason": "429 from kie.ai", "seconds_left": 0.8} | None,
         "pause": {"reason": "402 insufficient credits" | "low_credits: 3 < 50", "seconds_left": 291.0} | None,
         "tenants": [...],            # the default account's tenants (below)
         "accounts": [{"account": "<hash of the key>", ...the same figures..., "tenants": [
             {"tenant": "acme", "weight": 3.0, "cap": 40 | None, "waiting": 9, "in_flight": 12,
              "creates_in_window": 5, "granted_total": 812, "state": "ready" | "at_cap" | "idle"}, ...]}]}

    ``creates_in_window``: creates granted or sent in the last window; ``reserved``: jobs granted a
    create that has not gone out yet; ``waiting``: jobs not yet submitted (in their tenants' ready
    queues, or in the submit queue: retries, grants, claims); ``in_flight``: jobs holding an
    in-flight slot (from their grant on).
    """
    store, r = rt.store, rt.redis
    due = int(r.zcard(store.keys.due_submit))
    accounts = []
    for account in rt.accounts.values():
        st = account.limiter.status()
        pipe = r.pipeline(transaction=False)
        for job_id in account.limiter.in_flight_jobs():
            pipe.hget(store.keys.job(job_id), "grant")
        st["reserved"] = sum(1 for grant in pipe.execute() if grant)
        st["cooldown"] = st["cooldown"] and {**st["cooldown"], "reason": "429 from kie.ai"}
        st["pause"] = st["pause"] and {**st["pause"], "reason": _pause_reason(st["pause"]["reason"])}
        accounts.append(st)
    top = dict(accounts[0])
    top["waiting"] = sum(a["waiting"] for a in accounts) + due
    top["accounts"] = accounts
    return top


def _pause_reason(value) -> str:
    text = value.decode() if isinstance(value, bytes) else (value or "")
    return text if text and text not in ("1", "402") else "402 insufficient credits"


def credits(rt, tenant: str | None = None) -> float:
    """The remaining credits (kie.ai ``GET /api/v1/chat/credit``) of the default account, or of the
    account ``tenant``'s jobs are sent with; raises the client's typed errors (``Unauthorized``,
    ``TransportError``, ...)."""
    return rt.account_for(tenant).client.credits()
