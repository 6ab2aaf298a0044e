"""The Redis broker transport the deployment uses: kombu's, with a message's hand-over made atomic.

:mod:`.redis_claims` holds the transport classes Celery is pointed at (``broker_transport``, set by
``worker.celery_conf`` for ``redis://``, ``rediss://`` and ``sentinel://`` brokers).  Nothing here is
imported by the rest of the product; Celery imports it by name when a worker or producer connects.
"""
