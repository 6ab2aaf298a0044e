"""Local processes: ``kie-queue sim`` (the kie.ai simulator), ``kie-queue dashboard`` (the operator dashboard)
and ``kie-queue demo`` (the whole system).

``sim`` hands every argument to ``python -m kiesim`` unparsed, ``--help`` included: its options
and help are the simulator's own (one definition, in ``kiesim.cli``), and the product still never
imports the simulator.
"""

from __future__ import annotations

import os
import sys

import click


@click.command(short_help="run the kie.ai simulator (its options: kie-queue sim --help)", context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                 "help_option_names": []}, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def sim(args):
    """Run the kie.ai simulator (python -m kiesim); options: kie-queue sim --help."""
    os.execv(sys.executable, [sys.executable, "-m", "kiesim", *args])


@click.command(short_help="the whole system and a batch of jobs, end to end")
@click.option("--jobs", type=click.IntRange(min=1), default=20, show_default=True, help="how many jobs to send")
@click.option("--concurrency", type=click.IntRange(min=1), default=4, show_default=True,
              help="worker processes")
@click.option("--workdir", default=".kie-demo", show_default=True, help="logs and state of the demo's processes")
@click.option("--fail-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="share of simulated jobs that fail")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=180.0, show_default=True,
              help="seconds to wait for the batch")
@click.option("--redis-url", envvar="REDIS_URL", default="redis://127.0.0.1:6379/15", show_default=True,
              help="the Redis to use (env REDIS_URL); a private redis-server is started if none answers. "
                   "The demo's keys get their own prefix and are deleted after the batch")
@click.option("--storage", metavar="URL", help="where results go: a folder, file:///abs/path or s3://bucket/prefix "
                                               "(default: KIE_STORAGE_URL, else ./kie-output)")
@click.option("--keep", is_flag=True, help="keep every service (and the dashboard) up after the batch, "
                                          "until Ctrl-C; the demo's keys are removed then")
def demo(jobs, concurrency, workdir, fail_rate, timeout, redis_url, storage, keep):
    """Run simulator, webhook, worker and beat, and push a batch of jobs end to end.

    With KIE_API_KEY and KIE_BASE_URL set it talks to that service instead of the simulator
    (callbacks only if KIE_CALLBACK_URL is set; otherwise it finishes jobs by polling).
    Exits 0 only if every job succeeded.
    """
    from ..demo import run_demo

    return run_demo(jobs=jobs, concurrency=concurrency, workdir=workdir, fail_rate=fail_rate, timeout=timeout,
                    redis_url=redis_url, storage=storage, keep=keep)


@click.command(short_help="serve the operator dashboard (127.0.0.1 by default)")
@click.option("--port", type=click.IntRange(1, 65535), envvar="PORT", default=8050, show_default=True,
              help="the port to listen on (env PORT)")
@click.option("--bind", envvar="KIE_DASHBOARD_BIND", default="127.0.0.1", show_default=True,
              help="the address to listen on (env KIE_DASHBOARD_BIND); anything but loopback needs "
                   "KIE_DASHBOARD_TOKEN")
def dashboard(port, bind):
    """Serve the dashboard (the Procfile's dashboard process): jobs, a job's timeline and images, the limiter,
    the gallery, retry and cancel.  Configuration comes from the environment, as for the other processes."""
    from ...settings import Settings
    from ..stack import dashboard_command

    env = {**os.environ, "KIE_DASHBOARD_BIND": bind}
    problem = Settings.from_env(env).dashboard_exposure_problem()
    if problem is not None:
        raise problem
    argv = dashboard_command(port, Settings.from_env(env).dashboard_bind)
    os.execve(argv[0], argv, env)
