"""The best schedule a rate limit allows, and how close a run came to it (used by benches and tests).

"At most L events in any window of W seconds": the k-th of k events can come no sooner than
W × (⌈k/L⌉ − 1) after the first; a run is checked by the most events it put in any closed span of W.
"""

from __future__ import annotations

import math


def shortest_span(limit: int, window: float, k: int) -> float:
    """The least time (s) from the first to the k-th of k events that L-in-any-W allows."""
    return window * (math.ceil(k / limit) - 1) if k > 0 else 0.0


def max_in_window(times, window: float) -> int:
    """The most of ``times`` (seconds) that fall in any closed span of ``window`` seconds."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - window:
            j += 1
        best = max(best, i - j + 1)
    return best
