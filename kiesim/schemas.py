"""Validation of createTask bodies, written from kie.ai's documentation alone (no marshmallow, no product code).

``validate_create_body(body, strict=False)`` returns a ``CreateRequest`` or raises
``InvalidRequest`` (message ``<field>: <problem>``) / ``UnknownModel``.  Input
fields a model does not list are ignored unless ``strict`` (then code 422).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .errors import InvalidRequest, UnknownModel

ASPECT_RATIOS = ("1:1", "9:16", "16:9", "3:4", "4:3", "3:2", "2:3", "5:4", "4:5", "21:9", "auto")
RESOLUTIONS = ("1K", "2K", "4K")


@dataclass(frozen=True)
class CreateRequest:
    """A checked createTask body."""

    model: str
    input: dict
    callback_url: str | None

    @property
    def prompt(self) -> str:
        return self.input.get("prompt", "")

    @property
    def output_format(self) -> str:
        """``png``, ``jpeg`` or ``jpg`` as the client asked (default ``png``)."""
        return self.input.get("output_format", "png")

    @property
    def aspect_ratio(self) -> str:
        """``aspect_ratio``, else the deprecated ``image_size``, else ``1:1``; ``auto`` counts as ``1:1``."""
        ratio = self.input.get("aspect_ratio") or self.input.get("image_size") or "1:1"
        return "1:1" if ratio == "auto" else ratio


Check = Callable[[str, Any], None]


def _prompt(max_len: int) -> Check:
    def check(name: str, value: Any) -> None:
        if not isinstance(value, str):
            raise InvalidRequest(name, f"must be a string, got {type(value).__name__}")
        if not value.strip():
            raise InvalidRequest(name, "must not be empty")
        if len(value) > max_len:
            raise InvalidRequest(name, f"must be at most {max_len} characters, got {len(value)}")
    return check


def _one_of(*choices: str) -> Check:
    def check(name: str, value: Any) -> None:
        if value not in choices:
            raise InvalidRequest(name, f"must be one of {', '.join(choices)}, got {value!r}")
    return check


def _boolean(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise InvalidRequest(name, f"must be a boolean, got {value!r}")


def _url_list(low: int, high: int) -> Check:
    def check(name: str, value: Any) -> None:
        if not isinstance(value, list):
            raise InvalidRequest(name, f"must be a list of URLs, got {type(value).__name__}")
        if not low <= len(value) <= high:
            raise InvalidRequest(name, f"must hold {low} to {high} URLs, got {len(value)}")
        for i, url in enumerate(value):
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise InvalidRequest(f"{name}[{i}]", f"must be an http(s) URL, got {url!r}")
    return check


# model -> (required fields, {field: check})
MODELS: dict[str, tuple[tuple[str, ...], dict[str, Check]]] = {
    "google/nano-banana": (("prompt",), {
        "prompt": _prompt(5000),
        "output_format": _one_of("png", "jpeg"),
        "image_size": _one_of(*ASPECT_RATIOS),
        "aspect_ratio": _one_of(*ASPECT_RATIOS),
        "nsfw_checker": _boolean,
    }),
    "google/nano-banana-edit": (("prompt", "image_urls"), {
        "prompt": _prompt(5000),
        "image_urls": _url_list(1, 10),
        "output_format": _one_of("png", "jpeg"),
        "image_size": _one_of(*ASPECT_RATIOS),
        "aspect_ratio": _one_of(*ASPECT_RATIOS),
        "nsfw_checker": _boolean,
    }),
    "nano-banana-pro": (("prompt",), {
        "prompt": _prompt(10000),
        "image_input": _url_list(0, 8),
        "aspect_ratio": _one_of(*ASPECT_RATIOS),
        "resolution": _one_of(*RESOLUTIONS),
        "output_format": _one_of("png", "jpg"),
    }),
}


def validate_create_body(body: Any, *, strict: bool = False) -> CreateRequest:
    """Check a parsed createTask body; see the module docstring for the errors."""
    if not isinstance(body, dict):
        raise InvalidRequest("body", "must be a JSON object")
    model = body.get("model")
    if model is None or model == "":
        raise InvalidRequest("model", "is required")
    if not isinstance(model, str) or model not in MODELS:
        raise UnknownModel(model)
    callback_url = body.get("callBackUrl")
    if callback_url in (None, ""):
        callback_url = None
    elif not isinstance(callback_url, str) or not callback_url.startswith(("http://", "https://")):
        raise InvalidRequest("callBackUrl", f"must be an http(s) URL, got {callback_url!r}")
    data = body.get("input")
    if data is None:
        raise InvalidRequest("input", "is required")
    if not isinstance(data, dict):
        raise InvalidRequest("input", f"must be an object, got {type(data).__name__}")
    required, checks = MODELS[model]
    for name in required:
        if data.get(name) is None:
            raise InvalidRequest(name, "is required")
    for name, value in data.items():
        check = checks.get(name)
        if check is None:
            if strict:
                raise InvalidRequest(name, f"is not an input field of {model}")
            continue
        if value is None and name not in required:
            continue
        check(name, value)
    return CreateRequest(model=model, input=data, callback_url=callback_url)
