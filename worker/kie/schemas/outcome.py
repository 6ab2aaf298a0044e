"""``Outcome``: one reading of an upstream task (from ``recordInfo`` or a callback).

A frozen value object with no I/O.  ``to_dict()`` is JSON-safe (lists, not
tuples) and ``Outcome.from_dict`` reads it back, so an outcome can be stored in
the job record.  How the values are read from kie.ai's JSON is in
``worker.kie.schemas.upstream``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Union

Number = Union[int, float]

TERMINAL_STATES = ("success", "fail")

COST_MS_THRESHOLD = 1000
"""``costTime`` values at or above this are read as milliseconds, below it as seconds.

kie.ai reports ``costTime`` in seconds in callbacks but in milliseconds in one
status example.  Upstream gives up on a task after 10 minutes (code 408), so a
real duration in seconds stays below 1000, while in milliseconds any generation
(a second or more) is 1000 or above.  ``cost_time`` keeps the raw value.
"""


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The state of one upstream task.

    ``result_urls`` is non-empty exactly when ``state == "success"``.  Times are
    kie.ai's raw values (epoch milliseconds; ``cost_time`` in s or ms, see
    ``cost_seconds``).  ``credits`` is what the task consumed, ``remained_credits``
    the account balance after it.  ``param`` is the echoed request, or ``None``.
    """

    task_id: str
    state: str
    result_urls: tuple[str, ...] = ()
    fail_code: Optional[str] = None
    fail_msg: Optional[str] = None
    model: Optional[str] = None
    credits: Optional[Number] = None
    remained_credits: Optional[Number] = None
    cost_time: Optional[Number] = None
    create_time: Optional[Number] = None
    complete_time: Optional[Number] = None
    update_time: Optional[Number] = None
    param: Optional[dict] = dataclasses.field(default=None, hash=False)

    @property
    def terminal(self) -> bool:
        """True once the task succeeded or failed (no more polling)."""
        return self.state in TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        """True when the task succeeded (``result_urls`` is then non-empty)."""
        return self.state == "success"

    @property
    def cost_seconds(self) -> Optional[float]:
        """``cost_time`` in seconds (see ``COST_MS_THRESHOLD``), ``None`` when unknown or negative."""
        if self.cost_time is None or self.cost_time < 0:
            return None
        if self.cost_time >= COST_MS_THRESHOLD:
            return self.cost_time / 1000.0
        return float(self.cost_time)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of every field, plus ``cost_seconds``."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["result_urls"] = list(self.result_urls)
        out["param"] = dict(self.param) if self.param is not None else None
        out["cost_seconds"] = self.cost_seconds
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Outcome":
        """Rebuild an ``Outcome`` from ``to_dict()`` output (extra keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["result_urls"] = tuple(values.get("result_urls") or ())
        return cls(**values)
