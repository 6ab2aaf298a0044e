"""Sliding-window rate limiting: "never more than N accepted in any W-second span".

kie.ai documents about 20 creates per 10 s per account without saying whether the
window slides; the strict reading is modelled here.  A request is accepted only if
fewer than N requests were accepted in the closed span ``[now - W, now]``; rejected
requests do not count.  A token bucket would allow up to 2N in some spans, which is
exactly the misreading this limiter should expose in a client.

Not thread-safe on its own: the simulator calls it under its state lock.
"""

from __future__ import annotations

import re
from collections import defaultdict, deque

_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_rate_limit(text: str) -> tuple[int, float] | None:
    """Parse ``"20/10s"``, ``"5/2"``, ``"100/1m"``, ``"3/s"`` or ``"off"``.

    Returns ``(limit, window_seconds)``, or ``None`` for ``off``.  Raises
    ``ValueError`` with the offending text otherwise.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a string like '20/10s' or 'off', got {text!r}")
    if text.strip().lower() in ("off", "none", "0", ""):
        return None
    match = _RATE_RE.match(text)
    if not match:
        raise ValueError(f"expected 'N/Ws' (e.g. '20/10s') or 'off', got {text!r}")
    limit = int(match.group(1))
    window = float(match.group(2) or 1) * _UNIT_SECONDS[match.group(3)]
    if limit <= 0 or window <= 0:
        raise ValueError(f"limit and window must be positive, got {text!r}")
    return limit, window


class SlidingWindowLimiter:
    """Per-key log of acceptance times (seconds), pruned to the current window."""

    def __init__(self) -> None:
        self._accepted: dict[str, deque[float]] = defaultdict(deque)

    def try_acquire(self, key: str, limit: int, window: float, now: float) -> bool:
        """Accept (and record ``now``) if fewer than ``limit`` acceptances lie in ``[now-window, now]``."""
        log = self._accepted[key]
        while log and log[0] < now - window:
            log.popleft()
        if len(log) >= limit:
            return False
        log.append(now)
        return True

    def seconds_until_free(self, key: str, limit: int, window: float, now: float) -> float:
        """How long until a request for ``key`` would be accepted (0 if it would be now)."""
        log = self._accepted.get(key)
        if not log or len(log) < limit:
            return 0.0
        return max(0.0, log[-limit] + window - now)

    def reset(self) -> None:
        self._accepted.clear()
