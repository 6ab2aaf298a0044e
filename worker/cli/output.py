"""How commands show what they found: rich on a terminal, plain JSON otherwise.

On a terminal (stdout is a tty and ``--json`` was not given) commands render tables, colours and
live progress with rich.  Piped, or with ``--json``, stdout carries one JSON document and nothing
decorative; progress displays are skipped.  Warnings and errors always go to stderr as one plain
line each, so ``kie-queue jobs | jq`` never sees them.
"""

from __future__ import annotations

import functools
import json
import sys

import click

JSON_HELP = "print plain JSON on stdout (the default when stdout is not a terminal)"


class Output:
    """Where a command's result goes; ``json`` says which way it is rendered."""

    def __init__(self, json_mode: bool):
        self.json = json_mode
        self._console = None

    @classmethod
    def choose(cls, as_json: bool) -> "Output":
        return cls(as_json or not sys.stdout.isatty())

    @property
    def console(self):
        """The rich console on stdout (terminal mode only)."""
        if self._console is None:
            from rich.console import Console
            self._console = Console(highlight=False)
        return self._console

    def result(self, data, render=None) -> None:
        """Show ``data``: as JSON, or through ``render(console, data)`` on a terminal."""
        if self.json or render is None:
            click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
        else:
            render(self.console, data)

    def say(self, text: str) -> None:
        """A line for people (rich markup allowed); dropped in JSON mode."""
        if not self.json:
            self.console.print(text)

    @staticmethod
    def warn(text: str) -> None:
        """One line on stderr, in both modes."""
        click.echo(f"kie-queue: {text}", err=True)


def json_option(fn):
    """Add ``--json`` to a command and pass it an :class:`Output` as ``ui``."""
    @click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
    @functools.wraps(fn)
    def wrapper(*args, as_json: bool, **kwargs):
        return fn(*args, ui=Output.choose(as_json), **kwargs)
    return wrapper


def table(columns, rows, *, title=None, plain=False, header=True):
    """A rich table; ``plain`` drops the borders so each row starts with its first cell (logs, pipes)."""
    from rich import box
    from rich.table import Table

    t = Table(title=title, box=None if plain else box.SIMPLE_HEAVY, pad_edge=not plain, show_edge=not plain,
              header_style="bold", show_header=header)
    for col in columns:
        if isinstance(col, tuple):
            t.add_column(col[0], justify=col[1])
        else:
            t.add_column(col)
    for row in rows:
        t.add_row(*(_cell(c) for c in row))
    return t


def _cell(value):
    from rich.markup import escape
    from rich.text import Text

    if isinstance(value, Text):
        return value
    return "" if value is None else escape(str(value))


STATE_STYLE = {"succeeded": "green", "failed": "red", "timed_out": "red", "rejected": "red", "cancelled": "yellow",
               "submitted": "cyan", "submitting": "cyan", "accepted": "blue", "queued": "dim", "waiting": "dim"}


def styled_state(state: str):
    """``state`` as a rich ``Text`` in its colour."""
    from rich.text import Text

    return Text(str(state), style=STATE_STYLE.get(str(state).split(":")[0].split(" ")[0], ""))
