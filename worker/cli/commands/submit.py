"""``kie-queue submit``: one prompt, or every row of a file, enqueued as ``generate | download``.

Everything is checked with the worker's own code before the first message is sent (a bad value
or a bad row: exit 2, nothing enqueued).  ``--wait`` follows the jobs (a spinner for one, a
progress bar for a batch) until they finish or ``--wait-timeout`` passes, warns when no worker
consumes the queue, and prints the results; ``--out DIR`` copies the files there.
"""

from __future__ import annotations

from pathlib import Path

import click

from ...jobs.arguments import DEFAULT_MODEL
from ..enqueue import JobSpec, enqueue
from ..failures import CliFailure
from ..output import json_option, styled_state, table


def job_options(fn):
    """Options that shape every job of the command (per-job fields of a file row override them)."""
    for option in reversed([
        click.option("--model", default=DEFAULT_MODEL, show_default=True, help="the kie.ai model"),
        click.option("--image-size", help="input.image_size, e.g. 16:9 (the model's schema checks it)"),
        click.option("--output-format", help="input.output_format: png or jpeg"),
        click.option("--timeout", type=float, help="seconds from submission until the job fails "
                                                   "(default KIE_JOB_TIMEOUT)"),
        click.option("--allow-unknown-model", is_flag=True, help="send a model the project has no schema "
                                                                 "for, its input unchecked"),
        click.option("--tenant", help="the service the jobs are for: tenants share the budget by "
                                      "KIE_TENANT_WEIGHTS (default: default)"),
        click.option("--priority", type=int, default=0, show_default=True,
                     help="0-9, higher first among the tenant's waiting jobs"),
    ]):
        fn = option(fn)
    return fn


@click.command(short_help="enqueue a prompt or a file of rows (generate | download)")
@click.argument("prompt", required=False)
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="a JSONL file of input objects (optionally with job_id) or a CSV file with a prompt "
                   "column (and optional image_size, output_format, job_id columns)")
@job_options
@click.option("--job-id", help="your idempotency key (the same id twice is one upstream task)")
@click.option("--no-download", is_flag=True, help="do not chain kie.download")
@click.option("--wait", is_flag=True, help="follow the jobs until they finish and print the results")
@click.option("--wait-timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="give up waiting after this long (default: the job timeout, plus the time the rate "
                   "limit needs for the batch, plus 30 s)")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="with --wait: copy the result files into this folder")
@json_option
def submit(prompt, file, model, image_size, output_format, timeout, allow_unknown_model, tenant, priority, job_id,
           no_download, wait, wait_timeout, out_dir, ui):
    """Enqueue PROMPT (or every row of --file) as kie.generate | kie.download.

    Every job is checked as the worker checks it before anything is sent: a bad value, or a bad
    row of the file (reported with its line number), enqueues nothing (exit 2).  With --wait the
    exit code is 0 only if every job succeeded.
    """
    if (prompt is None) == (file is None):
        raise click.UsageError("give either PROMPT or --file FILE")
    if file is not None and job_id is not None:
        raise click.UsageError("--job-id is for one PROMPT; give job ids in the file's job_id column")
    if out_dir is not None and not wait:
        raise click.UsageError("--out needs --wait")
    if out_dir is not None and no_download:
        raise click.UsageError("--out needs the download step (drop --no-download)")
    defaults = {k: v for k, v in (("image_size", image_size), ("output_format", output_format)) if v is not None}
    if file is not None:
        from ..rows import read_specs
        specs = read_specs(file, model=model, timeout=timeout, allow_unknown_model=allow_unknown_model,
                           defaults=defaults, tenant=tenant, priority=priority)
    else:
        spec = JobSpec({"prompt": prompt, **defaults}, model, job_id, timeout, allow_unknown_model,
                       tenant=tenant, priority=priority)
        spec.check()
        specs = [spec]
    sent = enqueue(specs, download=not no_download)
    if not wait:
        _show_enqueued(ui, sent, batch=file is not None)
        return 0
    from ...settings import settings
    from ..waiting import default_timeout
    limit = wait_timeout or default_timeout(settings(), len(sent), timeout)
    if file is None:
        return _wait_one(ui, sent[0], limit, out_dir)
    return _wait_batch(ui, sent, limit, out_dir)


def _show_enqueued(ui, sent, *, batch: bool) -> None:
    rows = [{"job_id": s.job_id, "celery_task_id": s.celery_task_id, **({"line": s.line} if batch else {})}
            for s in sent]
    if ui.json:
        ui.result({"jobs": rows} if batch else rows[0])
    elif batch:
        ui.say(f"enqueued {len(sent)} jobs")
    else:
        ui.say(f"enqueued job [bold]{sent[0].job_id}[/bold] (celery task {sent[0].celery_task_id})")


def _waiter(ui, sent, limit):
    from ...celery_app import app
    from ...runtime import runtime
    from ..waiting import Waiter

    rt = runtime()
    return Waiter(sent, store=rt.store, app=app, queue=rt.settings.queue, timeout=limit, warn=ui.warn)


def _wait_one(ui, sent, limit, out_dir) -> int:
    waiter = _waiter(ui, [sent], limit)
    outcome = waiter.outcomes[0]
    if ui.json:
        finished = waiter.run()
    else:
        ui.say(f"enqueued job [bold]{sent.job_id}[/bold] (celery task {sent.celery_task_id})")
        from rich.text import Text

        with ui.console.status(f"job {sent.job_id}: queued") as spinner:
            finished = waiter.run(lambda: spinner.update(Text.assemble(
                f"job {sent.job_id}: ", styled_state(outcome.state), f"  ({waiter.elapsed:.0f} s)")))
    if not finished:
        raise CliFailure(f"gave up waiting after {limit:.0f} s: job {sent.job_id} is {outcome.state} "
                         f"(it keeps going; see kie-queue status {sent.job_id})")
    if outcome.state != "succeeded":
        ui.warn(f"job {sent.job_id} failed: {outcome.error}")
        if ui.json:
            ui.result(outcome.as_dict())
        return 1
    result = dict(outcome.result)
    if out_dir is not None:
        from ..outdir import copy_results
        result["copied"] = copy_results(result, out_dir)
    if ui.json:
        ui.result(result)
    else:
        ui.console.print_json(data=result)
    return 0


def _wait_batch(ui, sent, limit, out_dir) -> int:
    waiter = _waiter(ui, sent, limit)
    if ui.json:
        finished = waiter.run()
    else:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns = [TextColumn("jobs"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                   TimeElapsedColumn()]
        with Progress(*columns, console=ui.console, transient=False) as progress:
            bar = progress.add_task("", total=len(sent))

            def tick():
                c = waiter.counts()
                progress.update(bar, completed=c["succeeded"] + c["failed"],
                                description=f"[green]{c['succeeded']} succeeded[/] [red]{c['failed']} failed[/] "
                                            f"{c['waiting']} waiting")
            finished = waiter.run(tick)
    entries = []
    for o in waiter.outcomes:
        entry = o.as_dict()
        if o.state == "succeeded" and out_dir is not None:
            from ..outdir import copy_results
            entry["copied"] = copy_results(o.result, out_dir)
        entries.append(entry)
    counts = waiter.counts()
    ui.result({"jobs": entries, **counts}, _render_batch)
    if not finished:
        raise CliFailure(f"gave up waiting after {limit:.0f} s: {counts['waiting']} of {len(sent)} jobs "
                         "unfinished (they keep going; see kie-queue jobs)")
    if counts["failed"]:
        ui.warn(f"{counts['failed']} of {len(sent)} jobs failed")
        return 1
    return 0


def _render_batch(console, data) -> None:
    rows = []
    for e in data["jobs"]:
        detail = (e.get("copied") or [None])[0] or ""
        if not detail and e.get("result"):
            detail = ((e["result"].get("files") or [{}])[0]).get("path", "")
        if e.get("error"):
            detail = e["error"]["message"]
        rows.append((e.get("line", ""), e["job_id"], styled_state(e["state"]), detail))
    console.print(table([("line", "right"), "job", "state", "file / error"], rows))
