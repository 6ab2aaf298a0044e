"""The inspection / control API under ``/_sim/`` (no auth; for tests and operators).

``GET /_sim/health``, ``GET /_sim/stats``, ``GET|POST /_sim/config``, ``POST /_sim/reset``,
``GET /_sim/tasks``, ``GET /_sim/tasks/<taskId>``, ``POST /_sim/tasks/<taskId>/callback``.
Secrets are never echoed: ``api_key`` and ``hmac_key`` show as ``"***"``.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, jsonify, request

from .errors import ConfigError
from .simulator import Simulator, TaskNotFinished


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


def register_control(app: Flask) -> None:
    app.add_url_rule("/_sim/health", view_func=health, methods=["GET"])
    app.add_url_rule("/_sim/stats", view_func=stats, methods=["GET"])
    app.add_url_rule("/_sim/config", view_func=get_config, methods=["GET"])
    app.add_url_rule("/_sim/config", endpoint="set_config", view_func=set_config, methods=["POST"])
    app.add_url_rule("/_sim/reset", view_func=reset, methods=["POST"])
    app.add_url_rule("/_sim/tasks", view_func=list_tasks, methods=["GET"])
    app.add_url_rule("/_sim/tasks/<task_id>", view_func=get_task, methods=["GET"])
    app.add_url_rule("/_sim/tasks/<task_id>/callback", view_func=redeliver, methods=["POST"])
