"""Flask app factory of the webhook: wiring only (settings, Redis, job store, Celery producer, routes)."""

from __future__ import annotations

import logging
import re

import flask
import redis

from worker.jobstore import JobStore
from worker.limiter import Limiter
from worker.redact import install_log_redaction
from worker.settings import Settings

from . import routes


def build_app(settings: Settings | None = None) -> flask.Flask:
    s = settings or Settings.from_env()
    app = flask.Flask("webhook")
    # one byte over the cap, so a chunked body longer than the cap is seen as such (routes._read_capped)
    app.config["MAX_CONTENT_LENGTH"] = s.webhook_max_body + 1
    # no automatic OPTIONS answers (an empty text/html 200): every answer is JSON, OPTIONS gets a JSON 405
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    r = redis.Redis.from_url(s.redis_url, socket_timeout=5, socket_connect_timeout=2)
    app.extensions["kie"] = {
        "settings": s,
        "redis": r,
        "store": JobStore(r, s.key_prefix),
        "limiter": Limiter(r, s.key_prefix, s.api_key, limit=s.rate_limit.limit, window=s.rate_limit.window,
                           max_in_flight=s.max_in_flight, slot_lease=s.job_timeout * 2 + 600),
        "celery": _producer(s),
    }
    _log_handler()
    install_log_redaction(s.secrets(), logger=logging.getLogger())
    _mask_job_tokens(logging.getLogger())
    app.register_blueprint(routes.bp)
    routes.register_error_handlers(app)
    return app


def _producer(s: Settings):
    """A Celery app used only to send tasks by name (the web process imports no task code)."""
    from celery import Celery

    producer = Celery("kie_queue_webhook", set_as_current=False)
    producer.conf.update(broker_url=s.broker_url, result_backend=s.result_backend, task_serializer="json",
                         accept_content=["json"], task_default_queue=s.queue,
                         broker_transport_options={"visibility_timeout": 600},
                         broker_connection_retry_on_startup=True)
    return producer


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


_TOKEN_PAIR = re.compile(r"(\btoken=)[^&\s\"'#]+", re.IGNORECASE)


class JobTokenFilter(logging.Filter):
    """Masks ``token=...`` values (per-job callback tokens, which no list of secrets can name) in log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - leave a malformed record to the handler
            return True
        masked = _TOKEN_PAIR.sub(r"\1***", message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _TOKEN_PAIR.sub(r"\1***", record.exc_text)
        return True


def _mask_job_tokens(logger: logging.Logger) -> None:
    """Add one ``JobTokenFilter`` to ``logger`` and each of its handlers (after the secrets filter)."""
    for target in (logger, *logger.handlers):
        if not any(isinstance(f, JobTokenFilter) for f in target.filters):
            target.addFilter(JobTokenFilter())
