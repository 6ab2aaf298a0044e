"""The Redis broker transport the deployment uses: kombu's, with a message's hand-over made atomic.

:mod:`.redis_claims` holds the transport classes and ``install()``, which maps kombu's ``redis://``,
``rediss://`` and ``sentinel://`` schemes to them; the worker app and ``worker.celery_conf.producer`` call it
before their first connection.
"""
