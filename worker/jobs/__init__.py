"""A job's life after ``kie.generate`` accepted it: submitting (``submission``), learning the outcome
(``checking``), finishing once (``completion``), handing out due work (``dispatch``, ``sweeping``),
and the Celery-internal parking of a chain (``parking``).  Functions take the per-process runtime
and the Celery app as arguments; they never import the task modules."""
