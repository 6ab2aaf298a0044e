"""Strict marshmallow field types for what we send (and URL checks shared with answers).

``Text``, ``Choice``, ``StrictBool``, ``HttpUrl``, ``UrlList``, ``JsonObject``, plus
``url_problem``/``url_list_problems`` (also used on result URLs).  The fields that
read kie.ai's answers are in ``worker.kie.schemas.inbound_fields``.

Error messages describe the problem and show the bad value (shortened), except
for URLs: those may carry tokens (presigned links, our callback URL), so URL
messages say what is wrong without echoing the URL.  Works with marshmallow 3.20+
and 4.x (only ``_deserialize`` and ``default_error_messages`` are overridden).
"""

from __future__ import annotations

from typing import Any, Iterable
from urllib.parse import urlsplit

from marshmallow import ValidationError, fields

from .jsonsafe import NotJsonSafe, bad_unicode, check_json_value, describe, kind, show

MAX_URL_LENGTH = 4096
"""Longest URL accepted, in characters (inbound and outbound)."""


class BaseField(fields.Field):
    """Base: plain-language messages for a missing or null value."""

    default_error_messages = {
        "required": "is required",
        "null": "must not be null",
    }


class Text(BaseField):
    """A string of ``min_length``..``max_length`` characters (code points).

    ``not_blank`` rejects a string of only whitespace. Strings with an unpaired
    surrogate are rejected (they cannot be sent as UTF-8).
    """

    def __init__(self, *, max_length: int, min_length: int = 1, not_blank: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.max_length = max_length
        self.min_length = min_length
        self.not_blank = not_blank

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise ValidationError(f"must be a string, got {describe(value)}")
        if len(value) > self.max_length:
            raise ValidationError(f"must be at most {self.max_length} characters, got {len(value)}")
        if len(value) < self.min_length:
            raise ValidationError(f"must be at least {self.min_length} characters, got {len(value)}")
        if self.not_blank and not value.strip():
            raise ValidationError(f"must not be blank, got {show(value)}")
        if bad_unicode(value):
            raise ValidationError("contains an unpaired surrogate (not valid UTF-8)")
        return value


class Choice(BaseField):
    """One string out of a fixed list (exact match, case-sensitive)."""

    def __init__(self, choices: Iterable[str], **kwargs):
        super().__init__(**kwargs)
        self.choices = tuple(choices)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and value in self.choices:
            return value
        raise ValidationError(f"must be one of {', '.join(self.choices)}; got {describe(value)}")


class StrictBool(BaseField):
    """``true`` or ``false`` only (no ``"yes"``, ``1`` or ``"false"`` strings)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            return value
        raise ValidationError(f"must be true or false, got {describe(value)}")


def url_problem(value: Any, max_length: int = MAX_URL_LENGTH) -> str | None:
    """Why ``value`` is not an absolute http(s) URL, or ``None`` when it is one.

    The answer never contains the URL itself (it may hold a token).
    """
    if not isinstance(value, str):
        return f"must be a URL string, got {kind(value)}"
    if len(value) > max_length:
        return f"URL too long ({len(value)} characters, at most {max_length})"
    if not value:
        return "must be an absolute http(s) URL, got an empty string"
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return "URL contains whitespace or control characters"
    if bad_unicode(value):
        return "URL contains an unpaired surrogate (not valid UTF-8)"
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return "not a well-formed URL (bad host or port)"
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        return f"URL scheme must be http or https, got {show(scheme) if scheme else 'none'}"
    if not host:
        return "URL has no host"
    return None


class HttpUrl(BaseField):
    """An absolute ``http://`` or ``https://`` URL of at most ``max_length`` characters."""

    def __init__(self, *, max_length: int = MAX_URL_LENGTH, **kwargs):
        super().__init__(**kwargs)
        self.max_length = max_length

    def _deserialize(self, value, attr, data, **kwargs):
        problem = url_problem(value, self.max_length)
        if problem:
            raise ValidationError(problem)
        return value


def url_list_problems(value: Any, *, min_items: int, max_items: int,
                      max_length: int = MAX_URL_LENGTH) -> list[str]:
    """Problems of a list of http(s) URLs (empty when it is fine); items named ``item N``."""
    if not isinstance(value, (list, tuple)):
        return [f"must be a list of URLs, got {describe(value)}"]
    if len(value) > max_items:
        return [f"must have at most {max_items} URLs, got {len(value)}"]
    if len(value) < min_items:
        return [f"must have at least {min_items} URL{'s' if min_items != 1 else ''}, got {len(value)}"]
    problems = []
    for index, item in enumerate(value):
        problem = url_problem(item, max_length)
        if problem:
            problems.append(f"item {index}: {problem}")
    return problems


class UrlList(BaseField):
    """A list of ``min_items``..``max_items`` http(s) URLs; messages are flat (``item 2: ...``)."""

    def __init__(self, *, min_items: int = 0, max_items: int, max_length: int = MAX_URL_LENGTH, **kwargs):
        super().__init__(**kwargs)
        self.min_items = min_items
        self.max_items = max_items
        self.max_length = max_length

    def _deserialize(self, value, attr, data, **kwargs):
        problems = url_list_problems(value, min_items=self.min_items, max_items=self.max_items,
                                     max_length=self.max_length)
        if problems:
            raise ValidationError(problems)
        return list(value)


class JsonObject(BaseField):
    """A JSON object (dict with string keys) whose whole content passes ``check_json_value``."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, dict):
            raise ValidationError(f"must be a JSON object, got {describe(value)}")
        try:
            check_json_value(value, path=self.data_key or attr or "value")
        except NotJsonSafe as exc:
            raise ValidationError(str(exc)) from None
        return dict(value)
