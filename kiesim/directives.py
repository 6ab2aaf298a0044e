"""Per-task test directives embedded in the prompt, e.g. ``"a cat [sim:fail=422:nsfw]"``.

They let a test steer one job without touching global knobs:

=================================  ===========================================================
``[sim:fail]``                     the task fails: failCode ``"500"``, failMsg ``"internal error"``
``[sim:fail=CODE:MESSAGE]``        the task fails with that failCode and failMsg
``[sim:fail=CODE[:MESSAGE]*K]``    ... only the first K tasks created with this exact prompt
``[sim:create=CODE]``              createTask answers body code CODE and creates nothing
``[sim:create=CODE*K]``            ... only for the first K attempts with this exact prompt
``[sim:duration=SECONDS]``         this task's duration
``[sim:nocallback]``               this task's callback is never sent
``[sim:images=N]``                 N result URLs (1..10, default 1)
=================================  ===========================================================

An unknown or malformed directive is a 422 (``prompt: ...``) so typos do not pass silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidRequest

_DIRECTIVE_RE = re.compile(r"\[sim:([a-z_]+)(?:=([^\]]*))?\]")
DEFAULT_FAIL = ("500", "internal error")


class _BadDirective(Exception):
    """Internal: a directive whose argument is out of range."""


@dataclass
class Directives:
    fail: tuple[str, str] | None = None
    fail_times: int | None = None  # None = every task
    create_code: int | None = None
    create_times: int | None = None  # None = every attempt
    duration: float | None = None
    nocallback: bool = False
    images: int = 1


def parse_directives(prompt: str) -> Directives:
    """Read every ``[sim:...]`` in ``prompt``; raises ``InvalidRequest("prompt", ...)`` on a bad one."""
    found = Directives()
    for match in _DIRECTIVE_RE.finditer(prompt or ""):
        name, arg = match.group(1), match.group(2)
        text = match.group(0)
        try:
            if name == "fail":
                if arg is None:
                    found.fail = DEFAULT_FAIL
                else:
                    times = re.search(r"\*(\d+)$", arg)
                    if times:
                        found.fail_times = int(times.group(1))
                        arg = arg[:times.start()]
                    code, _, message = arg.partition(":")
                    if not code:
                        raise _BadDirective("needs CODE or CODE:MESSAGE")
                    found.fail = (code, message or "generation failed")
            elif name == "create":
                code, _, times = (arg or "").partition("*")
                found.create_code = int(code)
                found.create_times = int(times) if times else None
                if found.create_code == 200 or found.create_code < 100:
                    raise _BadDirective("needs an error code such as 500")
            elif name == "duration":
                found.duration = float(arg)
                if not found.duration >= 0:
                    raise _BadDirective("needs seconds >= 0")
            elif name == "nocallback":
                found.nocallback = True
            elif name == "images":
                found.images = int(arg)
                if not 1 <= found.images <= 10:
                    raise _BadDirective("needs 1..10")
            else:
                raise _BadDirective("unknown simulator directive")
        except _BadDirective as exc:
            raise InvalidRequest("prompt", f"{exc}: {text}") from None
        except (TypeError, ValueError):
            raise InvalidRequest("prompt", f"malformed simulator directive: {text}") from None
    return found
