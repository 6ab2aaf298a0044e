"""Tests of worker.jobs.arguments: kie.generate's arguments are checked before anything is stored or
sent, each bad one named with its value."""

from __future__ import annotations

import pytest

from worker.errors import InvalidInput
from worker.jobs.arguments import check_arguments

MODEL = "google/nano-banana"


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
