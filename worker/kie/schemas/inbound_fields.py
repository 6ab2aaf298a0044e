"""marshmallow field types that read kie.ai's answers and callbacks.

Strict (what we rely on): ``TaskId``, ``BodyCode``, ``TaskState``.  Lenient (what
we only record): ``LooseText``, ``LooseNumber``, ``FailCode``, ``JsonParam`` turn a
value of the wrong shape into ``None`` instead of failing; ``ResultJson`` leaves an
``Unreadable`` marker, judged later against ``state``.  Messages show the bad value
shortened.  Works with marshmallow 3.20+ and 4.x.
"""

from __future__ import annotations

import math
from typing import Any

from marshmallow import ValidationError

from .fields import BaseField
from .jsonsafe import MAX_INT, NotJsonSafe, bad_unicode, check_json_value, describe, loads_bounded, show

MAX_RESULT_JSON = 1_000_000
"""Longest ``resultJson``/``param`` string parsed, in characters."""

MAX_RESULT_URLS = 100
"""Most result URLs accepted in one answer."""

TASK_STATES = ("waiting", "queuing", "generating", "success", "fail")
"""kie.ai task states; the last two are terminal."""


class TaskId(BaseField):
    """A kie.ai task id: 1..256 characters, no whitespace or control characters.

    Live ids are 32 hex characters; the charset is left open, but ids end up in
    Redis keys, URLs and the webhook signature, hence no whitespace.
    """

    default_error_messages = {"required": "is required (the upstream task id)"}

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise ValidationError(f"must be a string, got {describe(value)}")
        if not value.strip():
            raise ValidationError(f"must not be empty or blank, got {show(value)}")
        if len(value) > 256:
            raise ValidationError(f"must be at most 256 characters, got {len(value)}")
        if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value) or bad_unicode(value):
            raise ValidationError(f"must not contain whitespace or control characters, got {show(value)}")
        return value


class BodyCode(BaseField):
    """The envelope ``code``: an int, an integral float, or a numeric string, 0..999999."""

    def _deserialize(self, value, attr, data, **kwargs):
        code = None
        if isinstance(value, bool):
            code = None
        elif isinstance(value, int):
            code = value
        elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
            code = int(value)
        elif isinstance(value, str) and 0 < len(value.strip()) <= 12:
            try:
                code = int(value.strip())
            except ValueError:
                code = None
        if code is None or not 0 <= code <= 999_999:
            raise ValidationError(f"must be an integer code, got {describe(value)}")
        return code


class TaskState(BaseField):
    """One of ``TASK_STATES`` (surrounding spaces and letter case are forgiven); "" means not set."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            state = value.strip().lower()
            if state in TASK_STATES:
                return state
            if not state:
                return None
            raise ValidationError(f"must be one of {', '.join(TASK_STATES)}; got {show(value)}")
        raise ValidationError(f"must be a string, one of {', '.join(TASK_STATES)}; got {describe(value)}")


# ---------------------------------------------------------------- lenient


def _clean_text(text: str, max_length: int) -> str:
    if bad_unicode(text):
        text = text.encode("utf-8", "replace").decode("utf-8")
    if len(text) > max_length:
        text = text[: max_length - 1] + "…"
    return text


class LooseText(BaseField):
    """Text we only record: scalars become strings (truncated to ``max_length``),
    other shapes become ``None``; ``""`` becomes ``None`` when ``empty_as_none``."""

    def __init__(self, *, max_length: int = 2000, empty_as_none: bool = True, **kwargs):
        kwargs.setdefault("load_default", None)
        super().__init__(**kwargs)
        self.max_length = max_length
        self.empty_as_none = empty_as_none

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int) and abs(value) < MAX_INT:
            text = str(value)
        elif isinstance(value, float) and math.isfinite(value):
            text = repr(value)
        elif isinstance(value, str):
            text = _clean_text(value, self.max_length)
        else:
            return None
        if not text.strip() and self.empty_as_none:
            return None
        return text


class FailCode(BaseField):
    """``failCode``: a string or an int → string (``"422"``); empty or other shapes → ``None``."""

    def __init__(self, **kwargs):
        kwargs.setdefault("load_default", None)
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            return None
        if isinstance(value, int) and abs(value) < MAX_INT:
            return str(value)
        if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < MAX_INT:
            return str(int(value))
        if isinstance(value, str) and value.strip():
            return _clean_text(value.strip(), 64)
        return None


class LooseNumber(BaseField):
    """A number we only record (credits, times): int, finite float or numeric string
    (``"1717000000000"``, ``"8.5"``); ``None``, ``""`` and anything else → ``None``.

    Integral values come back as ``int``; magnitudes of 2**63 and more are dropped.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("load_default", None)
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        return loose_number(value)


def loose_number(value: Any) -> int | float | None:
    """The number in ``value`` (see ``LooseNumber``), or ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if abs(value) < MAX_INT else None
    if isinstance(value, float):
        return value if math.isfinite(value) and abs(value) < MAX_INT else None
    if isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 40:
            return None
        try:
            return loose_number(int(text))
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            return None
        if number.is_integer() and math.isfinite(number):
            return loose_number(int(number))
        return loose_number(number)
    return None


class JsonParam(BaseField):
    """``param``: a JSON string or object → dict; anything unusable → ``None``.

    We never rely on ``param`` (it echoes the request), so a string that does not
    parse, a non-object, or an over-deep/over-large document is dropped, not an error.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("load_default", None)
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            if isinstance(value, str):
                if not value.strip():
                    return None
                parsed = loads_bounded(value, max_chars=MAX_RESULT_JSON)
            elif isinstance(value, dict):
                check_json_value(value)
                parsed = value
            else:
                return None
        except NotJsonSafe:
            return None
        return dict(parsed) if isinstance(parsed, dict) else None


class Unreadable:
    """Marker left by ``ResultJson`` for a value that is set but unusable (``reason`` says why)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str):
        self.reason = reason

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Unreadable({self.reason!r})"


class ResultJson(BaseField):
    """``resultJson``: a JSON string or object → dict; ``""``/``None`` → ``None`` (not finished).

    Anything else becomes an ``Unreadable`` marker rather than an error: whether it
    matters depends on ``state`` (only a success must carry result URLs), which the
    schema checks once every field is read.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("load_default", None)
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                parsed = loads_bounded(value, max_chars=MAX_RESULT_JSON, path="resultJson")
            except NotJsonSafe as exc:
                return Unreadable(str(exc).removeprefix("resultJson: "))
        elif isinstance(value, dict):
            try:
                check_json_value(value, path="resultJson")
            except NotJsonSafe as exc:
                return Unreadable(str(exc).removeprefix("resultJson: "))
            parsed = value
        else:
            return Unreadable(f"must be a JSON string or object, got {describe(value)}")
        if not isinstance(parsed, dict):
            return Unreadable(f"must hold a JSON object, got {describe(parsed)}")
        return parsed
