"""The Lua scripts of the job store and the limiter, loaded by name from ``lua/*.lua``.

Each script file starts with a header comment naming its KEYS and ARGV.  Every script runs after
one shared prologue that defines ``now`` (the Redis server's clock in ms, so hosts with skewed
clocks agree) and the job-state sets of ``worker.store.states`` as Lua tables (``TERMINAL[state]``),
so no script spells the clock or a list of states itself.  The prologue also holds the functions
in ``lua/_lib.lua`` (``event``: append to a job's timeline; ``restart``: put a finished or failing
job back to ``accepted`` as its next generation), so a transition and its timeline entry are one
atomic step.  A line ``-- include: NAME`` is replaced by ``lua/NAME.lua`` (a library of local
functions shared by a few scripts, e.g. the fair scheduler's ``fair.lua``).  Files are read on first
use, never at import.
"""

from __future__ import annotations

import functools
import re
from importlib.resources import files

from . import states
from .keys import TIMELINE_CAP

_CLOCK = "local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)"


def _lua_set(name: str, members) -> str:
    return f"local {name} = {{" + ", ".join(f"{m}=true" for m in sorted(members)) + "}"


@functools.lru_cache(maxsize=1)
def prologue() -> str:
    """The lines every script starts with."""
    return "\n".join([
        _CLOCK,
        _lua_set("TERMINAL", states.TERMINAL),
        _lua_set("FINISHED", states.FINISHED),
        _lua_set("UNSUBMITTED", states.UNSUBMITTED),
        _lua_set("RERUNNABLE", states.RERUNNABLE),
        f"local TIMELINE_CAP = {TIMELINE_CAP}",
        files(__package__).joinpath("lua", "_lib.lua").read_text(),
    ]) + "\n"


_INCLUDE = re.compile(r"^-- include: ([a-z_]+)$", re.MULTILINE)


def _read(name: str) -> str:
    return files(__package__).joinpath("lua", f"{name}.lua").read_text()


@functools.lru_cache(maxsize=None)
def source(name: str) -> str:
    """The full text of script ``name`` (``lua/<name>.lua`` after the prologue, includes expanded)."""
    return prologue() + _INCLUDE.sub(lambda m: _read(m.group(1)), _read(name))


class Scripts:
    """The scripts registered on one Redis client, each once: ``Scripts(r)("finish", keys, args)``."""

    def __init__(self, redis):
        self.redis = redis
        self._registered: dict = {}

    def __call__(self, name: str, keys: list, args: list, client=None):
        """Run script ``name``; ``client`` may be a pipeline of the same Redis (the result comes from it)."""
        script = self._registered.get(name)
        if script is None:
            script = self._registered[name] = self.redis.register_script(source(name))
        return script(keys=keys, args=args, client=client)
