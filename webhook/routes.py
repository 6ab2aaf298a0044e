"""The webhook's HTTP routes: the callback, health and metrics.  Every answer is JSON (metrics: text).

The callback is checked cheapest-first, and nothing is written until every check passed:

====  ===============================================================================
413   body over ``KIE_WEBHOOK_MAX_BODY`` (refused from Content-Length, or while reading)
415   Content-Type is not JSON
401   the per-job token in the URL does not verify (answered the same whether or not the job
      exists, so the route reveals nothing about other jobs)
400   the body is not JSON (RFC 8259 in UTF-8: no BOM, no NaN/Infinity, no duplicate keys, depth
      within Python's recursion limit)
422   the body fails the callback schema (field errors in ``errors``)
401   kie.ai's signature headers missing, wrong, or stale (only with ``KIE_WEBHOOK_HMAC_KEY``)
404   no such job
200   the job is already finished: nothing changes (kie.ai redelivers; this is normal)
409   the body's taskId is not this job's task
200   the same outcome was already recorded for this (unfinished) job: a redelivery, nothing
      changes and nothing is sent (the first delivery's ``kie.complete`` or the sweep finishes it)
202   recorded; ``kie.complete`` sent to the workers
====  ===============================================================================

The body's outcome is never trusted as such: the worker confirms it with ``recordInfo`` before
completing the job (``KIE_VERIFY_CALLBACKS``), because kie.ai's signature covers only the taskId.
"""

from __future__ import annotations

import json
import logging
import time

import flask
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from worker import failpoints, task_names, tracing
from worker.errors import WebhookRejected
from worker.kie.schemas import parse_callback
from worker.results.storage.health import health as storage_health
from worker.store.states import TERMINAL
from worker.tokens import CALLBACK_PATH

from worker.store import exposition
from .verify import check_job_token, check_signature, check_task

log = logging.getLogger("kie_queue.webhook")
bp = flask.Blueprint("kie", __name__)


def _kie():
    return flask.current_app.extensions["kie"]


def _answer(http_status: int, **body):
    return flask.jsonify(body), http_status


def _count(outcome: str) -> None:
    try:
        _kie()["store"].incr(f"callbacks_{outcome}")
    except Exception:  # noqa: BLE001 - metrics must never break an answer
        pass


def _traced_waiter(store, job_id: str) -> dict | None:
    """A parked waiter of the job (its stored trace context), read only when tracing is on."""
    if not tracing.enabled():
        return None
    return next(iter(store.waiters(job_id).values()), None)


def _observe_delay(complete_time) -> None:
    """kie.ai's completion (``completeTime``, epoch ms) → now, when the callback carries it."""
    if not isinstance(complete_time, (int, float)) or complete_time <= 0:
        return
    try:
        _kie()["store"].metrics.since("kie_callback_delay_seconds", complete_time)
    except Exception:  # noqa: BLE001 - metrics must never break an answer
        pass


@bp.post(CALLBACK_PATH + "<job_id>")
def callback(job_id: str):
    kie = _kie()
    s, store = kie["settings"], kie["store"]
    length = flask.request.content_length
    if length is not None and length > s.webhook_max_body:
        _count("too_large")
        return _answer(413, error="payload_too_large", detail=f"body over {s.webhook_max_body} bytes")
    mimetype = flask.request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        _count("bad_content_type")
        return _answer(415, error="unsupported_media_type", detail="Content-Type must be application/json")
    try:
        check_job_token(job_id, flask.request.args.get("token"), s.webhook_secrets)
    except WebhookRejected as exc:
        _count("unauthorized")
        return _answer(exc.status, error="unauthorized", detail=exc.message)
    raw = _read_capped(s.webhook_max_body)
    if len(raw) > s.webhook_max_body:
        _count("too_large")
        return _answer(413, error="payload_too_large", detail=f"body over {s.webhook_max_body} bytes")
    try:
        body = _strict_json(raw)
    except (ValueError, RecursionError):
        _count("bad_json")
        return _answer(400, error="malformed_json", detail="body is not valid JSON")
    try:
        outcome = parse_callback(body)
    except ValidationError as exc:
        _count("invalid")
        return _answer(422, error="invalid_callback", errors=_jsonable(exc.messages))
    if s.webhook_hmac_key:
        try:
            check_signature(outcome.task_id, flask.request.headers.get("X-Webhook-Timestamp"),
                            flask.request.headers.get("X-Webhook-Signature"), s.webhook_hmac_key,
                            now=time.time(), tolerance=s.callback_tolerance)
        except WebhookRejected as exc:
            _count("bad_signature")
            return _answer(exc.status, error="unauthorized", detail=exc.message)
    job = store.get(job_id)
    if job is None:
        _count("unknown_job")
        return _answer(404, error="not_found", detail="no such job")
    if job["state"] in TERMINAL:
        _count("duplicate")
        return _answer(200, status="ignored", detail="job already finished")
    try:
        check_task(outcome.task_id, job)
    except WebhookRejected as exc:
        _count("task_mismatch")
        return _answer(exc.status, error="task_mismatch", detail=exc.message)
    reported = outcome.to_dict()
    if job.get("callback") == json.dumps(reported):
        _count("redelivered")
        return _answer(200, status="ignored", detail="callback already recorded")
    state, deliveries = store.record_callback(job_id, reported)
    failpoints.hit("complete.after_callback_recorded")
    if state in TERMINAL:
        _count("duplicate")
        return _answer(200, status="ignored", detail="job already finished")
    with tracing.job_span("kie.callback", _traced_waiter(store, job_id), **{"kie.job_id": job_id,
                                                                            "kie.task_id": outcome.task_id}):
        # ignore_result: nothing waits on kie.complete, and a result subscription costs Redis round trips
        kie["celery"].send_task(task_names.COMPLETE, args=[job_id], queue=s.queue, ignore_result=True)
    _count("accepted")
    _observe_delay(outcome.complete_time)
    log.info("callback for job %s recorded (delivery %d); kie.complete sent", job_id, deliveries,
             extra={"event": "callback_recorded", "job_id": job_id, "upstream_task_id": outcome.task_id})
    return _answer(202, status="accepted", deliveries=deliveries)


def _read_capped(cap: int) -> bytes:
    """The body, but never more than ``cap + 1`` bytes of it (one more than allowed: "too large").

    ``request.get_data()`` is not enough for a chunked body: werkzeug bounds such a stream at
    ``MAX_CONTENT_LENGTH`` and then simply stops, so an over-long body would arrive truncated to
    exactly the cap (and be answered 400, not 413).  ``MAX_CONTENT_LENGTH`` is ``cap + 1`` (app.py)
    so the extra byte is there to see; reads stop as soon as it is.
    """
    stream = flask.request.stream
    chunks, total = [], 0
    while total <= cap:
        chunk = stream.read(min(64 * 1024, cap + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs):
    obj = dict(pairs)
    if len(obj) != len(pairs):
        # two values for one key: parsers disagree on which wins, so refuse the document
        raise ValueError("duplicate key in a JSON object")
    return obj


def _strict_json(raw: bytes):
    """RFC 8259 JSON in UTF-8: ``NaN``/``Infinity``, duplicate object keys, a byte order mark and
    other encodings (``json.loads(bytes)`` would guess UTF-16/32) are refused with ``ValueError``."""
    return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_unique_keys)


def _jsonable(messages):
    try:
        json.dumps(messages)
        return messages
    except (TypeError, ValueError):
        return {"_schema": [str(messages)]}


@bp.get("/healthz")
def healthz():
    kie = _kie()
    checks = {}
    try:
        kie["redis"].ping()
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = f"error: {type(exc).__name__}"
    try:
        with kie["celery"].connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        checks["broker"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["broker"] = f"error: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    # reported, not counted: callbacks are recorded without storage, so a storage outage must not take
    # the webhook out of its load balancer (``status`` says "degraded")
    checks["storage"] = storage_health(kie["settings"])
    status = "unavailable" if not ok else ("ok" if checks["storage"] == "ok" else "degraded")
    return _answer(200 if ok else 503, status=status, checks=checks)


@bp.get("/metrics")
def metrics():
    kie = _kie()
    return flask.Response(exposition.render(kie["store"], kie["limiter"], kie.get("limiters", ())),
                          content_type=exposition.CONTENT_TYPE)


@bp.get("/openapi.yaml")
def openapi():
    from importlib.resources import files
    return flask.Response(files("webhook").joinpath("openapi.yaml").read_text(), mimetype="application/yaml")


def register_error_handlers(app: flask.Flask) -> None:
    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc):
        _count("too_large")
        return _answer(413, error="payload_too_large", detail="body too large")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        response, status = _answer(exc.code or 500, error=(exc.name or "error").lower().replace(" ", "_"),
                                   detail=exc.description)
        for name, value in exc.get_headers():     # e.g. Allow on a 405
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, status

    @app.errorhandler(Exception)
    def _unexpected(exc):
        log.exception("webhook error")
        return _answer(500, error="internal_error", detail="unexpected error")
