"""Acting on jobs: ``retry``, ``cancel`` and ``resume`` (the operations layer, ``worker.ops.actions``, does it)."""

from __future__ import annotations

import click

from ..output import json_option, table
from ..params import DURATION


def _rt_and_app():
    from ...celery_app import app
    from ...runtime import runtime

    return runtime(), app


@click.command()
@click.argument("refs", nargs=-1, metavar="JOB...")
@click.option("--state", type=click.Choice(["failed", "timed_out"]), help="retry every job in this state")
@click.option("--since", type=DURATION, help="with --state: only jobs created this long ago or later (1h, 30m)")
@json_option
def retry(refs, state, since, ui):
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
        refs = [j["job_id"] for j in list_jobs(rt, state=state, since_seconds=since, limit=None)]
    outcome = retry_jobs(rt, app, list(refs))
    ui.result(outcome, _render_actions("retried"))
    return _exit_for(outcome)


@click.command()
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
    ui.result(outcome, _render_actions("cancelled"))
    return _exit_for(outcome)


@click.command()
@json_option
def resume(ui):
    """Lift a pause of submissions (402: no credits) and wake the waiting jobs."""
    from ...ops.actions import resume as resume_submissions

    rt, _ = _rt_and_app()
    outcome = resume_submissions(rt)
    ui.result(outcome, _render_actions("resumed"))
    return 0


def _exit_for(outcome) -> int:
    items = outcome if isinstance(outcome, list) else (outcome or {}).get("jobs", [])
    return 1 if any(isinstance(i, dict) and i.get("error") for i in items) else 0


def _render_actions(verb):
    def render(console, outcome) -> None:
        items = outcome if isinstance(outcome, list) else None
        if items is None:
            console.print(table(["", ""], [(k, v) for k, v in (outcome or {}).items()], title=verb))
            return
        cols = sorted({k for i in items for k in i}, key=lambda k: (k != "job_id", k))
        console.print(table(cols, [[i.get(c) for c in cols] for i in items], title=verb))
    return render
