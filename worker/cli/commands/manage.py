"""Acting on jobs: ``retry``, ``cancel`` and ``resume`` (the operations layer, ``worker.ops.actions``, does it)."""

from __future__ import annotations

import click

from ..output import json_option, styled_state, table
from ..params import DURATION


def _rt_and_app():
    from ...celery_app import app
    from ...runtime import runtime

    return runtime(), app


@click.command(short_help="run failed jobs again, with their post-processing")
@click.argument("refs", nargs=-1, metavar="JOB...")
@click.option("--state", type=click.Choice(["failed", "timed_out"]), help="retry every job in this state")
@click.option("--since", type=DURATION, help="with --state: only jobs created this long ago or later (1h, 30m)")
@click.option("--limit", type=click.IntRange(min=1), default=1000, show_default=True,
              help="with --state: at most this many jobs, newest first")
@json_option
def retry(refs, state, since, limit, ui):
    """Run failed jobs again: a new upstream task each, then the post-processing that was parked
    behind the job, again.

    The re-run steps get new Celery task ids: AsyncResults you hold for the original chain stay
    FAILURE.  The job record keeps every attempt.  A job that succeeded is not re-run.
    """
    if bool(refs) == bool(state):
        raise click.UsageError("give JOB ids or --state failed|timed_out")
    if since is not None and not state:
        raise click.UsageError("--since goes with --state")
    from ...ops.actions import retry as retry_jobs

    rt, app = _rt_and_app()
    if state:
        from ...ops.queries import list_jobs
        refs = [v.job_id for v in list_jobs(rt, state=state, since_seconds=since, limit=limit)]
    outcome = retry_jobs(rt, app, list(refs))
    ui.result(outcome, _render_actions("retry"))
    return _exit_for(outcome, "retried")


@click.command(short_help="cancel jobs (kie.ai has no cancel: credits may be spent)")
@click.argument("refs", nargs=-1, required=True, metavar="JOB...")
@json_option
def cancel(refs, ui):
    """Cancel jobs: one not yet submitted never is; a submitted one is marked cancelled and its later
    outcome ignored.

    kie.ai has no cancel call: a job already submitted still runs there and its credits may be
    spent.  Either way the job's chain fails with worker.errors.GenerationCancelled and its
    errbacks run once.
    """
    from ...ops.actions import cancel as cancel_jobs

    rt, app = _rt_and_app()
    outcome = cancel_jobs(rt, app, list(refs))
    ui.result(outcome, _render_actions("cancel"))
    return _exit_for(outcome, "cancelled")


@click.command(short_help="lift a 402 (no credits) pause on submissions")
@json_option
def resume(ui):
    """Lift a pause of submissions (402: no credits) and wake the waiting jobs."""
    from ...ops.actions import resume as resume_submissions

    rt, _ = _rt_and_app()
    outcome = resume_submissions(rt)
    ui.result(outcome, lambda console, o: console.print(f"submissions resumed; {o['woken']} waiting jobs woken"))
    return 0


def _exit_for(outcome: list[dict], done: str) -> int:
    """0 when every job got ``done``; 1 when any was not found or could not be acted on (each is shown)."""
    bad = [o for o in outcome if o.get("outcome") != done]
    for o in bad:
        click.echo(f"kie-queue: job {o['job_id']}: {o['outcome']}", err=True)
    return 1 if bad else 0


def _render_actions(verb):
    def render(console, outcome) -> None:
        if not outcome:
            console.print(f"nothing to {verb}")
            return
        rows = []
        for o in outcome:
            detail = {k: v for k, v in o.items() if k not in ("job_id", "outcome")}
            rows.append((o["job_id"], styled_state(o["outcome"]), ", ".join(f"{k}={v}" for k, v in detail.items())))
        console.print(table(["job", verb, "detail"], rows))
    return render
