"""Exceptions raised by the simulator itself, under one base class.

``ConfigError`` is a bad knob value (constructor, CLI flag or ``POST /_sim/config``);
``InvalidRequest`` is a createTask/recordInfo body that kie.ai would answer with
code 422, carrying the offending field so the message reads ``<field>: <problem>``.
Messages never contain the API key or the HMAC key.
"""

from __future__ import annotations


class KiesimError(Exception):
    """Base class of every error raised by kiesim."""


class ConfigError(KiesimError):
    """A simulator knob is unknown or has a value it cannot take."""

    def __init__(self, knob: str, problem: str):
        super().__init__(knob, problem)
        self.knob = knob
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.knob}: {self.problem}"


class InvalidRequest(KiesimError):
    """A request the upstream rejects with code 422; ``str()`` is the body ``msg``."""

    def __init__(self, field: str | None, problem: str):
        super().__init__(field, problem)
        self.field = field
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}" if self.field else self.problem


class UnknownModel(InvalidRequest):
    """The ``model`` is not one the simulator serves (upstream: code 422, a fixed text)."""

    MESSAGE = "The page does not exist or is not published"

    def __init__(self, model: object):
        super().__init__(None, self.MESSAGE)
        self.model = model
