"""Who may see the dashboard: loopback by default; anywhere else only after a login with
``KIE_DASHBOARD_TOKEN`` (a signed, HttpOnly, SameSite=Strict session cookie), plus CSRF tokens for the
forms and the security headers of every answer."""

from __future__ import annotations

import hashlib
import hmac
import secrets

import flask

OPEN_PATHS = ("/login", "/static/")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def check_exposure(s) -> None:
    """A dashboard bound to a non-loopback address must have a token: refuse to start otherwise."""
    problem = s.dashboard_exposure_problem()
    if problem is not None:
        raise problem


def session_key(s) -> bytes:
    """The cookie-signing key: derived from the token (so every process and restart agrees), else random
    per process (loopback use, one process)."""
    if s.dashboard_token:
        return hmac.new(s.dashboard_token.encode(), b"kie-queue dashboard session", hashlib.sha256).digest()
    return secrets.token_bytes(32)


def token_required() -> bool:
    return bool(flask.current_app.extensions["kie"]["settings"].dashboard_token)


def logged_in() -> bool:
    return not token_required() or flask.session.get("auth") is True


def check_token(given: str) -> bool:
    expected = flask.current_app.extensions["kie"]["settings"].dashboard_token or ""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def csrf_token() -> str:
    token = flask.session.get("csrf")
    if not token:
        token = flask.session["csrf"] = secrets.token_urlsafe(24)
    return token


def csrf_ok(given: str | None) -> bool:
    expected = flask.session.get("csrf")
    return bool(expected) and bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def install(app: flask.Flask) -> None:
    @app.before_request
    def _gate():
        if logged_in() or flask.request.path.startswith(OPEN_PATHS):
            return None
        if flask.request.method == "GET" and "HX-Request" not in flask.request.headers:
            return flask.redirect(flask.url_for("dashboard.login", next=flask.request.path))
        return flask.Response("login required", status=401, mimetype="text/plain")

    @app.after_request
    def _headers(response):
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        if response.mimetype == "text/html":
            response.headers["Cache-Control"] = "no-store"
        return response

    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["token_required"] = token_required
