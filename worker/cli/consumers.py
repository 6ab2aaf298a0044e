"""Is any worker consuming a queue?  Asked of the workers themselves, with Celery's remote control.

``inspect().active_queues()`` is the check: every live worker answers from its main process (also
while its pool is busy) with the queues it consumes, on Redis and RabbitMQ alike.  The broker's own
consumer count would be the alternative, but only RabbitMQ keeps one (Redis lists have no
consumers), and a ``ping`` says a worker is alive, not which queues it reads.  A worker started
with remote control disabled does not answer, so the caller treats "none" as a warning, not a
failure.
"""

from __future__ import annotations


def queue_consumers(app, queue: str, timeout: float = 1.0) -> list[str]:
    """Host names of the workers that consume ``queue`` (answers within ``timeout`` seconds)."""
    replies = app.control.inspect(timeout=timeout).active_queues() or {}
    return sorted(host for host, queues in replies.items()
                  if any(q.get("name") == queue for q in queues or ()))
