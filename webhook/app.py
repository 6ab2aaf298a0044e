"""Flask app factory of the webhook: wiring only (settings, Redis, job store, Celery producer, routes)."""

from __future__ import annotations

import logging

import flask
import redis

from worker.jobstore import JobStore
from worker.keys import Keys  # noqa: F401  (re-exported for tests)
from worker.limiter import Limiter
from worker.redact import install_log_redaction
from worker.settings import Settings

from . import routes


def build_app(settings: Settings | None = None) -> flask.Flask:
    s = settings or Settings.from_env()
    app = flask.Flask("webhook")
    app.config["MAX_CONTENT_LENGTH"] = s.webhook_max_body
    r = redis.Redis.from_url(s.redis_url, socket_timeout=5, socket_connect_timeout=2)
    app.extensions["kie"] = {
        "settings": s,
        "redis": r,
        "store": JobStore(r, s.key_prefix),
        "limiter": Limiter(r, s.key_prefix, s.api_key, limit=s.rate_limit.limit, window=s.rate_limit.window,
                           max_in_flight=s.max_in_flight, slot_lease=s.job_timeout * 2 + 600),
        "celery": _producer(s),
    }
    install_log_redaction(s.secrets(), logger=logging.getLogger())
    app.register_blueprint(routes.bp)
    routes.register_error_handlers(app)
    return app


def _producer(s: Settings):
    """A Celery app used only to send tasks by name (the web process imports no task code)."""
    from celery import Celery

    producer = Celery("kie_queue_webhook", set_as_current=False)
    producer.conf.update(broker_url=s.broker_url, result_backend=s.result_backend, task_serializer="json",
                         accept_content=["json"], task_default_queue=s.queue,
                         broker_transport_options={"visibility_timeout": 3600},
                         broker_connection_retry_on_startup=True)
    return producer
