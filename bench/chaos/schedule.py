"""The seeded fault schedule of a chaos run: which fault happens when, decided before the run starts.

``plan(...)`` returns a time-ordered list of ``Fault(at, kind, arg)``; the same seed and options give
the same plan.  Kinds: ``kill_worker`` (SIGKILL a random worker, start a replacement),
``webhook_down`` / ``webhook_up``, ``redis_restart`` (arg ``graceful`` or ``SIGKILL``), ``burst``
(arg ``(code, count)``: the simulator answers the next creates with it), ``partition`` / ``heal``
(one worker host's link, netns only), ``kill_primary`` (Sentinel failover).  The simulator's
per-task knobs (duplicate, late, early, dropped callbacks) are set once at the start by
:func:`sim_knobs`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    at: float          # seconds after the first job was sent
    kind: str
    arg: object = None


def plan(seed: int, *, window: float, kill_every: float, webhook_down: tuple[float, float],
         redis_restarts: bool = True, bursts: bool = True, partition: float | None = None,
         failover: bool = False) -> list[Fault]:
    """Faults spread over ``[0, window]`` seconds."""
    rnd = random.Random(seed)
    faults: list[Fault] = []
    t = rnd.uniform(0.5, 1.0) * kill_every
    while kill_every and t < window:
        faults.append(Fault(round(t, 2), "kill_worker"))
        t += rnd.uniform(0.6, 1.4) * kill_every
    down_at = rnd.uniform(0.15, 0.35) * window
    down_for = rnd.uniform(*webhook_down)
    faults += [Fault(round(down_at, 2), "webhook_down"), Fault(round(down_at + down_for, 2), "webhook_up")]
    if redis_restarts and not failover:
        faults.append(Fault(round(rnd.uniform(0.3, 0.5) * window, 2), "redis_restart", "graceful"))
        faults.append(Fault(round(rnd.uniform(0.6, 0.8) * window, 2), "redis_restart", "SIGKILL"))
    if bursts:
        faults.append(Fault(round(rnd.uniform(0.1, 0.3) * window, 2), "burst", (429, rnd.randint(5, 15))))
        faults.append(Fault(round(rnd.uniform(0.4, 0.7) * window, 2), "burst", (500, rnd.randint(3, 8))))
    if partition:
        at = rnd.uniform(0.3, 0.5) * window
        faults += [Fault(round(at, 2), "partition"), Fault(round(at + partition, 2), "heal")]
    if failover:
        faults.append(Fault(round(rnd.uniform(0.4, 0.6) * window, 2), "kill_primary"))
    return sorted(faults, key=lambda f: f.at)


def sim_knobs(*, late_delay: float, scale: float = 1.0) -> dict:
    """Per-task fault rates for the simulator (its ``seed`` makes them replayable); ``scale``
    multiplies them (a small run needs higher rates to see each fault)."""
    return {"duplicate_rate": 0.1 * scale, "late_rate": 0.05 * scale, "late_delay": late_delay,
            "early_rate": 0.05 * scale, "lose_callbacks": 0.05 * scale}
