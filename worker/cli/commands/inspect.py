"""Looking at the deployment: ``status JOB``, ``jobs``, ``limiter`` and ``credits``.

The answers come from the operations layer (``worker.ops.queries``); these commands only choose
how to show them (``worker.cli.output``).
"""

from __future__ import annotations

import click

from ...store.states import JobState
from ..failures import CliFailure
from ..output import json_option, styled_state, table
from ..params import DURATION


def _rt():
    from ...runtime import runtime

    return runtime()


@click.command(short_help="a job's record and timeline (by job id or kie.ai taskId)")
@click.argument("job")
@json_option
def status(job, ui):
    """Show JOB's record and the timeline of its transitions (JOB: a job id or a kie.ai taskId)."""
    from ...ops.queries import find_job

    view = find_job(_rt(), job)
    if view is None:
        raise CliFailure(f"no job {job!r} (neither a job id nor a kie.ai taskId)")
    ui.result(view.to_json(), _render_status)
    return 0


def _render_status(console, record) -> None:
    from rich.markup import escape

    skip = {"timeline", "input", "generations", "files", "result_urls", "task_ids"}
    rows = [(k, styled_state(v) if k == "state" else _short(v)) for k, v in record.items()
            if k not in skip and v not in (None, [], {})]
    console.print(table(["field", "value"], rows, title=f"job {escape(str(record.get('job_id')))}"))
    if record.get("input"):
        console.print("[bold]input[/bold]")
        console.print_json(data=record["input"])
    for f in record.get("files") or []:
        console.print(f"[bold]file[/bold] {escape(str(f.get('path')))}  ({f.get('bytes')} bytes)")
    timeline = record.get("timeline") or []
    if timeline:
        keys = ["time", "event", "detail"]
        extra = sorted({k for e in timeline for k in e} - set(keys))
        console.print(table([*keys, *extra], [[_short(e.get(k)) for k in (*keys, *extra)] for e in timeline],
                            title="timeline"))


def _short(value, width: int = 100) -> str:
    import json

    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= width else text[:width - 1] + "…"


@click.command(short_help="recent jobs, newest first")
@click.option("--state", type=click.Choice([s.value for s in JobState]), help="only jobs in this state")
@click.option("--since", type=DURATION, help="only jobs created this long ago or later: 30m, 1h, 2d")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="at most this many")
@json_option
def jobs(state, since, limit, ui):
    """List jobs, newest first."""
    from ...ops.queries import list_jobs

    found = list_jobs(_rt(), state=state, since_seconds=since, limit=limit)
    ui.result([v.to_json() for v in found], _render_jobs)
    return 0


def _render_jobs(console, found) -> None:
    if not found:
        console.print("no jobs")
        return
    cols = ["job_id", "state", "created_at", "finished_at", "attempts", "task_id"]
    console.print(table(cols, [[styled_state(j.get(c, "")) if c == "state" else j.get(c) for c in cols]
                               for j in found]))


@click.command(short_help="the shared rate limit, waiting jobs, in flight, pauses")
@json_option
def limiter(ui):
    """The shared rate limit: creates in the current window and the limit, jobs waiting, in flight / cap,
    cool-down and pause with their reason and time left."""
    from ...ops.queries import limiter_status

    ui.result(limiter_status(_rt()), _render_limiter)
    return 0


def _render_limiter(console, data) -> None:
    """One row per kie.ai account (hash of its key), then one per tenant with jobs waiting or in flight."""
    def left(state):
        return "-" if not state else f"{state['reason']}, {state['seconds_left']:.1f} s left"
    accounts = data.get("accounts") or [data]
    console.print(table(["account", "creates in window", "waiting", "in flight", "cool-down", "pause"],
                        [(a["account"], f"{a['creates_in_window']} / {a['limit']} per {a['window_seconds']:g} s",
                          a["waiting"], f"{a['in_flight']} / {a['cap']}", left(a.get("cooldown")),
                          left(a.get("pause"))) for a in accounts], title="limiter"))
    tenants = [(a["account"], t) for a in accounts for t in a.get("tenants") or []]
    if tenants:
        console.print(table(["tenant", "account", "weight", "waiting", "in flight", "cap", "creates in window",
                             "granted", "state"],
                            [(t["tenant"], acct, f"{t['weight']:g}", t["waiting"], t["in_flight"],
                              "-" if t.get("cap") is None else t["cap"], t["creates_in_window"],
                              t["granted_total"], t["state"]) for acct, t in tenants], title="tenants"))


@click.command(short_help="the kie.ai account's remaining credits")
@json_option
def credits(ui):
    """The kie.ai account's remaining credits (GET /api/v1/chat/credit)."""
    from ...ops.queries import credits as credits_query

    ui.result({"credits": credits_query(_rt())}, _render_mapping("credits"))
    return 0


def _render_mapping(title):
    def render(console, data) -> None:
        rows = []
        for k, v in data.items():
            if isinstance(v, dict):
                v = ", ".join(f"{a} {b:.1f} s" if isinstance(b, float) else f"{b}" for a, b in v.items())
            rows.append((k, "-" if v is None else v))
        console.print(table(["", ""], rows, title=title, header=False))
    return render
