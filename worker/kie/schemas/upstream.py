"""Inbound schemas: kie.ai's answers (createTask, recordInfo) and its callbacks.

Strict on what the project relies on (the body ``code``, ``taskId``, ``state``,
and result URLs when ``state`` is ``success``), tolerant of the rest: unknown
keys are ignored, nulls and ``""`` mean "not set yet", and values we only record
(credits, times, ``param``, ``model``) are dropped to ``None`` when their shape is
wrong rather than failing the whole answer.

Entry points:

- ``envelope(body) -> Envelope`` reads ``{code, msg | message, data}`` for any
  answer; the HTTP client maps non-200 codes to errors itself.
- ``parse_create_response(body) -> CreateAccepted`` for a code-200 createTask answer.
- ``parse_record(body) -> Outcome`` for a code-200 recordInfo answer.
- ``parse_callback(body) -> Outcome`` for a webhook body, in every documented variant.

Answers (create, recordInfo) fail with ``MalformedResponse(None, "<readable field
errors>")``; callbacks fail with ``marshmallow.ValidationError`` whose ``messages``
map flat dotted keys (``data.resultJson``) to lists of messages, ready for a 422.
Whatever the input (any JSON value, deep, huge, wrong types), no other exception
type escapes: an unexpected internal error is logged and reported the same way
as ``body: could not be read``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Any, Callable, Optional, TypeVar

from marshmallow import EXCLUDE, Schema, ValidationError, fields

from ...errors import MalformedResponse
from .fields import url_list_problems
from .inbound_fields import (MAX_RESULT_URLS, TASK_STATES, BodyCode, FailCode, JsonParam, LooseNumber,
                             LooseText, ResultJson, TaskId, TaskState, Unreadable)
from .jsonsafe import describe, show
from .outcome import Outcome

log = logging.getLogger(__name__)

T = TypeVar("T")


class _Inbound(Schema):
    """Base of the inbound schemas: unknown keys are ignored."""

    error_messages = {"type": "must be a JSON object", "unknown": "unknown field"}

    class Meta:
        unknown = EXCLUDE


class EnvelopeSchema(_Inbound):
    """``{code, msg | message, data}``: every kie.ai answer and callback."""

    code = BodyCode(required=True)
    msg = LooseText(max_length=2000, empty_as_none=False)
    message = LooseText(max_length=2000, empty_as_none=False)
    data = fields.Raw(load_default=None, allow_none=True)


class CreateDataSchema(_Inbound):
    """``data`` of a successful createTask answer."""

    taskId = TaskId(required=True)


class TaskDataSchema(_Inbound):
    """``data`` of recordInfo and of a callback (every field optional here;
    the parse functions decide what is required for which state)."""

    taskId = TaskId(load_default=None)
    task_id = TaskId(load_default=None)
    model = LooseText(max_length=200)
    state = TaskState(load_default=None)
    param = JsonParam()
    resultJson = ResultJson()
    failCode = FailCode()
    failMsg = LooseText(max_length=2000)
    costTime = LooseNumber()
    completeTime = LooseNumber()
    createTime = LooseNumber()
    updateTime = LooseNumber()
    consumeCredits = LooseNumber()
    creditsConsumed = LooseNumber()
    remainedCredits = LooseNumber()


class CallbackSchema(_Inbound):
    """A callback body: the envelope, an optional top-level ``taskId``/``task_id``, and ``data``."""

    code = BodyCode(load_default=None)
    msg = LooseText(max_length=2000)
    message = LooseText(max_length=2000)
    taskId = TaskId(load_default=None)
    task_id = TaskId(load_default=None)
    data = fields.Nested(TaskDataSchema, load_default=None, allow_none=True)


@dataclasses.dataclass(frozen=True)
class Envelope:
    """The outer layer of an answer: body ``code`` (int), ``msg`` ("" when absent), raw ``data``."""

    code: int
    msg: str
    data: Any


@dataclasses.dataclass(frozen=True)
class CreateAccepted:
    """A createTask that kie.ai accepted: its ``task_id``."""

    task_id: str


# ------------------------------------------------------------------ helpers


def _flatten(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested messages as flat ``{"data.resultJson": [...]}`` (``_schema`` → the prefix)."""
    out: dict[str, list[str]] = {}

    def walk(node: Any, key: str) -> None:
        if isinstance(node, dict):
            for sub, value in node.items():
                if sub == "_schema":
                    walk(value, key)
                elif isinstance(sub, int):
                    walk(value, f"{key}[{sub}]")
                else:
                    walk(value, f"{key}.{sub}" if key else str(sub))
        elif isinstance(node, (list, tuple)):
            for item in node:
                walk(item, key)
        else:
            out.setdefault(key or "body", []).append(str(node))

    walk(messages, prefix)
    return out


def _readable(errors: dict[str, list[str]]) -> str:
    return "; ".join(f"{key}: {' '.join(msgs)}" for key, msgs in sorted(errors.items()))


@functools.lru_cache(maxsize=None)
def _schema(cls):
    """One instance per schema class, made on first use: building a marshmallow schema deep-copies its
    fields (and a nested schema's), which was a third of the webhook's time per callback.  Loading
    keeps no state in the instance, so threads may share it."""
    return cls()


def _guarded(fn: Callable[[], T], on_error: Callable[[str], Exception]) -> T:
    """Run ``fn``; turn an unexpected internal exception into ``on_error(text)``."""
    try:
        return fn()
    except (ValidationError, MalformedResponse):
        raise
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError, RecursionError,
            UnicodeError) as exc:
        log.error("kie.ai body could not be read", exc_info=True)
        raise on_error(f"body: could not be read ({type(exc).__name__})") from None


def _pick_task_id(candidates: list[tuple[str, Any]], errors: dict[str, list[str]]) -> Optional[str]:
    """The first task id present among ``(key, value)`` pairs; others must agree with it."""
    present = [(key, value) for key, value in candidates if value is not None]
    if not present:
        errors.setdefault(candidates[0][0], []).append("is required (the upstream task id)")
        return None
    first_key, first = present[0]
    for key, value in present[1:]:
        if value != first:
            errors.setdefault(key, []).append(f"conflicts with {first_key} ({show(value)} vs {show(first)})")
    return first


def _result_urls(result: Any, key: str, errors: dict[str, list[str]]) -> tuple[str, ...]:
    """The ``resultUrls`` a successful task must carry, or record why they are missing."""
    if result is None:
        errors.setdefault(key, []).append("must hold resultUrls when state is 'success', got nothing")
        return ()
    if isinstance(result, Unreadable):
        errors.setdefault(key, []).append(result.reason)
        return ()
    if "resultUrls" not in result:
        errors.setdefault(key, []).append(
            "must contain resultUrls when state is 'success'; has keys: "
            + (", ".join(show(k) for k in sorted(result)[:8]) or "none"))
        return ()
    urls = result["resultUrls"]
    problems = url_list_problems(urls, min_items=1, max_items=MAX_RESULT_URLS)
    if problems:
        errors.setdefault(key, []).extend(f"resultUrls: {p}" for p in problems)
        return ()
    return tuple(urls)


def _build_outcome(rec: dict, *, prefix: str, errors: dict[str, list[str]],
                   extra_task_ids: list[tuple[str, Any]] = (), code: Optional[int] = None,
                   msg: Optional[str] = None, from_callback: bool = False) -> Optional[Outcome]:
    """Check the cross-field rules on a loaded ``TaskDataSchema`` dict and build the Outcome.

    In a callback (``from_callback``), a missing ``state`` with a non-200 ``code``
    means failure, and ``code``/``msg`` stand in for a missing ``failCode``/``failMsg``.
    """
    p = f"{prefix}." if prefix else ""
    task_id = _pick_task_id([(f"{p}taskId", rec.get("taskId")), (f"{p}task_id", rec.get("task_id")),
                             *extra_task_ids], errors)
    state = rec.get("state")
    failed_by_code = from_callback and code is not None and code != 200
    if state is None:
        if failed_by_code:
            state = "fail"
        else:
            errors.setdefault(f"{p}state", []).append(f"is required, one of {', '.join(TASK_STATES)}")
    urls: tuple[str, ...] = ()
    fail_code, fail_msg = rec.get("failCode"), rec.get("failMsg")
    if state == "success":
        if failed_by_code:
            errors.setdefault("code", []).append(f"{code} contradicts {p}state 'success'")
        urls = _result_urls(rec.get("resultJson"), f"{p}resultJson", errors)
    elif state == "fail" and failed_by_code:
        fail_code = fail_code if fail_code is not None else str(code)
        fail_msg = fail_msg if fail_msg is not None else (msg or None)
    if errors:
        return None
    credits = rec.get("consumeCredits")
    if credits is None:
        credits = rec.get("creditsConsumed")
    return Outcome(
        task_id=task_id, state=state, result_urls=urls, fail_code=fail_code, fail_msg=fail_msg,
        model=rec.get("model"), credits=credits, remained_credits=rec.get("remainedCredits"),
        cost_time=rec.get("costTime"), create_time=rec.get("createTime"),
        complete_time=rec.get("completeTime"), update_time=rec.get("updateTime"), param=rec.get("param"),
    )


# ------------------------------------------------------------------ answers


def envelope(body: Any) -> Envelope:
    """Read the envelope of any kie.ai answer; ``code`` may be an int or a numeric string.

    Raises ``MalformedResponse`` when ``body`` is not an object or ``code`` is missing or not numeric.
    """
    def run() -> Envelope:
        if not isinstance(body, dict):
            raise MalformedResponse(None, f"body: must be a JSON object, got {describe(body)}")
        try:
            loaded = _schema(EnvelopeSchema).load(body)
        except ValidationError as exc:
            raise MalformedResponse(None, _readable(_flatten(exc.messages))) from None
        return Envelope(loaded["code"], loaded.get("msg") or loaded.get("message") or "", loaded.get("data"))

    return _guarded(run, lambda text: MalformedResponse(None, text))


def _expect_ok(env: Envelope, what: str) -> None:
    if env.code != 200:
        raise MalformedResponse(None, f"{what}: code: expected 200, got {env.code} ({show(env.msg)}); "
                                      "map error codes with envelope() before parsing")


def _load_data(body: Any, what: str, schema: type, shape: str) -> dict:
    """``data`` of a code-200 answer, loaded with ``schema``; ``MalformedResponse`` naming ``what`` otherwise."""
    env = envelope(body)
    _expect_ok(env, what)
    if not isinstance(env.data, dict):
        raise MalformedResponse(None, f"{what}: data: must be a JSON object{shape}, got {describe(env.data)}")
    try:
        return schema().load(env.data)
    except ValidationError as exc:
        raise MalformedResponse(None, f"{what}: " + _readable(_flatten(exc.messages, "data"))) from None


def parse_create_response(body: Any) -> CreateAccepted:
    """The task id of a code-200 createTask answer.

    Raises ``MalformedResponse`` when ``data.taskId`` is missing, blank or not a
    string, and when the body code is not 200 (callers check ``envelope()`` first).
    """
    def run() -> CreateAccepted:
        loaded = _load_data(body, "createTask", CreateDataSchema, " with taskId")
        return CreateAccepted(loaded["taskId"])

    return _guarded(run, lambda text: MalformedResponse(None, f"createTask: {text}"))


def parse_record(body: Any) -> Outcome:
    """The Outcome in a code-200 recordInfo answer (``{code, msg, data: {...}}``).

    ``data.taskId`` and ``data.state`` are required; a ``success`` must carry
    ``resultJson.resultUrls`` (1..100 http(s) URLs). Raises ``MalformedResponse(None,
    "recordInfo: <field errors>")``, also when the body code is not 200 (callers map
    error codes, such as 422 "recordInfo is null", with ``envelope()`` first).
    """
    def run() -> Outcome:
        rec = _load_data(body, "recordInfo", TaskDataSchema, "")
        errors: dict[str, list[str]] = {}
        outcome = _build_outcome(rec, prefix="data", errors=errors)
        if outcome is None:
            raise MalformedResponse(None, "recordInfo: " + _readable(errors))
        return outcome

    return _guarded(run, lambda text: MalformedResponse(None, f"recordInfo: {text}"))


# ------------------------------------------------------------------ callbacks


def parse_callback(body: Any) -> Outcome:
    """The Outcome in a callback body, accepting every documented variant.

    Task id from ``data.taskId``, ``data.task_id`` or a top-level ``taskId``/``task_id``
    (all present ones must agree); credits from ``consumeCredits`` or
    ``creditsConsumed``. ``code`` may be 200 or an error code (501, 400, 500...):
    with an error code a missing ``state`` means ``fail``, and ``code``/``msg`` fill a
    missing ``failCode``/``failMsg``; an error code with ``state: success`` is refused.
    Raises ``marshmallow.ValidationError`` with flat dotted keys (``data.resultJson``).
    """
    def run() -> Outcome:
        if not isinstance(body, dict):
            raise ValidationError({"body": [f"must be a JSON object, got {describe(body)}"]})
        try:
            top = _schema(CallbackSchema).load(body)
        except ValidationError as exc:
            raise ValidationError(_flatten(exc.messages)) from None
        rec = top.get("data")
        if rec is None:
            rec = TaskDataSchema().load({})
        errors: dict[str, list[str]] = {}
        outcome = _build_outcome(
            rec, prefix="data", errors=errors,
            extra_task_ids=[("taskId", top.get("taskId")), ("task_id", top.get("task_id"))],
            code=top.get("code"), msg=top.get("msg") or top.get("message"), from_callback=True)
        if outcome is None:
            raise ValidationError(errors)
        return outcome

    return _guarded(run, lambda text: ValidationError({"body": [text]}))
