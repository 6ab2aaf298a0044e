"""Reading a chaos run's outcome: per job (job record, arrivals at the checking task, errbacks,
upstream tasks the simulator made) and the run's row with its verdict.

A job is *terminal* when its chain's end was seen: a success reached ``chaos.record``; a failure
was recorded in the job store and (with ``link_error``) its errback ran.  *Lost* jobs are never
terminal.  Each upstream task beyond the first must be explained by the job's own record: every
resubmission after an unknown create outcome (``resubmitted_after_unknown``) and every automatic
re-generation (``regenerations``) may make one.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field

TERMINAL = ("succeeded", "failed", "timed_out", "rejected")


@dataclass
class JobView:
    job_id: str
    prompt: str
    link_error: bool
    expect_fail: bool
    record: dict = field(default_factory=dict)
    arrivals: list = field(default_factory=list)
    errbacks: list = field(default_factory=list)
    upstream: int = 0

    @property
    def state(self) -> str:
        return self.record.get("state", "missing")

    @property
    def terminal(self) -> bool:
        if self.state == "succeeded":
            return bool(self.arrivals)
        if self.state in TERMINAL:
            return bool(self.errbacks) or not self.link_error
        return False

    @property
    def terminal_at(self) -> float | None:
        if not self.terminal:
            return None
        times = [a["at"] for a in self.arrivals + self.errbacks]
        if times:
            return min(times)
        return float(self.record.get("finished_at", 0)) / 1000 or None

    @property
    def explained_extra(self) -> int:
        """Upstream tasks beyond the first that the record accounts for: resubmissions after an unknown
        create outcome, and automatic re-generations after a transient failure (KIE_GENERATION_RETRIES)."""
        return sum(int(self.record.get(f, 0) or 0) for f in ("resubmitted_after_unknown", "regenerations"))

    @property
    def unexplained_duplicates(self) -> int:
        return max(0, self.upstream - 1 - self.explained_extra)

    def reason(self) -> str:
        outcome = json.loads(self.record.get("outcome") or "{}")
        if outcome.get("error") == "GenerationFailed":
            return f"fail_code {outcome.get('fail_code')}" + (" (expected)" if self.expect_fail else "")
        return self.state + ": " + (self.record.get("last_error") or "")[:60]


def collect(redis, prefix: str, jobs: list[JobView], prompts: dict) -> None:
    """Refresh every view from Redis (a pipeline per 200 jobs) and the simulator's per-prompt creates."""
    for i in range(0, len(jobs), 200):
        batch = jobs[i:i + 200]
        pipe = redis.pipeline(transaction=False)
        for j in batch:
            pipe.hgetall(f"{prefix}:job:{j.job_id}")
            pipe.lrange(f"{prefix}:arrivals:{j.job_id}", 0, -1)
            pipe.lrange(f"{prefix}:errbacks:{j.job_id}", 0, -1)
        out = pipe.execute()
        for k, j in enumerate(batch):
            rec, arr, err = out[3 * k:3 * k + 3]
            j.record = {a.decode(): b.decode() for a, b in rec.items()}
            j.arrivals = [json.loads(x) for x in arr]
            j.errbacks = [json.loads(x) for x in err]
            j.upstream = int(prompts.get(j.prompt, 0))


def explain_doubles(jobs: list[JobView], logs: dict[str, str], killed: set[str]) -> dict[str, str]:
    """For each job whose checking task ran twice, why, read from the workers' logs: the step before it
    (``kie.download``, one Celery task id) was received more than once, by a worker that was then
    SIGKILLed (whole, or a pool process) before acking it: Celery's late ack re-delivers a step that
    had already published the next one.  Jobs with no such evidence are left out (unexplained)."""
    out = {}
    for j in jobs:
        if len(j.arrivals) < 2:
            continue
        ids = set(re.findall(r"Task kie\.download\[([0-9a-f-]+)\] succeeded[^\n]*'job_id': '" + re.escape(j.job_id)
                             + "'", "\n".join(logs.values())))
        for tid in ids:
            receivers = [w for w, text in logs.items() for _ in re.finditer(
                r"Task kie\.download\[" + tid + r"\] received", text)]
            died = [w for w in receivers if w in killed or "signal 9 (SIGKILL)" in logs[w]]
            if len(receivers) > 1 and died:
                out[j.job_id] = (f"kie.download {tid[:8]} received {len(receivers)}x ({', '.join(receivers)}); "
                                 f"{', '.join(sorted(set(died)))} SIGKILLed before the ack")
        if j.job_id not in out and len({a["task_id"] for a in j.arrivals}) == 1 and any(
                a.get("redelivered") for a in j.arrivals[1:]):
            out[j.job_id] = "the checking task's own message re-delivered by the broker (flagged redelivered)"
    return out


def row(label: str, jobs: list[JobView], *, started: float, faults: Counter, extra: dict | None = None,
        doubles_explained: dict[str, str] | None = None) -> dict:
    succeeded = [j for j in jobs if j.terminal and j.state == "succeeded"]
    failed = [j for j in jobs if j.terminal and j.state != "succeeded"]
    lost = [j for j in jobs if not j.terminal]
    with_errback = [j for j in failed if j.link_error]
    continued_twice = [j.job_id for j in jobs if len(j.arrivals) > 1]
    errback_twice = [j.job_id for j in jobs if len(j.errbacks) > 1]
    continued_after_failure = [j.job_id for j in failed if j.arrivals]
    unexplained = [j.job_id for j in jobs if j.unexplained_duplicates]
    last = max((j.terminal_at for j in jobs if j.terminal_at), default=started)
    out = {
        "run": label,
        "jobs": len(jobs),
        "succeeded": len(succeeded),
        "failed": len(failed),
        "failed_reasons": dict(Counter(j.reason() for j in failed)),
        "lost": len(lost),
        "lost_jobs": {j.job_id: j.state for j in lost[:20]},
        "continuations_per_succeeded_job": dict(Counter(len(j.arrivals) for j in succeeded)),
        "continued_twice": continued_twice,
        "double_arrivals": {j.job_id: j.arrivals for j in jobs if len(j.arrivals) > 1},
        "continued_twice_explained": {j: why for j, why in (doubles_explained or {}).items() if j in continued_twice},
        "continued_after_failure": continued_after_failure,
        "errbacks_per_failed_job_with_link_error": dict(Counter(len(j.errbacks) for j in with_errback)),
        "errback_twice": errback_twice,
        "upstream_tasks_per_job": dict(Counter(j.upstream for j in jobs)),
        "extra_upstream_explained": sum(j.upstream - 1 - j.unexplained_duplicates for j in jobs if j.upstream > 1),
        "extra_upstream_unexplained": unexplained,
        "faults": dict(faults),
        "time_to_last_terminal_s": round(last - started, 1),
        **(extra or {}),
    }
    # a second continuation fails the run even when the logs explain it: it is a second run of the user's task
    out["ok"] = not (lost or continued_twice or errback_twice or continued_after_failure or unexplained
                     or any(len(j.errbacks) == 0 for j in with_errback))
    return out


def format_rows(rows: list[dict]) -> str:
    head = ("run", "jobs", "ok", "fail", "lost", "cont/job", "errb/failed", "upstream/job", "dup expl/unexpl",
            "faults", "last terminal", "notes")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in rows:
        lines.append(" | ".join(str(x) for x in (
            r["run"], r["jobs"], r["succeeded"],
            f"{r['failed']} {_kv(r['failed_reasons'])}".strip(), r["lost"],
            _kv(r["continuations_per_succeeded_job"], "x"), _kv(r["errbacks_per_failed_job_with_link_error"], "x"),
            _kv(r["upstream_tasks_per_job"], "x"),
            f"{r['extra_upstream_explained']}/{len(r['extra_upstream_unexplained'])}",
            _kv(r["faults"]), f"{r['time_to_last_terminal_s']} s", _notes(r))))
    return "\n".join("| " + ln + " |" for ln in lines)


def _notes(r: dict) -> str:
    notes = [f"kill={r.get('kill')}", f"appendfsync={r.get('appendfsync')}"]
    if r.get("webhook_down_s") is not None:
        notes.append(f"webhook down {r['webhook_down_s']} s")
    if r.get("continued_twice"):
        notes.append(f"continued twice: {len(r['continued_twice'])} "
                     f"(traced to a re-delivered step: {len(r.get('continued_twice_explained', {}))})")
    if "promotion_s" in r:
        notes.append(f"promoted in {r['promotion_s']} s, transitions lost {r['transitions_lost_in_failover']} "
                     f"of {r['jobs_seen_before_failover']} jobs")
    if "changed_after_heal" in r:
        notes.append(f"partitioned {r['partitioned_worker']}: {len(r['changed_after_heal'])} of "
                     f"{r['finished_before_heal']} finished jobs changed after the heal; its log after: "
                     f"{_kv(r.get('partitioned_worker_log_after_heal', {}))}")
    return "; ".join(notes)


def _kv(d: dict, sep: str = "") -> str:
    if not d:
        return "-"
    if sep:   # {count: jobs} -> "1x:290"
        return ", ".join(f"{k}{sep}:{v}" for k, v in sorted(d.items(), key=lambda kv: str(kv[0])))
    return ", ".join(f"{k}: {v}" for k, v in sorted(d.items(), key=lambda kv: str(kv[0])))
