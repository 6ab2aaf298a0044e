"""One job as the command line sends it (:class:`JobSpec`), checked and enqueued as ``generate | download``.

:meth:`JobSpec.check` runs the worker's own argument check (``worker.jobs.arguments``), so what the
command line accepts is exactly what the worker accepts.  :func:`enqueue` sends checked specs and
returns a :class:`Sent` per job (its job id and the ``AsyncResult`` of the chain's last step).
Options that later apply to every job (tenant, priority) belong on ``JobSpec`` and in
:meth:`JobSpec.task_kwargs` / :meth:`JobSpec.task_options`.
"""

from __future__ import annotations

import dataclasses

from ..jobs.arguments import DEFAULT_MODEL, check_arguments


@dataclasses.dataclass
class JobSpec:
    input: dict
    model: str = DEFAULT_MODEL
    job_id: str | None = None
    timeout: float | None = None
    allow_unknown_model: bool = False
    line: int | None = None          # where the job came from in a ``--file``
    tenant: str | None = None        # the service the job is for (None: ``default``)
    priority: int = 0                # 0-9, higher first within the tenant

    def check(self) -> None:
        """Raise ``InvalidInput`` (naming the field) for anything ``kie.generate`` would refuse."""
        check_arguments(self.input, self.model, self.job_id, self.timeout, self.allow_unknown_model,
                        tenant=self.tenant, priority=self.priority)

    def task_kwargs(self) -> dict:
        kwargs = {"input": self.input, "model": self.model}
        if self.job_id is not None:
            kwargs["job_id"] = self.job_id
        if self.timeout is not None:
            kwargs["timeout"] = self.timeout
        if self.allow_unknown_model:
            kwargs["allow_unknown_model"] = True
        if self.tenant is not None:
            kwargs["tenant"] = self.tenant
        if self.priority:
            kwargs["priority"] = self.priority
        return kwargs

    def task_options(self) -> dict:
        """Options of the ``kie.generate`` message (queue routing comes from the settings)."""
        return {}


@dataclasses.dataclass
class Sent:
    job_id: str
    result: object                    # AsyncResult of the chain's last step
    line: int | None = None

    @property
    def celery_task_id(self) -> str:
        return self.result.id


def enqueue(specs: list[JobSpec], *, download: bool = True) -> list[Sent]:
    """Send ``generate`` (``| download``) for every spec; each must have passed :meth:`JobSpec.check`."""
    from ..runtime import runtime
    from ..tasks import download as download_task
    from ..tasks import generate

    runtime().redis.ping()   # fail at once (not after Celery's reconnect attempts) when Redis is down
    sent = []
    for spec in specs:
        head = generate.signature(kwargs=spec.task_kwargs(), **spec.task_options())
        head.freeze()
        chain = head | download_task.s() if download else head
        result = chain.apply_async()
        sent.append(Sent(spec.job_id or head.id, result, spec.line))
    return sent
