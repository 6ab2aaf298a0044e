"""The webhook with the bench's one probe: ``gunicorn 'bench.webapp:create_app()'``.

``webhook.create_app()`` itself, plus a ``before_request`` hook that notes when a callback request
came in and a ``teardown_request`` hook that, for a callback answered 202 (the first delivery of a
job's outcome), stores that time in the Redis hash ``BENCH_MARK_KEY + ":recv"`` under the job id.
The write happens after the route has answered and sent ``kie.complete``, so it is not part of
the latency the chain measure reads.
"""

from __future__ import annotations

import os
import time

import flask
import redis

import webhook


def create_app():
    app = webhook.create_app()
    key = os.environ["BENCH_MARK_KEY"] + ":recv"
    r = redis.Redis.from_url(os.environ["BENCH_REDIS"])

    @app.before_request
    def _arrived():
        flask.g.bench_t0 = time.time()

    @app.after_request
    def _answered(response):
        flask.g.bench_status = response.status_code
        return response

    @app.teardown_request
    def _note(_exc):
        t0 = flask.g.get("bench_t0")
        job_id = (flask.request.view_args or {}).get("job_id")
        if t0 is not None and job_id and flask.g.get("bench_status") == 202:
            r.hsetnx(key, job_id, repr(t0))

    return app
