"""The webhook throughput baseline: a bare Flask app, ``gunicorn 'bench.bare_app:create_app()'``.

The callback route's path (``POST /kie/callback/<job_id>``) answering ``{"status": "ok"}`` with 200 and
reading nothing else; ``GET /healthz`` answers 200.  It is served with the same gunicorn settings as
the real webhook, so the difference between the two is the webhook's own work.
"""

from __future__ import annotations

import flask


def create_app() -> flask.Flask:
    app = flask.Flask("bare")

    @app.post("/kie/callback/<job_id>")
    def callback(job_id):
        return flask.jsonify(status="ok"), 200

    @app.get("/healthz")
    def healthz():
        return flask.jsonify(status="ok"), 200

    return app
