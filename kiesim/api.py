"""The kie.ai-compatible routes: createTask, recordInfo, credit, download-url, and result files.

Every ``/api/`` route first applies the gateway checks in upstream order: a missing
``User-Agent`` gets HTTP 403 ``error code: 1010`` (the Cloudflare front), then a
missing Bearer key, or one that is none of the configured ``api_key`` s, gets body
code 401.  The matching key names the account the call is charged to.  Verdicts come
from the ``Simulator`` as ``Answer``s; ``_respond`` maps them to HTTP per
``error_style`` / ``rate_limit_style`` (or the answer's own ``style``, for bursts).
Result files go out with their Content-Type and Content-Length.
"""

from __future__ import annotations

import hmac
import re
import time

from flask import Flask, Response, current_app, jsonify, request

from .simulator import MESSAGES, NO_DATA, Answer, Simulator

_FILE_RE = re.compile(r"^(\d+)\.(png|jpe?g)$")


def _sim() -> Simulator:
    return current_app.extensions["kiesim"]


def _respond(answer: Answer, *, msg_key: str = "msg") -> Response:
    sim = _sim()
    body = {"code": answer.code, msg_key: answer.msg}
    if answer.data is not NO_DATA:
        body["data"] = answer.data
    status = 200
    if answer.code != 200 and answer.style is not None:
        status = answer.code if answer.style == "http" and 400 <= answer.code <= 599 else 200
    elif answer.code == 429:
        status = 429 if sim.rate_limit_as_http() else 200
    elif answer.code != 200 and sim.config.error_style == "http" and 400 <= answer.code <= 599:
        status = answer.code
    response = jsonify(body)
    response.status_code = status
    response.headers.update(answer.headers)
    return response


def _matching_key(token: str) -> str | None:
    """The configured key equal to ``token`` (each compared in constant time), else None."""
    found = None
    for key in _sim().config.api_key:
        if hmac.compare_digest(token.encode(), key.encode()):
            found = key
    return found


def _gateway_refusal() -> tuple[int, Response] | None:
    """(code, response) when the request fails the User-Agent or Bearer check, else None."""
    if not request.headers.get("User-Agent", "").strip():
        return 403, Response("error code: 1010", status=403, mimetype="text/plain")
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or _matching_key(token.strip()) is None:
        return 401, _respond(Answer(401, MESSAGES[401]))
    return None


def _api_key() -> str:
    """The caller's key (call after ``_gateway_refusal`` passed)."""
    return request.headers["Authorization"].partition(" ")[2].strip()


def _base_url() -> str:
    return _sim().config.public_url or request.host_url.rstrip("/")


def create_task() -> Response:
    sim = _sim()
    refusal = _gateway_refusal()
    if refusal is not None:
        sim.note_create_rejected(refusal[0])
        response = refusal[1]
    else:
        answer = sim.create_task(_api_key(), request.get_json(force=True, silent=True), _base_url())
        msg_key = sim.config.create_msg_key if answer.code == 200 else "msg"
        response = _respond(answer, msg_key=msg_key)
    if sim.config.create_delay:
        time.sleep(sim.config.create_delay)
    return response


def record_info() -> Response:
    refusal = _gateway_refusal()
    if refusal is not None:
        return refusal[1]
    return _respond(_sim().record_info(_api_key(), request.args.get("taskId")))


def credit() -> Response:
    refusal = _gateway_refusal()
    if refusal is not None:
        return refusal[1]
    return _respond(_sim().credits(_api_key()))


def download_url() -> Response:
    refusal = _gateway_refusal()
    if refusal is not None:
        return refusal[1]
    return _respond(_sim().download_url(request.get_json(force=True, silent=True)))


def result_file(task_id: str, filename: str) -> Response:
    match = _FILE_RE.match(filename)
    found = _sim().file(task_id, int(match.group(1)), match.group(2)) if match else None
    if found is None:
        return Response("file not found", status=404, mimetype="text/plain")
    data, content_type = found
    response = Response(data, mimetype=content_type, headers={"Cache-Control": "public, max-age=86400"})
    response.content_length = len(data)
    return response


def register_api(app: Flask) -> None:
    app.add_url_rule("/api/v1/jobs/createTask", view_func=create_task, methods=["POST"])
    app.add_url_rule("/api/v1/jobs/recordInfo", view_func=record_info, methods=["GET"])
    app.add_url_rule("/api/v1/chat/credit", view_func=credit, methods=["GET"])
    app.add_url_rule("/api/v1/common/download-url", view_func=download_url, methods=["POST"])
    app.add_url_rule("/files/<task_id>/<filename>", view_func=result_file, methods=["GET"])
