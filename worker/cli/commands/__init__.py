"""The ``kie-queue`` subcommands, one module per family: ``submit``, ``local`` (demo, sim), ``inspect``
(status, jobs, limiter, credits) and ``manage`` (retry, cancel, resume)."""
