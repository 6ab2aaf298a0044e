"""Outbound ``input`` schemas, one per kie.ai model, and the model registry.

``validate_input(model, data)`` is the one entry point: it returns the cleaned
dict to send as the ``input`` of ``createTask`` or raises ``InvalidInput`` with
marshmallow's field → messages dict.  Defaults that kie.ai documents are filled in
and sent (explicit is better).  Unknown fields are refused, naming the field and
the allowed ones.  The request body around ``input`` is in ``worker.kie.schemas.create``.

Lengths are counted in Unicode code points (Python ``len``).
"""

from __future__ import annotations

import json
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, post_load, validates_schema

from ...errors import InvalidInput
from .fields import Choice, StrictBool, Text, UrlList
from .jsonsafe import NotJsonSafe, check_json_value, describe, show

IMAGE_SIZES = ("1:1", "9:16", "16:9", "3:4", "4:3", "3:2", "2:3", "5:4", "4:5", "21:9", "auto")
"""Values of ``image_size`` and ``aspect_ratio``."""

RESOLUTIONS = ("1K", "2K", "4K")
"""Values of ``resolution`` (nano-banana-pro)."""

class InputSchema(Schema):
    """Base of the per-model input schemas: unknown fields are refused."""

    error_messages = {"unknown": "unknown field", "type": "must be a JSON object"}

    class Meta:
        unknown = RAISE


class NanoBananaInput(InputSchema):
    """``google/nano-banana``: text to image.

    ``image_size`` defaults to ``1:1`` only when neither it nor the newer
    ``aspect_ratio`` is given; when both are given they must agree.
    """

    prompt = Text(max_length=5000, required=True)
    output_format = Choice(("png", "jpeg"), load_default="png")
    image_size = Choice(IMAGE_SIZES)
    aspect_ratio = Choice(IMAGE_SIZES)
    nsfw_checker = StrictBool()

    @validates_schema
    def _sizes_agree(self, data, **kwargs):
        size, ratio = data.get("image_size"), data.get("aspect_ratio")
        if size is not None and ratio is not None and size != ratio:
            raise ValidationError(
                f"disagrees with image_size ({size!r} vs {ratio!r}); give one of them "
                "(aspect_ratio replaces the deprecated image_size)", "aspect_ratio")

    @post_load
    def _default_size(self, data, **kwargs):
        if "image_size" not in data and "aspect_ratio" not in data:
            data["image_size"] = "1:1"
        return data


class NanoBananaEditInput(InputSchema):
    """``google/nano-banana-edit``: edit 1-10 source images by prompt."""

    prompt = Text(max_length=5000, required=True)
    image_urls = UrlList(min_items=1, max_items=10, required=True)
    output_format = Choice(("png", "jpeg"), load_default="png")
    image_size = Choice(IMAGE_SIZES, load_default="1:1")


class NanoBananaProInput(InputSchema):
    """``nano-banana-pro``: prompt up to 10000 characters, up to 8 reference images.

    Only ``output_format`` gets a default (``png``, so the file extension is known);
    ``aspect_ratio`` and ``resolution`` are left to kie.ai when not given.
    """

    prompt = Text(max_length=10000, required=True)
    image_input = UrlList(min_items=0, max_items=8)
    aspect_ratio = Choice(IMAGE_SIZES)
    resolution = Choice(RESOLUTIONS)
    output_format = Choice(("png", "jpg"), load_default="png")


_MODELS: dict[str, type[Schema]] = {
    "google/nano-banana": NanoBananaInput,
    "google/nano-banana-edit": NanoBananaEditInput,
    "nano-banana-pro": NanoBananaProInput,
}


def known_models() -> tuple[str, ...]:
    """The registered model names, sorted."""
    return tuple(sorted(_MODELS))


def schema_for(model: str) -> type[Schema] | None:
    """The input schema class registered for ``model``, or ``None``."""
    return _MODELS.get(model) if isinstance(model, str) else None


def register_model(name: str, schema_cls: type[Schema], *, replace: bool = False) -> None:
    """Register the input schema of another model (``replace=True`` to override one).

    Raises ``TypeError`` for a class that is not a marshmallow ``Schema`` and
    ``ValueError`` for an empty name or an already registered one.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"model name must be a non-empty string, got {show(name)}")
    if not (isinstance(schema_cls, type) and issubclass(schema_cls, Schema)):
        raise TypeError(f"schema_cls must be a marshmallow Schema subclass, got {show(schema_cls)}")
    if name in _MODELS and _MODELS[name] is not schema_cls and not replace:
        raise ValueError(f"model {name!r} is already registered to {_MODELS[name].__name__}; pass replace=True")
    _MODELS[name] = schema_cls


def _fail(errors: dict, model: Any) -> InvalidInput:
    return InvalidInput(errors, model if isinstance(model, str) else None)


def _clean_messages(messages: Any, schema: Schema, model: str) -> dict:
    """marshmallow's error dict with string keys and a helpful unknown-field message."""
    if not isinstance(messages, dict):
        return {"input": messages if isinstance(messages, list) else [str(messages)]}
    allowed = sorted(f.data_key or name for name, f in schema.load_fields.items())
    cleaned = {}
    for key, value in messages.items():
        key = str(key)
        if key not in allowed and key != "_schema":
            value = [f"unknown field for model {model!r}; allowed: {', '.join(allowed)}"]
        cleaned[key] = value
    return cleaned


def validate_input(model: str, data: Any, *, allow_unknown_model: bool = False) -> dict:
    """Return the cleaned ``input`` dict to send for ``model``, or raise ``InvalidInput``.

    A registered model's schema fills defaults and refuses unknown fields. An
    unknown model is refused unless ``allow_unknown_model``: then ``data`` is only
    checked to be a plain JSON object and passed through (a copy).
    """
    if not isinstance(model, str) or not model.strip() or len(model) > 200:
        problem = f"must be a non-empty string of at most 200 characters, got {describe(model)}"
        raise _fail({"model": [problem]}, model)
    if not isinstance(data, dict):
        raise _fail({"input": [f"must be a JSON object, got {describe(data)}"]}, model)
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise _fail({"input": [f"keys must be strings, got {describe(bad_keys[0])}"]}, model)
    schema_cls = _MODELS.get(model)
    if schema_cls is None:
        if not allow_unknown_model:
            raise _fail({"model": [f"unknown model {model!r}; known: {', '.join(known_models())}; "
                                   "pass allow_unknown_model=True to send it unchecked"]}, model)
        try:
            check_json_value(data, path="input")
        except NotJsonSafe as exc:
            raise _fail({"input": [str(exc)]}, model) from None
        return json.loads(json.dumps(data))
    schema = schema_cls()
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise _fail(_clean_messages(exc.messages, schema, model), model) from None
