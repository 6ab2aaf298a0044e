"""What the pages show, computed from ``worker.ops`` (the same queries as the command line): table rows
with durations, the limiter's recent creates, the gallery, and the one safe way to a result file."""

from __future__ import annotations

import datetime as dt
import itertools
import time
from typing import Iterator

from worker.ops import queries
from worker.results.storage import storage_from_settings

STATES = ("accepted", "submitting", "submitted", "succeeded", "failed", "timed_out", "cancelled", "rejected")
AGES = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "1d": 86400, "7d": 7 * 86400}
IMAGE_TYPES = {"image/png", "image/jpeg", "image/webp"}
HISTORY_SECONDS = 300


def _seconds(iso: str | None) -> float | None:
    if not iso:
        return None
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def durations(job: dict, now: float | None = None) -> dict:
    """Seconds the job waited for its create, spent generating, and in all (so far, if unfinished)."""
    now = time.time() if now is None else now
    created, submitted, finished = (_seconds(job.get(k)) for k in ("created_at", "submitted_at", "finished_at"))
    end = finished or now
    return {
        "waited": (submitted or end) - created if created else None,
        "generating": end - submitted if submitted else None,
        "total": end - created if created else None,
    }


def row(view) -> dict:
    job = view.to_json()
    prompt = (job.get("input") or {}).get("prompt") or ""
    return {**job, "prompt_start": prompt[:80] + ("…" if len(prompt) > 80 else ""), **durations(job)}


def has_tenants(rows: list[dict]) -> bool:
    """Whether the table needs a tenant column: some job names a tenant other than ``default``."""
    return any((r.get("tenant") or "default") != "default" for r in rows)


def jobs_table(rt, *, state: str | None, age: str | None, search: str | None, limit: int = 100) -> list[dict]:
    if search:
        found = queries.find_job(rt, search.strip())
        return [row(found)] if found else []
    return [row(v) for v in queries.list_jobs(rt, state=state or None, since_seconds=AGES.get(age or ""),
                                               limit=limit)]


def create_history(rt, seconds: int = HISTORY_SECONDS, now: float | None = None) -> list[int]:
    """Creates answered per second over the last ``seconds`` (oldest first), from the jobs' submission times."""
    now = time.time() if now is None else now
    counts = [0] * seconds
    for v in queries.list_jobs(rt, since_seconds=seconds + 3600, limit=5000):
        at = _seconds(v.submitted_at)
        if at is not None and now - seconds <= at < now:
            counts[int(at - (now - seconds))] += 1
    return counts


def gallery(rt, limit: int = 48) -> list[dict]:
    items = []
    for v in queries.list_jobs(rt, state="succeeded", limit=limit * 2):
        for n, f in enumerate(v.files):
            if f.get("content_type") in IMAGE_TYPES and f.get("uri"):
                items.append({"job_id": v.job_id, "n": n, "prompt": (v.input or {}).get("prompt") or ""})
                break
        if len(items) >= limit:
            break
    return items


_CREDITS: dict[int, tuple[int, tuple]] = {}


def credits(rt) -> tuple[float | None, str | None]:
    """(remaining credits, or None and why), asked of kie.ai at most once every 30 s per process."""
    bucket = int(time.time() // 30)
    cached = _CREDITS.get(id(rt))
    if cached is None or cached[0] != bucket:
        try:
            answer = (queries.credits(rt), None)
        except Exception as exc:  # noqa: BLE001 - shown as "unavailable" with its kind, never its text
            answer = (None, type(exc).__name__)
        cached = _CREDITS[id(rt)] = (bucket, answer)
    return cached[1]


def result_file(rt, job_id: str, n: int) -> tuple[Iterator[bytes], str] | None:
    """The bytes (streamed) and content type of the ``n``-th stored file of ``job_id``, if it is an image
    kept by this deployment's storage; None otherwise.  The file is named by the job record's own ``uri``,
    which must map back to a name inside the configured folder or bucket: no path from a request ever
    reaches the storage."""
    view = queries.find_job(rt, job_id)
    if view is None or view.job_id != job_id or not 0 <= n < len(view.files):
        return None
    entry = view.files[n]
    if entry.get("content_type") not in IMAGE_TYPES:
        return None
    storage = storage_from_settings(rt.settings)
    name = storage.name_for_uri(entry.get("uri") or "")
    if name is None:
        return None
    chunks = storage.read(name)
    try:
        first = next(chunks, b"")
    except FileNotFoundError:
        return None
    return itertools.chain([first], chunks), entry["content_type"]
