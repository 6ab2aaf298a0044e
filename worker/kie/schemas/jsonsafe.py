"""Bounded checks on JSON values that come from outside the process.

``check_json_value`` walks a decoded value without recursion and rejects what
``json.dumps`` or Redis would choke on later (non-string keys, NaN/infinity,
integers too large to print, unpaired surrogates, cycles, absurd depth or size).
``loads_bounded`` parses a JSON *string* (kie.ai sends ``param`` and
``resultJson`` as strings) with a length cap and the same checks.

Both raise ``NotJsonSafe`` (a ``ValueError``) with a message that names the
path of the offending value; they never raise ``RecursionError`` or
``OverflowError``.  ``show``, ``kind`` and ``describe`` render bad values for error messages
without ever failing (a 5000-digit int or a deeply nested list is safe).
No marshmallow here: the field classes are in ``worker.kie.schemas.fields``.
"""

from __future__ import annotations

import functools
import json
import math
import reprlib
from typing import Any

MAX_DEPTH = 32
"""Deepest nesting accepted (containers inside containers)."""

MAX_NODES = 10_000
"""Most values (containers, keys and scalars) in one checked document."""

MAX_INT = 2**63
"""Integers must satisfy ``abs(n) < MAX_INT``: larger ones are not portable JSON."""


@functools.lru_cache(maxsize=None)
def _short_repr() -> reprlib.Repr:
    """A ``reprlib.Repr`` that keeps renderings short (built on first use)."""
    short = reprlib.Repr()
    short.maxstring = short.maxother = 60
    short.maxlevel = 2
    short.maxlist = short.maxtuple = short.maxdict = 4
    return short


class NotJsonSafe(ValueError):
    """A value is not a bounded, portable JSON value (message names the path)."""


def kind(value: Any) -> str:
    """The JSON-ish name of a value's type: ``null``, ``bool``, ``int``, ``list``..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def show(value: Any) -> str:
    """A short, safe rendering of ``value`` for an error message (never raises)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**18:
        return f"an int of {value.bit_length()} bits"
    if isinstance(value, (dict, list, tuple)):
        return f"{kind(value)} of {len(value)} item{'s' if len(value) != 1 else ''}"
    try:
        return _short_repr().repr(value)
    except Exception:  # noqa: BLE001 - a hostile __repr__ must not break an error message
        return f"a {type(value).__name__}"


def describe(value: Any) -> str:
    """``kind`` and ``show`` together: ``string 'x'``, ``int 5``, ``list of 3 items``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, (dict, list, tuple)):
        return show(value)
    return f"{kind(value)} {show(value)}"


def bad_unicode(text: str) -> bool:
    """True when ``text`` has an unpaired surrogate (it cannot be encoded as UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_json_value(value: Any, *, path: str = "value", max_depth: int = MAX_DEPTH,
                     max_nodes: int = MAX_NODES) -> None:
    """Raise ``NotJsonSafe`` unless ``value`` is a plain, bounded JSON value.

    Accepted: ``None``, ``bool``, ints with ``abs(n) < MAX_INT``, finite floats,
    strings that encode as UTF-8, lists/tuples, and dicts with string keys, nested
    at most ``max_depth`` deep with at most ``max_nodes`` values in all.
    """
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    seen = 0
    while stack:
        item, where, depth = stack.pop()
        seen += 1
        if seen > max_nodes:
            raise NotJsonSafe(f"{path}: more than {max_nodes} values")
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, int):
            if abs(item) >= MAX_INT:
                raise NotJsonSafe(f"{where}: integer out of range (|n| must be below 2**63), got {show(item)}")
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise NotJsonSafe(f"{where}: must be a finite number, got {item!r}")
            continue
        if isinstance(item, str):
            if bad_unicode(item):
                raise NotJsonSafe(f"{where}: string has an unpaired surrogate (not valid UTF-8)")
            continue
        if isinstance(item, (dict, list, tuple)):
            if depth >= max_depth:
                raise NotJsonSafe(f"{where}: nested deeper than {max_depth} levels")
            if len(item) > max_nodes:
                raise NotJsonSafe(f"{where}: more than {max_nodes} values")
            if isinstance(item, dict):
                for key, sub in item.items():
                    if not isinstance(key, str):
                        raise NotJsonSafe(f"{where}: keys must be strings, got {describe(key)}")
                    if bad_unicode(key):
                        raise NotJsonSafe(f"{where}: key has an unpaired surrogate (not valid UTF-8)")
                    stack.append((sub, f"{where}.{_short_repr().repr(key)[1:-1]}", depth + 1))
            else:
                for index, sub in enumerate(item):
                    stack.append((sub, f"{where}[{index}]", depth + 1))
            continue
        raise NotJsonSafe(f"{where}: not a JSON value, got {kind(item)}")


def _reject_constant(name: str) -> Any:
    raise NotJsonSafe(f"{name} is not valid JSON")


def loads_bounded(text: str, *, max_chars: int, path: str = "value") -> Any:
    """Parse the JSON document ``text`` (at most ``max_chars`` characters) and check it.

    Raises ``NotJsonSafe`` for a document that is too long, does not parse, nests
    too deep for the parser, or fails ``check_json_value``.
    """
    if len(text) > max_chars:
        raise NotJsonSafe(f"{path}: too long ({len(text)} characters, at most {max_chars})")
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except NotJsonSafe as exc:
        raise NotJsonSafe(f"{path}: {exc}") from None
    except RecursionError:
        raise NotJsonSafe(f"{path}: nested too deep to parse") from None
    except ValueError as exc:  # JSONDecodeError, and int() digit limits
        raise NotJsonSafe(f"{path}: not valid JSON ({str(exc)[:120]})") from None
    check_json_value(value, path=path)
    return value
