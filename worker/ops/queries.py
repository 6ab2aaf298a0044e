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
    """The shared limiter as every worker sees it now::

        {"window_seconds": 10.0, "limit": 20, "creates_in_window": 7, "reserved": 3,
         "waiting": 12, "in_flight": 40, "cap": 100,
         "cooldown": {"reason": "429", "seconds_left": 0.8} | None,
         "pause": {"reason": "402 insufficient credits", "seconds_left": 291.0} | None}

    ``creates_in_window``: creates sent in the last window; ``reserved``: jobs holding a future create
    slot; ``waiting``: jobs not yet submitted (in the submit queue, being submitted included);
    ``in_flight``: jobs holding an in-flight slot.
    """
    lim, store, r = rt.limiter, rt.store, rt.redis
    now = store.server_ms()
    pipe = r.pipeline(transaction=False)
    pipe.zcount(lim.log_key, f"({now - lim.window_ms}", now)
    pipe.hlen(lim.reservations_key)
    pipe.zcard(store.keys.due_submit)
    pipe.zcount(lim.inflight_key, f"({now}", "+inf")
    pipe.pttl(lim.cooldown_key)
    pipe.pttl(lim.paused_key)
    pipe.get(lim.paused_key)
    in_window, reserved, waiting, in_flight, cool_ms, pause_ms, pause_value = pipe.execute()
    return {
        "window_seconds": lim.window_ms / 1000.0,
        "limit": lim.limit,
        "creates_in_window": int(in_window),
        "reserved": int(reserved),
        "waiting": int(waiting),
        "in_flight": int(in_flight),
        "cap": lim.max_in_flight,
        "cooldown": ({"reason": "429 from kie.ai", "seconds_left": cool_ms / 1000.0} if cool_ms > 0 else None),
        "pause": ({"reason": _pause_reason(pause_value), "seconds_left": pause_ms / 1000.0} if pause_ms > 0 else None),
    }


def _pause_reason(value) -> str:
    text = value.decode() if isinstance(value, bytes) else (value or "")
    return text if text and text != "1" else "402 insufficient credits"


def credits(rt) -> float:
    """The account's remaining credits (kie.ai ``GET /api/v1/chat/credit``); raises the client's typed
    errors (``Unauthorized``, ``TransportError``, ...)."""
    return rt.client.credits()
