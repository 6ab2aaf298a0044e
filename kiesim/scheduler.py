"""A tiny timer: run callables at given epoch times on a pool of daemon worker threads.

One scheduler thread sleeps until the earliest due job and hands it to the
workers, so slow deliveries (up to the 15 s receiver timeout) never block request
handling or each other (up to ``workers`` at once).  Threads start on first use,
never at import.  ``close()`` stops them; pending jobs are dropped.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, workers: int = 16) -> None:
        self._workers = workers
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._ready: queue.Queue = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._closed = False

    def call_at(self, when: float, fn: Callable[[], None]) -> None:
        """Run ``fn()`` on a worker thread at epoch time ``when`` (at once if past)."""
        with self._cond:
            if self._closed:
                return
            self._start_locked()
            heapq.heappush(self._heap, (when, next(self._seq), fn))
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._heap) + self._ready.qsize()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify_all()
        for _ in self._threads:
            self._ready.put(None)

    def _start_locked(self) -> None:
        if self._threads:
            return
        self._threads.append(threading.Thread(target=self._timer_loop, name="kiesim-timer", daemon=True))
        for i in range(self._workers):
            self._threads.append(threading.Thread(target=self._worker_loop, name=f"kiesim-cb-{i}", daemon=True))
        for thread in self._threads:
            thread.start()

    def _timer_loop(self) -> None:
        with self._cond:
            while not self._closed:
                if not self._heap:
                    self._cond.wait()
                    continue
                delay = self._heap[0][0] - time.time()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                _, _, fn = heapq.heappop(self._heap)
                self._ready.put(fn)

    def _worker_loop(self) -> None:
        while True:
            fn = self._ready.get()
            if fn is None:
                return
            try:
                fn()
            except Exception:  # a broken job must not kill the worker
                log.exception("kiesim scheduled job failed")
