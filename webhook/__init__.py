"""The webhook service: receives kie.ai's completion callbacks and hands them to the workers.

``create_app()`` builds the Flask app (gunicorn serves ``webhook:create_app()``).  Routes:
``POST /kie/callback/<job_id>?token=...`` (the callback), ``GET /healthz``, ``GET /metrics``,
``GET /openapi.yaml``.  The web process verifies, validates and records a callback, sends
``kie.complete`` by name and answers at once; it never runs task code.
"""

from __future__ import annotations


def create_app(settings=None):
    """Build the webhook app from ``settings`` (default: the environment)."""
    from .app import build_app
    return build_app(settings)


__all__ = ["create_app"]
