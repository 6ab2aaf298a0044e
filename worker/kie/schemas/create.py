"""The outbound ``createTask`` request body: ``{"model", "callBackUrl"?, "input"}``.

``build_create_body`` checks the body once more right before it is sent: the
``input`` must already be cleaned by ``worker.kie.schemas.inputs.validate_input``;
here it is only checked to be a plain JSON object.  The callback URL carries a
job token, so its error messages never repeat it.
"""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError

from ...errors import InvalidInput
from .fields import HttpUrl, JsonObject, Text


class CreateTaskRequest(Schema):
    """Body of ``POST /api/v1/jobs/createTask``."""

    error_messages = {"unknown": "unknown field", "type": "must be a JSON object"}

    class Meta:
        unknown = RAISE

    model = Text(max_length=200, required=True)
    callBackUrl = HttpUrl()
    input = JsonObject(required=True)


def build_create_body(model: str, cleaned_input: dict, callback_url: str | None = None) -> dict[str, Any]:
    """The JSON body for ``createTask``; ``callBackUrl`` is left out when ``callback_url`` is None.

    Raises ``InvalidInput`` (field → messages, keys ``model``, ``callBackUrl``, ``input``).
    """
    body: dict[str, Any] = {"model": model, "input": cleaned_input}
    if callback_url is not None:
        body["callBackUrl"] = callback_url
    try:
        loaded = CreateTaskRequest().load(body)
    except ValidationError as exc:
        errors = exc.messages if isinstance(exc.messages, dict) else {"body": exc.messages}
        raise InvalidInput({str(k): v for k, v in errors.items()}, model if isinstance(model, str) else None) \
            from None
    ordered = {"model": loaded["model"]}
    if "callBackUrl" in loaded:
        ordered["callBackUrl"] = loaded["callBackUrl"]
    ordered["input"] = loaded["input"]
    return ordered
