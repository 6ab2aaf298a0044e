"""Tests of worker.jobs.arguments: kie.generate's arguments are checked before anything is stored or
sent, each bad one named with its value (tenant and priority included)."""

from __future__ import annotations

import pytest

from worker.errors import InvalidInput
from worker.jobs.arguments import check_arguments, tenant_or_default

MODEL = "google/nano-banana"
INPUT = {"prompt": "a fox"}


def test_good_arguments_give_the_cleaned_input():
    assert check_arguments({"prompt": "a cat"}, MODEL, "job-1", 60, retry_failed=True) == \
        {"prompt": "a cat", "output_format": "png", "image_size": "1:1"}


@pytest.mark.parametrize("kwargs, field, shown", [
    ({"job_id": "a/b"}, "job_id", "'a/b'"),
    ({"timeout": -5}, "timeout", "-5"),
    ({"retry_failed": "yes"}, "retry_failed", "'yes'"),
    ({"retry_failed": 1}, "retry_failed", "1"),
])
def test_bad_arguments_are_named_with_their_value(kwargs, field, shown):
    args = {"job_id": "job-1", "timeout": None, "retry_failed": False, **kwargs}
    with pytest.raises(InvalidInput) as exc:
        check_arguments({"prompt": "a cat"}, MODEL, args["job_id"], args["timeout"],
                        retry_failed=args["retry_failed"])
    assert list(exc.value.errors) == [field] and shown in exc.value.message


def errors_of(**kw) -> dict:
    args = {"input": INPUT, "model": MODEL, "job_id": None, "timeout": None, **kw}
    with pytest.raises(InvalidInput) as info:
        check_arguments(args.pop("input"), args.pop("model"), args.pop("job_id"), args.pop("timeout"), **args)
    return info.value.errors


def test_tenant_and_priority_accepted():
    for tenant in (None, "acme", "svc.eu-1:batch", "x" * 64):
        for priority in (0, 5, 9):
            assert check_arguments(INPUT, MODEL, None, None, tenant=tenant, priority=priority)
    assert tenant_or_default(None) == "default" and tenant_or_default("acme") == "acme"


@pytest.mark.parametrize("tenant", ["", "a b", "x" * 65, "ünicode", 7, "a/b"])
def test_bad_tenant_names_the_field(tenant):
    errors = errors_of(tenant=tenant)
    assert list(errors) == ["tenant"] and repr(tenant) in errors["tenant"][0]


@pytest.mark.parametrize("priority", [-1, 10, 1.5, "3", True, None])
def test_bad_priority_names_the_field(priority):
    errors = errors_of(priority=priority)
    assert list(errors) == ["priority"] and "0 to 9" in errors["priority"][0]


def test_every_bad_argument_is_reported_at_once():
    assert set(errors_of(tenant="bad name", priority=12, job_id="no spaces")) == {"tenant", "priority", "job_id"}
