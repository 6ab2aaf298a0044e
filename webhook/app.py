"""Flask app factory of the webhook: wiring only (settings, Redis, job store, Celery producer, routes)."""

from __future__ import annotations

import logging

import flask

from worker.celery_conf import producer
from worker import tracing
from worker.logs import install as install_logs
from worker.settings import Settings
from worker.store.connection import job_store_options, redis_client
from worker.store import metrics
from worker.store.jobstore import JobStore
from worker.store.limiter import Limiter

from . import routes


def build_app(settings: Settings | None = None) -> flask.Flask:
    s = settings or Settings.from_env()
    app = flask.Flask("webhook")
    # one byte over the cap, so a chunked body longer than the cap is seen as such (routes._read_capped)
    app.config["MAX_CONTENT_LENGTH"] = s.webhook_max_body + 1
    # no automatic OPTIONS answers (an empty text/html 200): every answer is JSON, OPTIONS gets a JSON 405
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    r = redis_client(s, socket_timeout=5, socket_connect_timeout=2)
    app.extensions["kie"] = {
        "settings": s,
        "redis": r,
        "store": JobStore(r, s.key_prefix, **job_store_options(s)),
        "limiter": Limiter.for_settings(r, s),
        # one limiter per account (KIE_API_KEY, each KIE_API_KEY_<TENANT>), for the per-tenant metrics
        "limiters": [Limiter.for_settings(r, s, api_key=k or "") for k in dict.fromkeys([s.api_key, *s.api_keys()])],
        "celery": producer(s, "kie_queue_webhook"),   # sends tasks by name: the web process imports no task code
    }
    _log_handler()
    for name in ("", "gunicorn.error", "gunicorn.access"):   # the app's records, and gunicorn's own loggers
        install_logs(logging.getLogger(name), s.secrets(), s.log_format)
    tracing.setup(s, "kie-queue-webhook", flask_app=app)
    app.register_blueprint(routes.bp)
    # a request's metric observations are written together, in one round trip, when it ends
    app.before_request(metrics.begin)
    app.teardown_request(lambda exc: metrics.flush())
    routes.register_error_handlers(app)
    return app


def _log_handler() -> None:
    """Give the root logger a stderr handler when nothing configured one (gunicorn configures only its
    own loggers): otherwise the app's records fall through to ``logging.lastResort``, which no
    redaction filter reaches."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"))
    root.addHandler(handler)
    app_logger = logging.getLogger("kie_queue")
    if app_logger.level == logging.NOTSET:
        app_logger.setLevel(logging.INFO)
