"""Option types of the command line that click does not have: a duration such as ``1h``, ``30m``, ``2d``."""

from __future__ import annotations

import re

import click

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


class Duration(click.ParamType):
    """``90``, ``90s``, ``30m``, ``1h``, ``2d``, ``1w`` as seconds (a float > 0)."""

    name = "DURATION"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            return float(value)
        m = _DURATION.match(str(value))
        if not m or float(m.group(1)) <= 0:
            self.fail(f"must be a positive number with an optional unit s, m, h, d or w (e.g. 30m, 1h, 2d), "
                      f"got {value!r}", param, ctx)
        return float(m.group(1)) * _UNITS[m.group(2) or "s"]


DURATION = Duration()
