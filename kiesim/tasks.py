"""``Task``: one simulated upstream task, and its views (recordInfo ``data``, internal record).

A task's life is a pure function of time: created at ``created``; ``waiting`` for the
first 10 % of its duration, ``queuing`` until 25 %, ``generating`` until 100 %, then
``success`` or ``fail`` (decided at creation).  Times in views are epoch milliseconds;
recordInfo ``costTime`` is in milliseconds (as in the status example of kie.ai's task-detail page).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from .images import normalise_format

PHASES = (("waiting", 0.10), ("queuing", 0.25), ("generating", 1.0))
TERMINAL = ("success", "fail")
_ABSENT_WHILE_PENDING = ("failCode", "failMsg", "costTime", "completeTime")


def ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(round(seconds * 1000))


@dataclass
class Task:
    task_id: str
    model: str
    request: dict          # the createTask body as received
    param: str             # JSON string of ``request`` (what the upstream echoes)
    prompt: str
    created: float         # epoch seconds
    duration: float        # seconds to completion
    outcome: str           # "success" or "fail"
    fail_code: str | None
    fail_msg: str | None
    image_count: int
    output_format: str     # as requested: png / jpeg / jpg (also the URL extension)
    aspect_ratio: str      # resolved: never "auto"
    base_url: str
    callback_url: str | None
    credits_cost: float
    nocallback: bool = False
    account: str = ""          # the account's short id (never the key)
    image_small: bool = False  # small images (side = short side) or realistic ones (side = long side)
    image_side: int = 1024
    # fault decisions, made at creation from the seeded random source
    early: bool = False        # completed at once, callback before the createTask answer
    callback_delay: float = 0.0    # seconds between completion and the first callback attempt
    extra_deliveries: int = 0      # duplicates of the first delivery
    late: bool = False             # picked by late_rate
    duplicated: bool = False       # picked by duplicate_rate
    rolls: dict = field(default_factory=dict)  # uniform draws for choices made at delivery time
    # decided at the first delivery, then kept for retries and duplicates
    callback_lost: bool | None = None
    callback_variant: bool | None = None
    deliveries: list = field(default_factory=list)

    @property
    def complete_at(self) -> float:
        return self.created + self.duration

    @property
    def image_format(self) -> str:
        return normalise_format(self.output_format)

    def state_at(self, now: float) -> str:
        if now >= self.complete_at:
            return self.outcome
        elapsed = now - self.created
        for name, share in PHASES:
            if elapsed < share * self.duration:
                return name
        return "generating"

    def updated_at(self, now: float) -> float:
        """Time of the latest state change at ``now`` (seconds)."""
        if now >= self.complete_at:
            return self.complete_at
        elapsed = now - self.created
        last = self.created
        for _, share in PHASES:
            if elapsed >= share * self.duration:
                last = self.created + share * self.duration
        return last

    def result_urls(self) -> list[str]:
        return [f"{self.base_url}/files/{self.task_id}/{n}.{self.output_format}" for n in range(self.image_count)]

    def result_json(self) -> str:
        return json.dumps({"resultUrls": self.result_urls()})

    def record_info(self, now: float, *, sparse: bool = False) -> dict:
        """``data`` of a recordInfo answer at time ``now``.

        While unfinished, ``failCode``, ``failMsg``, ``costTime`` and ``completeTime`` are null,
        or absent altogether when ``sparse`` (live records did both).
        """
        state = self.state_at(now)
        done = state in TERMINAL
        data = {
            "taskId": self.task_id,
            "model": self.model,
            "state": state,
            "param": self.param,
            "resultJson": self.result_json() if state == "success" else "",
            "failCode": self.fail_code if state == "fail" else None,
            "failMsg": self.fail_msg if state == "fail" else None,
            "costTime": ms(self.duration) if done else None,
            "completeTime": ms(self.complete_at) if done else None,
            "createTime": ms(self.created),
            "updateTime": ms(self.updated_at(now)),
        }
        if sparse and not done:
            for key in _ABSENT_WHILE_PENDING:
                del data[key]
        return data

    def internal(self, now: float) -> dict:
        """Everything the simulator knows, for ``GET /_sim/tasks/<id>``."""
        out = asdict(self)
        del out["rolls"]
        out.update(state=self.state_at(now), complete_at=self.complete_at, result_urls=self.result_urls())
        return out
