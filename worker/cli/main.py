"""The ``kie-queue`` command: a click group of the subcommands in ``worker.cli.commands``.

:func:`main` is the console script's entry point.  It runs the group without click's own error
handling so that every failure is reported the same way (``worker.cli.failures``): one line on
stderr, exit 2 for usage and configuration, 1 for failures.  Configuration comes from the
environment (see README).
"""

from __future__ import annotations

import sys

import click

from ..version import __version__
from .commands import inspect, local, manage, submit


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="kie-queue")
def cli():
    """kie-queue: a distributed Celery job queue for kie.ai image generation.

    Configuration comes from the environment (KIE_API_KEY, REDIS_URL, KIE_QUEUE, ...; see the README).
    Output is rich on a terminal and plain JSON when piped or with --json.
    """


for command in (submit.submit, inspect.status, inspect.jobs, inspect.limiter, inspect.credits, manage.retry,
                manage.cancel, manage.resume, local.sim, local.dashboard, local.demo):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> int:
    from .failures import report

    try:
        rv = cli.main(args=argv, prog_name="kie-queue", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except BaseException as exc:  # noqa: BLE001 - every failure becomes one line and an exit code
        if isinstance(exc, SystemExit):
            raise
        return report(exc, _command_path(argv))
    return rv if isinstance(rv, int) else 0


def _command_path(argv) -> str:
    args = sys.argv[1:] if argv is None else argv
    name = next((a for a in args if not a.startswith("-")), None)
    return f"kie-queue {name}" if name in cli.commands else "kie-queue"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
