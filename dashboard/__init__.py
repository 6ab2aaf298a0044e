"""The operator dashboard: jobs, one job's timeline and images, the limiter, a gallery of results.

``create_app()`` builds the Flask app (the Procfile's ``dashboard`` process serves
``dashboard:create_app()`` with gunicorn, on 127.0.0.1 by default).  Server-rendered Jinja pages; the live
parts poll small HTML fragments with htmx (vendored, pinned, no build step).  It reads and acts through
``worker.ops`` — the same functions as the ``kie-queue`` command — and never imports task code.
"""

from __future__ import annotations


def create_app(settings=None):
    """Build the dashboard app from ``settings`` (default: the environment)."""
    from .app import build_app
    return build_app(settings)


__all__ = ["create_app"]
