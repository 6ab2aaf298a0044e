"""The inspection / control API under ``/_sim/`` (no auth; for tests and operators).

``GET /_sim/health``, ``GET /_sim/stats``, ``GET|POST /_sim/config``, ``POST /_sim/reset``,
``GET /_sim/tasks``, ``GET /_sim/tasks/<taskId>``, ``POST /_sim/tasks/<taskId>/callback``,
``GET|POST /_sim/accounts`` and ``GET|POST|DELETE /_sim/burst``:

- ``POST /_sim/accounts {"api_key": KEY, "credits": N}`` sets one account's balance
  (``"account": ID`` - the id shown in stats - may name it instead of the key);
- ``POST /_sim/burst {"code": 429|455|500, "count": N, "style": "body"|"http",
  "api_key": KEY}`` makes the next N createTask calls (of that account only, if named,
  by key or ``account`` id) answer that code and create nothing; ``style`` is optional
  (default: ``rate_limit_style`` for 429, ``error_style`` otherwise); 429s carry
  ``Retry-After`` per the ``retry_after`` knob.  Bursts queue up in order;
  ``DELETE /_sim/burst`` drops the pending ones.

Bad bodies get HTTP 400 (an unknown account: 404) ``{"error": "<field>: <problem>",
"field": ...}``.  Secrets are never echoed: ``api_key`` and ``hmac_key`` show as
``"***"``, accounts go by ``sha256(key)[:12]``, and no error quotes a key.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, jsonify, request

from .config import coerce_knob
from .errors import ConfigError
from .simulator import BURST_CODES, BURST_STYLES, Simulator, TaskNotFinished, UnknownAccount


def _sim() -> Simulator:
    return current_app.extensions["kiesim"]


def _error(status: int, message: str, **extra) -> Response:
    response = jsonify({"error": message, **extra})
    response.status_code = status
    return response


def health() -> Response:
    return jsonify({"ok": True})


def stats() -> Response:
    return jsonify(_sim().stats())


def get_config() -> Response:
    return jsonify(_sim().config.public_dict())


def set_config() -> Response:
    changes = request.get_json(force=True, silent=True)
    try:
        return jsonify(_sim().update_config(changes))
    except ConfigError as exc:
        return _error(400, str(exc), knob=exc.knob)


def reset() -> Response:
    _sim().reset()
    return jsonify({"ok": True})


def list_tasks() -> Response:
    return jsonify(_sim().task_summaries())


def get_task(task_id: str) -> Response:
    record = _sim().task_record(task_id)
    if record is None:
        return _error(404, f"unknown taskId {task_id!r}")
    return jsonify(record)


def redeliver(task_id: str) -> Response:
    try:
        result = _sim().redeliver(task_id)
    except KeyError:
        return _error(404, f"unknown taskId {task_id!r}")
    except TaskNotFinished as exc:
        return _error(409, str(exc))
    return jsonify({"taskId": task_id, "status": result.status, "error": result.error})


class _BadField(Exception):
    def __init__(self, field: str, problem: str):
        super().__init__(field, problem)
        self.field, self.problem = field, problem


def _body(allowed: tuple[str, ...]) -> dict:
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise _BadField("<body>", "expected a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise _BadField(unknown[0], "unknown field (known: " + ", ".join(allowed) + ")")
    return body


def _account_ref(body: dict, *, required: bool) -> dict:
    """``{"api_key": ...}`` or ``{"account": ...}`` from a control body (checked, never echoed)."""
    api_key, ident = body.get("api_key"), body.get("account")
    if api_key is not None and ident is not None:
        raise _BadField("api_key", "give api_key or account, not both")
    if api_key is not None and (not isinstance(api_key, str) or not api_key):
        raise _BadField("api_key", "expected a non-empty string")
    if ident is not None and (not isinstance(ident, str) or not ident):
        raise _BadField("account", "expected an account id (a string, as in GET /_sim/stats)")
    if required and api_key is None and ident is None:
        raise _BadField("api_key", "is required (or account: an id from GET /_sim/stats)")
    return {"api_key": api_key, "account": ident}


def _field_error(exc: _BadField) -> Response:
    return _error(400, f"{exc.field}: {exc.problem}", field=exc.field)


def get_accounts() -> Response:
    return jsonify({"accounts": _sim().accounts()})


def set_account() -> Response:
    try:
        body = _body(("api_key", "account", "credits"))
        ref = _account_ref(body, required=True)
        if "credits" not in body:
            raise _BadField("credits", "is required")
        try:
            credits = coerce_knob("credits", body["credits"])
        except ConfigError as exc:
            raise _BadField("credits", exc.problem) from None
        return jsonify(_sim().set_account_credits(credits, **ref))
    except _BadField as exc:
        return _field_error(exc)
    except UnknownAccount as exc:
        field = str(exc).partition(":")[0]
        return _error(404, str(exc), field=field)


def get_bursts() -> Response:
    return jsonify({"pending": _sim().bursts()})


def add_burst() -> Response:
    try:
        body = _body(("code", "count", "style", "api_key", "account"))
        code = body.get("code")
        if isinstance(code, bool) or not isinstance(code, int) or code not in BURST_CODES:
            raise _BadField("code", f"expected one of {', '.join(map(str, BURST_CODES))}, got {code!r}")
        count = body.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1_000_000:
            raise _BadField("count", f"expected an integer from 1 to 1000000, got {count!r}")
        style = body.get("style")
        if style is not None and style not in BURST_STYLES:
            raise _BadField("style", f"expected one of {', '.join(BURST_STYLES)} (or leave it out), got {style!r}")
        ref = _account_ref(body, required=False)
        return jsonify({"ok": True, "burst": _sim().add_burst(code, count, style=style, **ref)})
    except _BadField as exc:
        return _field_error(exc)
    except UnknownAccount as exc:
        field = str(exc).partition(":")[0]
        return _error(404, str(exc), field=field)


def clear_bursts() -> Response:
    return jsonify({"cleared": _sim().clear_bursts()})


def register_control(app: Flask) -> None:
    app.add_url_rule("/_sim/health", view_func=health, methods=["GET"])
    app.add_url_rule("/_sim/stats", view_func=stats, methods=["GET"])
    app.add_url_rule("/_sim/config", view_func=get_config, methods=["GET"])
    app.add_url_rule("/_sim/config", endpoint="set_config", view_func=set_config, methods=["POST"])
    app.add_url_rule("/_sim/reset", view_func=reset, methods=["POST"])
    app.add_url_rule("/_sim/tasks", view_func=list_tasks, methods=["GET"])
    app.add_url_rule("/_sim/tasks/<task_id>", view_func=get_task, methods=["GET"])
    app.add_url_rule("/_sim/tasks/<task_id>/callback", view_func=redeliver, methods=["POST"])
    app.add_url_rule("/_sim/accounts", view_func=get_accounts, methods=["GET"])
    app.add_url_rule("/_sim/accounts", endpoint="set_account", view_func=set_account, methods=["POST"])
    app.add_url_rule("/_sim/burst", view_func=get_bursts, methods=["GET"])
    app.add_url_rule("/_sim/burst", endpoint="add_burst", view_func=add_burst, methods=["POST"])
    app.add_url_rule("/_sim/burst", endpoint="clear_bursts", view_func=clear_bursts, methods=["DELETE"])
