"""What a command's failure looks like: one line on stderr and an exit code.

Exit codes: 0 success; 1 the command ran and something failed (a job failed, a job is unknown,
Redis or the broker did not answer, a wait gave up); 2 the command was not run as asked (usage:
a bad option or argument, invalid job input, a bad row in a file, bad configuration); 130 interrupted.
Exceptions that are only the command line's own live here; the product's are in ``worker.errors``.
"""

from __future__ import annotations

import click

from ..errors import ConfigError, InvalidInput, KieQueueError

USAGE, FAILURE, INTERRUPTED = 2, 1, 130


class CliFailure(click.ClickException):
    """A failure of the command (exit 1) with a message for stderr."""

    exit_code = FAILURE


class BadRows(click.ClickException):
    """Rows of a ``submit --file`` file that do not validate: ``problems`` is a list of (line, message)."""

    exit_code = USAGE

    def __init__(self, path: str, problems: list[tuple[int, str]]):
        self.path, self.problems = path, problems
        super().__init__(f"{path}: {len(problems)} bad row(s); nothing was enqueued")

    def lines(self, limit: int = 20) -> list[str]:
        shown = [f"{self.path} line {line}: {msg}" for line, msg in self.problems[:limit]]
        if len(self.problems) > limit:
            shown.append(f"{self.path}: ... and {len(self.problems) - limit} more bad rows")
        shown.append(self.message)
        return shown


def input_message(exc: InvalidInput) -> str:
    """An ``InvalidInput`` as the command line shows it (the option that lifts the model check named)."""
    text = exc.message
    if "allow_unknown_model" in text:
        text += " (on the command line: --allow-unknown-model)"
    return text


def report(exc: BaseException, command: str = "kie-queue") -> int:
    """Print ``exc`` as one line per problem on stderr; return the exit code it stands for."""
    import kombu.exceptions
    import redis

    def say(text: str) -> None:
        click.echo(f"{command}: {text}", err=True)

    if isinstance(exc, BadRows):
        for line in exc.lines():
            say(line)
        return exc.exit_code
    if isinstance(exc, click.UsageError):
        where = exc.ctx.command_path if exc.ctx is not None else command
        hint = f" (see '{where} --help')" if exc.ctx is not None else ""
        click.echo(f"{where}: {exc.format_message()}{hint}", err=True)
        return USAGE
    if isinstance(exc, click.ClickException):
        say(exc.format_message())
        return exc.exit_code
    if isinstance(exc, ConfigError):
        say(f"configuration error: {exc.message}")
        return USAGE
    if isinstance(exc, InvalidInput):
        say(input_message(exc))
        return USAGE
    if isinstance(exc, KieQueueError):
        say(exc.message)
        return FAILURE
    unreachable = _connection_error(exc, (redis.RedisError, kombu.exceptions.OperationalError, OSError))
    if unreachable is not None:
        say(f"cannot reach Redis or the broker: {_redacted(unreachable)}")
        return FAILURE
    if isinstance(exc, (KeyboardInterrupt, click.Abort)):
        return INTERRUPTED
    raise exc


def _connection_error(exc: BaseException, kinds) -> BaseException | None:
    """``exc`` or the first of its causes that is a connection error (Celery wraps them in RuntimeError)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, kinds):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _redacted(exc: BaseException) -> str:
    from ..redact import redact

    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    try:
        from ..settings import settings
        secrets = settings().secrets()
    except KieQueueError:
        secrets = []
    return redact(text, secrets)
