"""The arguments of ``kie.generate``, checked before anything is stored or sent.

:func:`check_arguments` is the one check: the worker runs it first thing, and producers in this
project (the CLI) run it before enqueueing, so a bad value is reported the same way everywhere:
``InvalidInput`` naming the field and showing the value.
"""

from __future__ import annotations

import re

from ..errors import InvalidInput
from ..kie.schemas import validate_input

DEFAULT_MODEL = "google/nano-banana"
MAX_TIMEOUT_S = 7 * 86400

_JOB_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_TENANT = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
DEFAULT_TENANT = "default"
MAX_PRIORITY = 9


def valid_job_id(job_id) -> bool:
    """Whether ``job_id`` is 1-128 letters, digits or ``._:-``."""
    return isinstance(job_id, str) and bool(_JOB_ID.match(job_id))


def valid_tenant(tenant) -> bool:
    """Whether ``tenant`` is 1-64 letters, digits or ``._:-``."""
    return isinstance(tenant, str) and bool(_TENANT.match(tenant))


def tenant_or_default(tenant) -> str:
    """The tenant a job belongs to: ``tenant``, or ``default`` when None (call after the check)."""
    return DEFAULT_TENANT if tenant is None else tenant


def check_arguments(input, model, job_id, timeout, allow_unknown_model: bool = False, *,
                    retry_failed: bool = False, tenant=None, priority=0) -> dict:
    """Return the cleaned ``input``; raise ``InvalidInput`` naming every bad argument.

    ``tenant`` (None = ``default``) is 1-64 letters, digits or ``._:-``; ``priority`` an integer 0-9
    (higher goes first within the tenant).
    """
    errors = {}
    if not isinstance(retry_failed, bool):
        errors["retry_failed"] = [f"must be true or false, got {retry_failed!r}"]
    if tenant is not None and not valid_tenant(tenant):
        errors["tenant"] = [f"must be 1-64 letters, digits or ._:-, got {tenant!r}"]
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= MAX_PRIORITY:
        errors["priority"] = [f"must be an integer from 0 to {MAX_PRIORITY} (higher first), got {priority!r}"]
    if not isinstance(model, str) or not model:
        errors["model"] = [f"must be a non-empty string, got {model!r}"]
    if job_id is not None and not valid_job_id(job_id):
        errors["job_id"] = [f"must be 1-128 letters, digits or ._:-, got {job_id!r}"]
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not 0 < timeout <= MAX_TIMEOUT_S):
        errors["timeout"] = [f"must be a number of seconds in (0, {MAX_TIMEOUT_S}], got {timeout!r}"]
    model_name = model if isinstance(model, str) else None
    job_name = job_id if isinstance(job_id, str) else None
    if errors:
        raise InvalidInput(errors, model_name, job_name)
    try:
        return validate_input(model, input, allow_unknown_model=allow_unknown_model)
    except InvalidInput as exc:
        raise InvalidInput(exc.errors, model, job_name) from None
