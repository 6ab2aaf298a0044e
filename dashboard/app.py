"""Flask app factory of the dashboard: settings, the runtime, the producer, security headers, the views."""

from __future__ import annotations

import logging

import flask

from worker import runtime
from worker.celery_conf import producer
from worker.redact import install_log_redaction
from worker.settings import Settings

from . import access, views


def build_app(settings: Settings | None = None) -> flask.Flask:
    s = settings or Settings.from_env()
    access.check_exposure(s)                 # refuses a public bind without KIE_DASHBOARD_TOKEN
    app = flask.Flask("dashboard", template_folder="templates", static_folder="static")
    app.config.update(
        SECRET_KEY=access.session_key(s),
        SESSION_COOKIE_NAME="kie_dashboard",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        MAX_CONTENT_LENGTH=16 * 1024,
    )
    app.extensions["kie"] = {
        "settings": s,
        "rt": runtime.build(s),
        "producer": producer(s, "kie_queue_dashboard"),   # retry/cancel send tasks by name
    }
    install_log_redaction(s.secrets(), logger=logging.getLogger())
    access.install(app)
    app.register_blueprint(views.bp)
    app.jinja_env.filters.update(views.FILTERS)
    return app
